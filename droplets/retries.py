"""When to retry a DigitalOcean request and how long to wait: pure decisions, no I/O.

DigitalOcean allows 5,000 requests an hour and 250 a minute per token. Every response carries
``ratelimit-limit``, ``ratelimit-remaining`` and ``ratelimit-reset`` (Unix time at which the
oldest counted request expires); a 429 caused by the per-minute burst limit carries
``retry-after``. We pace on the hourly headers, honour ``retry-after``, and back off
exponentially (with jitter, bounded) on 5xx and transport failures.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying one logical request.

    `max_attempts` counts the first try. `max_wait_s` is the longest single wait we accept:
    a ``retry-after`` or rate-limit reset further away than that fails the call instead of
    stalling the autoscaler. `reserve` requests of the hourly budget are kept back for
    destroys, because destroying is what stops the bill.
    """

    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    max_wait_s: float = 60.0
    reserve: int = 10

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.max_wait_s < 0:
            raise ValueError("waits must not be negative")
        if self.reserve < 0:
            raise ValueError("reserve must not be negative")


@dataclass(frozen=True)
class RateLimit:
    """The hourly budget as the last response reported it."""

    limit: int | None
    remaining: int
    reset_at: float


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # azure-core and http.server both give case-insensitive mappings, plain dicts do not.
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    remaining = _header(headers, "ratelimit-remaining")
    reset = _header(headers, "ratelimit-reset")
    if remaining is None or reset is None:
        return None
    try:
        limit_raw = _header(headers, "ratelimit-limit")
        return RateLimit(
            limit=int(limit_raw) if limit_raw is not None else None,
            remaining=int(remaining),
            reset_at=float(reset),
        )
    except ValueError:
        return None


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from a ``retry-after`` header (delta-seconds or an HTTP date)."""
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(when.timestamp()) - now)


def backoff_s(policy: RetryPolicy, attempt: int, jitter: float) -> float:
    """Exponential backoff before retry number `attempt` (1-based), `jitter` in [0, 1)."""
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2.0 ** (attempt - 1))
    # Half fixed, half random: spreads concurrent retries without ever waiting ~0.
    return ceiling * (0.5 + 0.5 * jitter)


def pacing_delay_s(
    limit: RateLimit | None, now: float, *, reserve: int, priority: bool
) -> float:
    """How long to hold a request back so the hourly budget is not exhausted.

    Ordinary requests wait for the reset once only `reserve` requests remain; priority
    requests (destroys) may use the reserve and wait only when nothing remains.
    """
    if limit is None:
        return 0.0
    floor = 0 if priority else reserve
    if limit.remaining > floor:
        return 0.0
    return max(0.0, limit.reset_at - now)


def retry_delay_s(
    policy: RetryPolicy,
    *,
    attempt: int,
    status_code: int | None,
    headers: Mapping[str, str],
    now: float,
    jitter: float,
) -> float | None:
    """Seconds to wait before retrying after attempt number `attempt`, or None to give up.

    `status_code` None means no HTTP response (connection refused, timeout); the caller
    decides whether such a request may be resent at all.
    """
    if attempt >= policy.max_attempts:
        return None
    if status_code is not None and status_code not in RETRYABLE_STATUSES:
        return None
    delay: float | None = None
    if status_code == 429:
        delay = parse_retry_after(headers, now)
        if delay is None:
            limit = parse_rate_limit(headers)
            if limit is not None and limit.remaining <= 0 and limit.reset_at > now:
                delay = limit.reset_at - now
    if delay is None:
        delay = backoff_s(policy, attempt, jitter)
    if delay > policy.max_wait_s:
        return None
    return delay
