"""A small client for Convex's HTTP API (https://docs.convex.dev/http-api), on httpx.

    client = ConvexClient("https://happy-otter-123.convex.cloud", deploy_key=...)
    client.query("voiceCloneJobs:stats", {"userId": "u1"})

Each call is `POST {url}/api/{query|mutation|action}` with `{"path", "args", "format": "json"}`.
Convex answers `{"status": "success", "value": ...}`, or `{"status": "error", "errorMessage",
"errorData"?}` when the function threw (HTTP 200; older servers use 560), or a non-2xx
`{"code", "message"}` for everything else.

Failures are bounded: every attempt has a connect and a read timeout, transient failures are
retried a few times with exponential backoff, and the whole call has a deadline, so a dead
deployment costs seconds, not minutes. What is retried depends on whether repeating the call
is safe:

* queries, and calls marked `idempotent=True`: connection errors, timeouts, 5xx and 429;
* other mutations and actions only when the server cannot have run them: the connection was
  never made, or it answered 429 or 503. A timeout or a 500 after the request went out may
  mean the function ran; repeating it could apply it twice, so the caller gets the failure.

Function errors (the function ran and threw) are never retried. The deploy key is sent as
`Authorization: Convex <key>` and never logged or shown in errors or reprs.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import Any, Callable, Literal, Mapping

import httpx

from .errors import (
    ConvexAuthError,
    ConvexFunctionError,
    ConvexRequestError,
    ConvexUnavailable,
)

log = logging.getLogger("convex_client")

Kind = Literal["query", "mutation", "action"]

# Convex's status for "the function threw", before it moved to 200.
_UDF_FAILED = 560
# Connection failures before anything was sent: always safe to repeat.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Statuses that say the request was not executed.
_NOT_EXECUTED = frozenset({429, 503})


class _Retry(Exception):
    """An attempt failed in a way that another attempt may fix."""

    def __init__(self, reason: str, *, safe_to_repeat: bool, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.safe_to_repeat = safe_to_repeat
        self.wait_s = wait_s


class ConvexClient:
    def __init__(
        self,
        url: str,
        *,
        deploy_key: str | None = None,
        auth_token: str | None = None,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 2.0,
        max_attempts: int = 3,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 2.0,
        deadline_s: float = 15.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = url.strip().rstrip("/")
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"CONVEX_URL must be an http(s) URL such as https://<name>.convex.cloud, not {url!r}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.url = url
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.deadline_s = deadline_s
        self._sleep = sleep
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if deploy_key:
            headers["Authorization"] = f"Convex {deploy_key}"
        elif auth_token:  # a signed-in user's JWT: public functions, as that user
            headers["Authorization"] = f"Bearer {auth_token}"
        self._has_key = bool(deploy_key)
        # One pooled client for the store's lifetime: keep-alive connections are reused across
        # calls and threads (httpx.Client is thread-safe).
        self._http = httpx.Client(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
            follow_redirects=False,
        )
        self._closed = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ConvexClient(url={self.url!r}, deploy_key={'<set>' if self._has_key else None})"

    # --- calls --------------------------------------------------------------------------

    def query(self, path: str, args: Mapping[str, Any] | None = None) -> Any:
        return self.call("query", path, args, idempotent=True)

    def mutation(self, path: str, args: Mapping[str, Any] | None = None, *, idempotent: bool = False) -> Any:
        return self.call("mutation", path, args, idempotent=idempotent)

    def action(self, path: str, args: Mapping[str, Any] | None = None, *, idempotent: bool = False) -> Any:
        return self.call("action", path, args, idempotent=idempotent)

    def call(self, kind: Kind, path: str, args: Mapping[str, Any] | None, *, idempotent: bool) -> Any:
        if kind not in ("query", "mutation", "action"):
            raise ValueError(f"unknown Convex function kind {kind!r}")
        body = {"path": path, "args": dict(args or {}), "format": "json"}
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(kind, path, body)
            except _Retry as failure:
                repeat = failure.safe_to_repeat or idempotent
                wait = failure.wait_s if failure.wait_s is not None else self._backoff_s(attempt)
                out_of_time = time.monotonic() - started + wait > self.deadline_s
                if not repeat or attempt >= self.max_attempts or out_of_time:
                    why = "" if repeat else " (not retried: the call may have run)"
                    raise ConvexUnavailable(
                        f"Convex at {self.url} did not answer {kind} {path} after {attempt} attempt"
                        f"{'s' if attempt != 1 else ''}: {failure.reason}{why}",
                        path=path,
                        attempts=attempt,
                    ) from None
                log.warning(
                    "Convex %s %s failed (%s); retrying in %.2f s (attempt %d of %d)",
                    kind, path, failure.reason, wait, attempt + 1, self.max_attempts,
                )
                self._sleep(wait)

    def _backoff_s(self, attempt: int) -> float:
        # Exponential with jitter, so clients that failed together do not retry together.
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def _attempt(self, kind: Kind, path: str, body: dict[str, Any]) -> Any:
        try:
            response = self._http.post(f"/api/{kind}", content=json.dumps(body, allow_nan=False))
        except _UNSENT as err:
            raise _Retry(f"{type(err).__name__}: {err}", safe_to_repeat=True) from err
        except httpx.TransportError as err:
            raise _Retry(f"{type(err).__name__}: {err}", safe_to_repeat=False) from err
        status = response.status_code
        if status == 200 or status == _UDF_FAILED:
            return self._envelope(path, response)
        message, code = _error_body(response)
        if status == 429 or status >= 500:
            raise _Retry(
                f"HTTP {status}{f' {code}' if code else ''}: {message}",
                safe_to_repeat=status in _NOT_EXECUTED,
                wait_s=_retry_after_s(response, self.backoff_max_s),
            )
        error = ConvexAuthError if status in (401, 403) else ConvexRequestError
        hint = " (check CONVEX_DEPLOY_KEY)" if error is ConvexAuthError else ""
        raise error(
            f"Convex refused {kind} {path}: HTTP {status}{f' {code}' if code else ''}: {message}{hint}",
            status_code=status,
            code=code,
            path=path,
        )

    def _envelope(self, path: str, response: httpx.Response) -> Any:
        try:
            payload = response.json()
        except ValueError:
            raise _Retry(f"HTTP {response.status_code} with a body that is not JSON", safe_to_repeat=False) from None
        status = payload.get("status") if isinstance(payload, dict) else None
        if status == "success":
            return payload.get("value")
        if status == "error":
            message = str(payload.get("errorMessage") or "function failed")
            raise ConvexFunctionError(message, path=path, data=payload.get("errorData"))
        raise _Retry(f"HTTP {response.status_code} with an unexpected body", safe_to_repeat=False)

    # --- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._http.close()

    def __enter__(self) -> ConvexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error_body(response: httpx.Response) -> tuple[str, str | None]:
    try:
        payload = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:200] or response.reason_phrase or "no details"), None
    if isinstance(payload, dict):
        return str(payload.get("message") or payload), (str(payload["code"]) if payload.get("code") else None)
    return str(payload)[:200], None


def _retry_after_s(response: httpx.Response, cap_s: float) -> float | None:
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, min(float(raw), cap_s))
    except ValueError:
        return None
