"""Webhooks: a job's optional `callback_url` is called when the job completes, fails or is cancelled.

Signed the Standard Webhooks way (what Svix, Replicate and others use): headers `webhook-id`,
`webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
with `VOICEQ_WEBHOOK_SECRET`. The receiver recomputes the signature and rejects stale
timestamps. Delivery retries with exponential backoff on network errors, 408, 429 and 5xx;
other 4xx answers are final. Callbacks to loopback, private and link-local addresses are
refused unless `VOICEQ_WEBHOOK_ALLOW_PRIVATE` is set, so a job cannot make the service probe
its own network.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from .errors import InvalidInput
from .jobs import Job

log = logging.getLogger("voiceq.webhooks")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance_s: int = 300, now: float | None = None) -> bool:
    """What a receiver does (and what tests check): the signature matches and is recent."""
    try:
        timestamp = int(headers["webhook-timestamp"])
        expected = sign(secret, headers["webhook-id"], timestamp, body)
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_s:
        return False
    return any(hmac.compare_digest(expected, s) for s in headers.get("webhook-signature", "").split())


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified


def check_callback_url(url: str, *, allow_private: bool) -> str:
    """Refuse, at submission, a callback that names a private address literally."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("callback_url must be an http(s) URL", field="callback_url")
    if not allow_private:
        host = parts.hostname
        try:
            if _private(host):
                raise InvalidInput("callback_url must not point at a private or loopback address",
                                   field="callback_url")
        except ValueError:
            if host == "localhost" or host.endswith(".localhost") or host.endswith(".internal"):
                raise InvalidInput("callback_url must not point at a private or loopback address",
                                   field="callback_url") from None
    return url


async def _resolves_private(host: str, port: int) -> bool:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return any(_private(info[4][0]) for info in infos)


@dataclass(frozen=True)
class Delivery:
    url: str
    attempts: int
    status_code: int | None
    delivered: bool
    error: str | None = None


def event_payload(job: Job, body: dict[str, Any]) -> tuple[str, bytes]:
    """(message id, JSON body). The id is stable per job and outcome, so receivers can drop duplicates."""
    message_id = f"{job.job_id}.{job.status.value}"
    payload = {"type": f"voice_clone.{job.status.value}", "timestamp": job.updated_at, "data": body}
    return message_id, json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


async def deliver(
    url: str,
    message_id: str,
    body: bytes,
    *,
    secret: str,
    allow_private: bool,
    max_attempts: int = 6,
    base_delay_s: float = 1.0,
    timeout_s: float = 10.0,
    client: httpx.AsyncClient | None = None,
) -> Delivery:
    parts = urlsplit(url)
    if not allow_private:
        try:
            if await _resolves_private(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)):
                return Delivery(url, 0, None, False, "callback host resolves to a private address")
        except OSError as err:
            return Delivery(url, 0, None, False, f"cannot resolve callback host: {err}")
    own = client is None
    client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
    status: int | None = None
    error: str | None = None
    try:
        for attempt in range(1, max_attempts + 1):
            timestamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "user-agent": "voiceq-webhooks/1",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, message_id, timestamp, body),
            }
            try:
                response = await client.post(url, content=body, headers=headers)
                status, error = response.status_code, None
                if 200 <= status < 300:
                    return Delivery(url, attempt, status, True)
                if status < 500 and status not in (408, 429):
                    return Delivery(url, attempt, status, False, f"receiver answered {status}")
                error = f"receiver answered {status}"
            except httpx.HTTPError as err:
                status, error = None, f"{type(err).__name__}: {err}"
            if attempt < max_attempts:
                await asyncio.sleep(base_delay_s * 2 ** (attempt - 1))
        return Delivery(url, max_attempts, status, False, error)
    finally:
        if own:
            await client.aclose()
