"""Retry and pacing decisions for DigitalOcean requests."""

from __future__ import annotations

import email.utils

import pytest

from droplets.retries import (
    RateLimit,
    RetryPolicy,
    backoff_s,
    pacing_delay_s,
    parse_rate_limit,
    parse_retry_after,
    retry_delay_s,
)

POLICY = RetryPolicy(max_attempts=4, backoff_base_s=1.0, backoff_max_s=8.0, max_wait_s=30.0,
                     reserve=5)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after({"Retry-After": "7"}, now=0) == 7.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1_000_000) == pytest.approx(30, abs=1)
    assert parse_retry_after({}, now=0) is None
    assert parse_retry_after({"retry-after": "soon"}, now=0) is None


def test_rate_limit_headers() -> None:
    limit = parse_rate_limit(
        {"RateLimit-Limit": "5000", "ratelimit-remaining": "12", "ratelimit-reset": "1700000000"}
    )
    assert limit == RateLimit(limit=5000, remaining=12, reset_at=1_700_000_000.0)
    assert parse_rate_limit({"ratelimit-remaining": "x", "ratelimit-reset": "1"}) is None
    assert parse_rate_limit({}) is None


def test_429_honours_retry_after_over_backoff() -> None:
    delay = retry_delay_s(POLICY, attempt=1, status_code=429, headers={"retry-after": "3"},
                          now=0, jitter=0.0)
    assert delay == 3.0


def test_429_without_retry_after_waits_for_the_reset_when_nothing_remains() -> None:
    headers = {"ratelimit-remaining": "0", "ratelimit-reset": "110"}
    assert retry_delay_s(POLICY, attempt=1, status_code=429, headers=headers, now=100,
                         jitter=0.0) == 10.0
    # A burst 429 with budget left: plain backoff.
    headers = {"ratelimit-remaining": "40", "ratelimit-reset": "110"}
    assert retry_delay_s(POLICY, attempt=2, status_code=429, headers=headers, now=100,
                         jitter=0.0) == backoff_s(POLICY, 2, 0.0)


def test_waits_longer_than_the_limit_give_up() -> None:
    assert retry_delay_s(POLICY, attempt=1, status_code=429, headers={"retry-after": "3600"},
                         now=0, jitter=0.5) is None


def test_which_failures_are_retried() -> None:
    for status in (500, 502, 503, 504, None):
        assert retry_delay_s(POLICY, attempt=1, status_code=status, headers={}, now=0,
                             jitter=0.5) is not None
    for status in (400, 401, 403, 404, 422):
        assert retry_delay_s(POLICY, attempt=1, status_code=status, headers={}, now=0,
                             jitter=0.5) is None
    assert retry_delay_s(POLICY, attempt=4, status_code=503, headers={}, now=0, jitter=0.5) is None


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff_s(POLICY, attempt, 1.0) for attempt in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff_s(POLICY, 3, 0.0) == 2.0  # never less than half the ceiling


def test_pacing_keeps_a_reserve_for_destroys() -> None:
    low = RateLimit(limit=5000, remaining=5, reset_at=120.0)
    assert pacing_delay_s(low, 100.0, reserve=5, priority=False) == 20.0
    assert pacing_delay_s(low, 100.0, reserve=5, priority=True) == 0.0
    empty = RateLimit(limit=5000, remaining=0, reset_at=120.0)
    assert pacing_delay_s(empty, 100.0, reserve=5, priority=True) == 20.0
    assert pacing_delay_s(RateLimit(5000, 4000, 120.0), 100.0, reserve=5, priority=False) == 0.0
    assert pacing_delay_s(None, 100.0, reserve=5, priority=False) == 0.0


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(reserve=-1)
