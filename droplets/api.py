"""A thin, rate-limit-aware client for the DigitalOcean droplet API.

This is the only module that imports pydo (and azure-core, which pydo is built on). It turns
every vendor failure into one `DigitalOceanError` raised `from` the original exception, and
it decides on its own when a request may be sent again:

- GET, DELETE and the tag calls are safe to repeat: retried on 429, 5xx and transport errors.
- Creating droplets is not: it is retried only when DigitalOcean certainly did not act (a 429,
  or a connection that never carried the request). A 5xx or a read timeout raises with
  ``outcome_unknown=True`` so the provider can look for what may have been created.

azure-core's own retries are switched off so that these rules, and the rate-limit pacing in
`droplets.retries`, are the only ones in play.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pydo
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import HeadersPolicy, HttpLoggingPolicy
from azure.core.pipeline.policies import RetryPolicy as _AzureRetryPolicy

from droplets.errors import DigitalOceanError
from droplets.model import Droplet, parse_droplet
from droplets.retries import (
    RateLimit,
    RetryPolicy,
    pacing_delay_s,
    parse_rate_limit,
    retry_delay_s,
)

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://api.digitalocean.com"
MAX_NAMES_PER_CREATE = 10
PAGE_SIZE = 200
# A runaway "next" link must not turn one listing into thousands of requests.
MAX_PAGES = 100

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# azure-core logs every request at INFO (with Authorization redacted); at autoscaler log
# levels that is noise, so its HTTP log goes to a child logger that stays at WARNING.
_http_logger = logging.getLogger(__name__ + ".http")
_http_logger.setLevel(logging.WARNING)


@dataclass(frozen=True)
class CreateRequest:
    """The body of one ``POST /v2/droplets`` (1 to 10 droplets sharing everything but name)."""

    names: tuple[str, ...]
    region: str
    size: str
    image: str | int
    tags: tuple[str, ...]
    user_data: str | None = None
    vpc_uuid: str | None = None
    ssh_keys: tuple[str | int, ...] = ()
    monitoring: bool = True
    ipv6: bool = False
    backups: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.names) <= MAX_NAMES_PER_CREATE:
            raise ValueError(
                f"one create call takes 1 to {MAX_NAMES_PER_CREATE} names, got {len(self.names)}"
            )

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "names": list(self.names),
            "region": self.region,
            "size": self.size,
            "image": self.image,
            "tags": list(self.tags),
            "monitoring": self.monitoring,
            "ipv6": self.ipv6,
            "backups": self.backups,
        }
        if self.ssh_keys:
            body["ssh_keys"] = list(self.ssh_keys)
        if self.user_data is not None:
            body["user_data"] = self.user_data
        if self.vpc_uuid:
            body["vpc_uuid"] = self.vpc_uuid
        return body


@dataclass
class _Reply:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def _capture(pipeline_response: Any, deserialized: Any, _headers: Any) -> _Reply:
    # pydo's `cls` hook: keep the status and raw headers, which pydo otherwise drops
    # (and on a 404 from get/destroy it would hand back the error body as if it were data).
    http = pipeline_response.http_response
    return _Reply(status=http.status_code, body=deserialized, headers=dict(http.headers))


def _error_body(err: HttpResponseError) -> Any:
    response: Any = err.response
    if response is None:
        return None
    try:
        return response.json()
    except Exception:  # noqa: BLE001 - any unparsable body is just "no JSON"
        try:
            text = response.text()
        except Exception:  # noqa: BLE001
            return None
        return {"message": text[:300]} if text else None


def _describe(body: Any, fallback: str) -> tuple[str | None, str]:
    if isinstance(body, Mapping):
        error_id = body.get("id")
        message = body.get("message")
        return (str(error_id) if error_id else None, str(message) if message else fallback)
    return None, fallback


def _next_page(body: Mapping[str, Any], current: int) -> int | None:
    pages = ((body.get("links") or {}).get("pages")) or {}
    link = pages.get("next")
    if not link:
        return None
    try:
        page = int(parse_qs(urlsplit(link).query)["page"][0])
    except (KeyError, ValueError, IndexError):
        page = current + 1
    return page if page > current else None


def check_endpoint(endpoint: str) -> bool:
    """Validate the API base URL; returns True when it is plain http (loopback only)."""
    parts = urlsplit(endpoint)
    if parts.scheme == "https":
        return False
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return True
    raise ValueError(
        "the DigitalOcean API endpoint must be https (plain http is allowed only on "
        f"loopback, for local stand-ins); got scheme {parts.scheme!r} host {parts.hostname!r}"
    )


class DigitalOceanApi:
    """Droplet and tag calls against one DigitalOcean account (one API token).

    Thread-safe: pydo's pipeline may be shared between threads, and the rate-limit state is
    guarded by a lock.
    """

    def __init__(
        self,
        token: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        create_timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not token:
            raise ValueError("a DigitalOcean API token is required")
        plain_http = check_endpoint(endpoint)
        self._endpoint = endpoint
        self._retry = retry or RetryPolicy()
        self._timeout_s = timeout_s
        self._create_timeout_s = create_timeout_s
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._limit_lock = threading.Lock()
        self._rate_limit: RateLimit | None = None
        options: dict[str, Any] = {
            "endpoint": endpoint,
            "retry_policy": _AzureRetryPolicy.no_retries(),
            "http_logging_policy": HttpLoggingPolicy(logger=_http_logger),
        }
        if plain_http:
            # azure-core refuses bearer credentials over http; a local stand-in gets the
            # same header through a plain headers policy instead.
            options["authentication_policy"] = HeadersPolicy(
                {"Authorization": f"Bearer {token}"}
            )
        self._client = pydo.Client(token, **options)

    def __repr__(self) -> str:
        return f"DigitalOceanApi(endpoint={self._endpoint!r})"

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()

    @property
    def rate_limit(self) -> RateLimit | None:
        with self._limit_lock:
            return self._rate_limit

    # ---- droplets -------------------------------------------------------------------

    def list_droplets(self, *, tag: str | None = None) -> list[Droplet]:
        """All droplets carrying `tag` (every droplet if None), GPU droplets included.

        GPU droplets appear only in the ``type=gpus`` listing, which cannot be combined with
        ``tag_name``; so that listing is filtered here, and both are filtered again client
        side in case the server ignores a filter.
        """
        found: dict[int, Droplet] = {}
        for droplet in self._list_pages("list droplets", tag_name=tag):
            found[droplet.id] = droplet
        for droplet in self._list_pages("list GPU droplets", type="gpus"):
            found[droplet.id] = droplet
        return [d for d in found.values() if tag is None or d.has_tag(tag)]

    def _list_pages(self, operation: str, **query: Any) -> Iterable[Droplet]:
        page: int | None = 1
        pages_read = 0
        while page is not None:
            current = page
            reply = self._send(
                operation,
                lambda _page=current, **kw: self._client.droplets.list(
                    per_page=PAGE_SIZE, page=_page, **query, **kw
                ),
                accept=(200,),
                resend_if_unanswered=True,
            )
            body = reply.body or {}
            for item in body.get("droplets") or []:
                yield self._parse(operation, item)
            pages_read += 1
            page = _next_page(body, current) if pages_read < MAX_PAGES else None

    def get_droplet(self, droplet_id: int) -> Droplet | None:
        """The droplet, or None if DigitalOcean does not know it (404)."""
        reply = self._send(
            f"get droplet {droplet_id}",
            lambda **kw: self._client.droplets.get(droplet_id=droplet_id, **kw),
            accept=(200, 404),
            resend_if_unanswered=True,
        )
        if reply.status == 404:
            return None
        return self._parse(f"get droplet {droplet_id}", (reply.body or {}).get("droplet"))

    def create_droplets(self, request: CreateRequest) -> list[Droplet]:
        operation = f"create droplets {', '.join(request.names)}"
        reply = self._send(
            operation,
            lambda **kw: self._client.droplets.create(body=request.body(), **kw),
            accept=(202,),
            resend_if_unanswered=False,
            timeout_s=self._create_timeout_s,
        )
        body = reply.body or {}
        items = body.get("droplets")
        if items is None and body.get("droplet") is not None:
            items = [body["droplet"]]
        droplets = [self._parse(operation, item) for item in items or []]
        if len(droplets) != len(request.names):
            raise DigitalOceanError(
                operation,
                f"asked for {len(request.names)} droplets, the reply describes {len(droplets)}",
                status_code=reply.status,
                outcome_unknown=True,
            )
        return droplets

    def destroy_droplet(self, droplet_id: int) -> bool:
        """Destroy a droplet. True if destroyed now, False if it was already gone."""
        reply = self._send(
            f"destroy droplet {droplet_id}",
            lambda **kw: self._client.droplets.destroy(droplet_id=droplet_id, **kw),
            accept=(204, 404),
            resend_if_unanswered=True,
            priority=True,
        )
        return reply.status == 204

    # ---- tags -----------------------------------------------------------------------

    def ensure_tag(self, tag: str) -> None:
        """Create the tag if needed (assigning a tag that does not exist is a 404)."""
        reply = self._send(
            f"create tag {tag}",
            lambda **kw: self._client.tags.create(body={"name": tag}, **kw),
            accept=(200, 201, 422, 400),
            resend_if_unanswered=True,
        )
        if reply.status in (400, 422):
            error_id, message = _describe(reply.body, "tag rejected")
            # An existing tag is fine; anything else (an invalid name) is not.
            if "exist" not in message.lower():
                raise DigitalOceanError(
                    f"create tag {tag}", message, status_code=reply.status, error_id=error_id
                )

    def tag_droplet(self, droplet_id: int, tag: str) -> None:
        self._change_tag("assign", droplet_id, tag)

    def untag_droplet(self, droplet_id: int, tag: str) -> None:
        self._change_tag("unassign", droplet_id, tag)

    def _change_tag(self, action: str, droplet_id: int, tag: str) -> None:
        operation = f"{action} tag {tag} on droplet {droplet_id}"
        resources = {"resources": [{"resource_id": str(droplet_id), "resource_type": "droplet"}]}
        method = (
            self._client.tags.assign_resources
            if action == "assign"
            else self._client.tags.unassign_resources
        )
        reply = self._send(
            operation,
            lambda **kw: method(tag_id=tag, body=resources, **kw),
            accept=(204, 404),
            resend_if_unanswered=True,
        )
        if reply.status == 404:
            error_id, message = _describe(reply.body, "not found")
            raise DigitalOceanError(operation, message, status_code=404, error_id=error_id)

    # ---- cloud firewalls and VPCs -----------------------------------------------------
    # Firewalls are plain JSON objects here; droplets.firewall decides which are ours.

    def list_firewalls(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page: int | None = 1
        pages_read = 0
        while page is not None:
            current = page
            reply = self._send(
                "list firewalls",
                lambda _page=current, **kw: self._client.firewalls.list(per_page=PAGE_SIZE, page=_page, **kw),
                accept=(200,),
                resend_if_unanswered=True,
            )
            body = reply.body or {}
            found.extend(f for f in body.get("firewalls") or [] if isinstance(f, Mapping))
            pages_read += 1
            page = _next_page(body, current) if pages_read < MAX_PAGES else None
        return found

    def create_firewall(self, body: Mapping[str, Any]) -> dict[str, Any]:
        # Creating twice would make two firewalls: sent once; a lost reply is looked for by name.
        reply = self._send(
            f"create firewall {body.get('name')}",
            lambda **kw: self._client.firewalls.create(body=dict(body), **kw),
            accept=(202, 200, 201),
            resend_if_unanswered=False,
        )
        return dict((reply.body or {}).get("firewall") or {})

    def update_firewall(self, firewall_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        reply = self._send(
            f"update firewall {firewall_id}",
            lambda **kw: self._client.firewalls.update(firewall_id=firewall_id, body=dict(body), **kw),
            accept=(200,),
            resend_if_unanswered=True,
        )
        return dict((reply.body or {}).get("firewall") or {})

    def delete_firewall(self, firewall_id: str) -> bool:
        """Delete a firewall. True if deleted now, False if it was already gone."""
        reply = self._send(
            f"delete firewall {firewall_id}",
            lambda **kw: self._client.firewalls.delete(firewall_id=firewall_id, **kw),
            accept=(204, 404),
            resend_if_unanswered=True,
        )
        return reply.status == 204

    def vpc_ip_range(self, vpc_uuid: str | None, region: str) -> str:
        """The address range of the VPC (the region's default VPC when `vpc_uuid` is None)."""
        if vpc_uuid:
            reply = self._send(
                f"get vpc {vpc_uuid}",
                lambda **kw: self._client.vpcs.get(vpc_id=vpc_uuid, **kw),
                accept=(200,),
                resend_if_unanswered=True,
            )
            vpc = (reply.body or {}).get("vpc") or {}
        else:
            reply = self._send(
                "list vpcs",
                lambda **kw: self._client.vpcs.list(per_page=PAGE_SIZE, page=1, **kw),
                accept=(200,),
                resend_if_unanswered=True,
            )
            vpcs = [v for v in (reply.body or {}).get("vpcs") or [] if isinstance(v, Mapping)]
            vpc = next((v for v in vpcs if v.get("region") == region and v.get("default")), {})
        ip_range = vpc.get("ip_range") if isinstance(vpc, Mapping) else None
        if not ip_range:
            raise DigitalOceanError(f"find the VPC of {vpc_uuid or region}", "no VPC address range in the reply")
        return str(ip_range)

    # ---- the one place requests are sent ----------------------------------------------

    def _parse(self, operation: str, item: Any) -> Droplet:
        try:
            return parse_droplet(item)
        except (KeyError, TypeError, ValueError) as err:
            raise DigitalOceanError(
                operation, f"malformed droplet in the reply: {err!r}"
            ) from err

    def _observe(self, headers: Mapping[str, str]) -> None:
        limit = parse_rate_limit(headers)
        if limit is not None:
            with self._limit_lock:
                self._rate_limit = limit

    def _pace(self, operation: str, priority: bool) -> None:
        with self._limit_lock:
            limit = self._rate_limit
        delay = pacing_delay_s(
            limit, self._clock(), reserve=self._retry.reserve, priority=priority
        )
        if delay <= 0:
            return
        if delay > self._retry.max_wait_s:
            raise DigitalOceanError(
                operation,
                f"hourly API rate limit nearly exhausted ({limit.remaining if limit else 0} "
                f"left); it resets in {delay:.0f} s, longer than the "
                f"{self._retry.max_wait_s:.0f} s we wait",
                status_code=429,
                error_id="too_many_requests",
            )
        logger.warning(
            "DigitalOcean rate limit nearly exhausted; holding %s for %.1f s", operation, delay
        )
        self._sleep(delay)
        with self._limit_lock:
            # The budget we waited for has been refilled; the next reply will say by how much.
            if self._rate_limit is limit:
                self._rate_limit = None

    def _send(
        self,
        operation: str,
        call: Callable[..., Any],
        *,
        accept: tuple[int, ...],
        resend_if_unanswered: bool,
        priority: bool = False,
        timeout_s: float | None = None,
    ) -> _Reply:
        timeout = timeout_s if timeout_s is not None else self._timeout_s
        attempt = 0
        while True:
            attempt += 1
            self._pace(operation, priority)
            cause: Exception | None = None
            status: int | None
            body: Any = None
            headers: Mapping[str, str] = {}
            try:
                reply = call(cls=_capture, connection_timeout=timeout, read_timeout=timeout)
                status, body, headers = reply.status, reply.body, reply.headers
            except HttpResponseError as err:
                cause = err
                status = err.status_code
                body = _error_body(err)
                response: Any = err.response
                headers = dict(response.headers) if response is not None else {}
            except ServiceRequestError as err:
                # The request never left: always safe to send again.
                cause, status = err, None
            except ServiceResponseError as err:
                cause, status = err, None
                if not resend_if_unanswered:
                    raise DigitalOceanError(
                        operation,
                        f"sent, but no reply arrived ({type(err).__name__})",
                        outcome_unknown=True,
                    ) from err
            self._observe(headers)
            if status is not None and status in accept:
                return _Reply(status=status, body=body, headers=headers)
            if (
                status is not None
                and status >= 500
                and not resend_if_unanswered
            ):
                error_id, message = _describe(body, f"server error {status}")
                raise DigitalOceanError(
                    operation,
                    message,
                    status_code=status,
                    error_id=error_id,
                    outcome_unknown=True,
                ) from cause
            delay = retry_delay_s(
                self._retry,
                attempt=attempt,
                status_code=status,
                headers=headers,
                now=self._clock(),
                jitter=self._jitter(),
            )
            if delay is None:
                if status is None:
                    raise DigitalOceanError(
                        operation,
                        f"no reply after {attempt} attempt(s): {type(cause).__name__}",
                    ) from cause
                error_id, message = _describe(body, f"HTTP {status}")
                raise DigitalOceanError(
                    operation, message, status_code=status, error_id=error_id
                ) from cause
            logger.warning(
                "DigitalOcean %s: %s; retry %d/%d in %.2f s",
                operation,
                f"HTTP {status}" if status is not None else type(cause).__name__,
                attempt,
                self._retry.max_attempts - 1,
                delay,
            )
            self._sleep(delay)
