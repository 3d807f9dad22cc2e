"""Webhooks: a job's optional `callback_url` is called when the job completes, fails or is cancelled.

Signed the Standard Webhooks way (what Svix, Replicate and others use), with the
`standardwebhooks` reference library: headers `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the
base64-decoded part of a `whsec_...` `VOICEQ_WEBHOOK_SECRET` (see `signing_key`). The receiver recomputes the signature and rejects stale
timestamps. Delivery retries with exponential backoff on network errors, 408, 429 and 5xx;
other 4xx answers are final. Callbacks to loopback, private and link-local addresses are
refused unless `VOICEQ_WEBHOOK_ALLOW_PRIVATE` is set, so a job cannot make the service probe
its own network. The name is resolved once per attempt and the POST goes to the address that
passed the check (Host and TLS server name kept), so DNS rebinding cannot swap in another.
A receiver's answer is read only a few KB deep, and each attempt has a total deadline.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks.webhooks import Webhook as StandardWebhook

from .errors import InvalidInput

log = logging.getLogger("voiceq.webhooks")

_SECRET_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The HMAC key, the Standard Webhooks way: a `whsec_<base64>` secret is base64-decoded (what
    the `standardwebhooks` library and Svix do); any other secret is used as raw bytes, and a
    receiver using those libraries verifies with `whsec_` + base64 of it."""
    if secret.startswith(_SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(_SECRET_PREFIX):] + "==", validate=False)
        except ValueError as err:
            raise ValueError("VOICEQ_WEBHOOK_SECRET starts with whsec_ but is not base64") from err
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    stamp = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return StandardWebhook(signing_key(secret)).sign(message_id, stamp, body.decode())


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance_s: int = 300, now: float | None = None) -> bool:
    """What a receiver does (and what tests check): the signature matches and is recent."""
    try:
        timestamp = int(headers["webhook-timestamp"])
        expected = sign(secret, headers["webhook-id"], timestamp, body)
    except (KeyError, ValueError, UnicodeDecodeError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_s:
        return False
    return any(hmac.compare_digest(expected, s) for s in headers.get("webhook-signature", "").split())


# Special-purpose ranges that `is_global` lets through (or that tunnel to another address):
# shared address space (carrier NAT), 6to4 and Teredo (they embed an IPv4 address a relay
# would reach), NAT64, benchmarking, and IPv4-mapped/compatible IPv6.
_REFUSED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))


def is_forbidden_address(address: str) -> bool:
    """True for every address a webhook must not reach: anything not globally routable, and the
    special-purpose ranges above."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return True
    return any(ip.version == net.version and ip in net for net in _REFUSED_NETWORKS)


def _private(address: str) -> bool:
    return is_forbidden_address(address)


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


class CallbackRefused(Exception):
    """The callback host resolves to an address we will not call (or does not resolve)."""


async def resolve_callback(host: str, port: int, *, allow_private: bool) -> str:
    """Resolve the host once and return the address to connect to. Every address it resolves
    to must pass the check, so a name that mixes a public and a private answer is refused."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as err:
            raise CallbackRefused(f"cannot resolve callback host: {err}") from err
        addresses = [str(info[4][0]) for info in infos]
        if not addresses:
            raise CallbackRefused("callback host has no address")
    if not allow_private and any(_private(a) for a in addresses):
        raise CallbackRefused("callback host resolves to a private address")
    return addresses[0]


def pinned_request(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL to connect to `address` (the one that passed the check) instead of resolving the
    name again, with the Host header and TLS server name (SNI and certificate check) of the
    original host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal + (f":{parts.port}" if parts.port else "")
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
    return target, {"host": host_header}, extensions


@dataclass(frozen=True)
class Delivery:
    url: str
    attempts: int
    status_code: int | None
    delivered: bool
    error: str | None = None


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: delivered, or whether trying again may help."""

    delivered: bool
    retryable: bool
    status_code: int | None = None
    error: str | None = None


# A receiver's answer is read this far and no further: we only need its status line.
MAX_RESPONSE_BYTES = 4096


def new_client(timeout_s: float = 10.0) -> httpx.AsyncClient:
    # trust_env=False: an HTTP(S)_PROXY from the environment would resolve the name itself,
    # undoing the address pinning.
    return httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False)


async def deliver_once(
    url: str,
    message_id: str,
    body: bytes,
    *,
    secret: str,
    allow_private: bool,
    deadline_s: float = 15.0,
    client: httpx.AsyncClient | None = None,
) -> Attempt:
    """One signed POST, connecting to the address that passed the address check (resolved
    afresh for this attempt), reading at most MAX_RESPONSE_BYTES of the answer, all within
    `deadline_s`. 2xx is delivered; network errors, 408, 429 and 5xx may pass; other answers
    and refused addresses are final."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    own = client is None
    client = client or new_client(deadline_s)
    try:
        async with asyncio.timeout(deadline_s):
            try:
                address = await resolve_callback(parts.hostname or "", port, allow_private=allow_private)
            except CallbackRefused as err:
                return Attempt(False, retryable=False, error=str(err))
            target, host_header, extensions = pinned_request(url, address)
            timestamp = int(time.time())
            headers = {
                **host_header,
                "content-type": "application/json",
                "user-agent": "voiceq-webhooks/1",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, message_id, timestamp, body),
            }
            try:
                request = client.build_request("POST", target, content=body, headers=headers, extensions=extensions)
                response = await client.send(request, stream=True)
                try:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= MAX_RESPONSE_BYTES:
                            break
                finally:
                    await response.aclose()
            except httpx.HTTPError as err:
                return Attempt(False, retryable=True, error=f"{type(err).__name__}: {err}")
            status = response.status_code
            if 200 <= status < 300:
                return Attempt(True, retryable=False, status_code=status)
            retryable = status >= 500 or status in (408, 429)
            return Attempt(False, retryable=retryable, status_code=status, error=f"receiver answered {status}")
    except TimeoutError:
        return Attempt(False, retryable=True, error=f"no complete answer within {deadline_s:g} s")
    finally:
        if own:
            await client.aclose()


def backoff_s(attempt: int, base_delay_s: float = 1.0, max_delay_s: float = 300.0) -> float:
    """Delay after the `attempt`-th failed attempt (1-based)."""
    return min(max_delay_s, base_delay_s * 2 ** (attempt - 1))


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
    """Attempts with backoff in this process (the outbox in voiceq/outbox.py is what survives
    restarts; this is for one-off deliveries and tests)."""
    own = client is None
    client = client or new_client(timeout_s)
    outcome = Attempt(False, retryable=True)
    try:
        for attempt in range(1, max_attempts + 1):
            outcome = await deliver_once(url, message_id, body, secret=secret, allow_private=allow_private,
                                         deadline_s=timeout_s, client=client)
            if outcome.delivered:
                return Delivery(url, attempt, outcome.status_code, True)
            if not outcome.retryable:
                return Delivery(url, attempt if outcome.status_code else 0, outcome.status_code, False, outcome.error)
            if attempt < max_attempts:
                await asyncio.sleep(backoff_s(attempt, base_delay_s))
        return Delivery(url, max_attempts, outcome.status_code, False, outcome.error)
    finally:
        if own:
            await client.aclose()
