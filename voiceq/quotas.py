"""Per-key quotas: how many jobs one API key may have waiting or running, and submit per day,
so that a client rotating `user_id` cannot fill the queue; and which keys may jump it with a
priority above 0. Pure values and decisions; the manager counts, the HTTP layer parses keys."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidInput, QueueFull
from .settings import Settings

DAY_S = 86_400.0
MAX_PRIORITY = 10


@dataclass(frozen=True)
class KeyLimits:
    """A key's own limits from VOICEQ_API_KEYS (`active=N`, `daily=N`, `priority=N`); None:
    the settings' defaults."""

    max_active: int | None = None
    max_per_day: int | None = None
    max_priority: int = 0


UNLIMITED = KeyLimits(max_priority=MAX_PRIORITY)  # keys off (one tenant), admin keys' priority


def active_limit(limits: KeyLimits, settings: Settings) -> int:
    return settings.max_active_jobs_per_key if limits.max_active is None else limits.max_active


def daily_limit(limits: KeyLimits, settings: Settings) -> int:
    """0: no daily bound."""
    return settings.max_jobs_per_day_per_key if limits.max_per_day is None else limits.max_per_day


def check_priority(priority: int, limits: KeyLimits) -> None:
    if priority > limits.max_priority:
        allowed = "above 0" if limits.max_priority <= 0 else f"above {limits.max_priority}"
        raise InvalidInput(f"priority {priority} is not allowed for this API key (no priority {allowed}; "
                           "ask the operator for a key with priority=N)", field="priority", status_code=403)


def check_key_load(*, key: str, active: int, today: int, limits: KeyLimits, settings: Settings) -> None:
    """Raises QueueFull (429: that key is sending too much) past either bound."""
    bound = active_limit(limits, settings)
    if active >= bound:
        raise QueueFull(f"API key {key!r} already has {active} jobs waiting or running (at most {bound}); "
                        "wait for some to finish", retry_after_s=10, per_user=True)
    daily = daily_limit(limits, settings)
    if daily and today >= daily:
        raise QueueFull(f"API key {key!r} submitted {today} jobs in the last 24 hours (at most {daily})",
                        retry_after_s=600, per_user=True)


def parse_limit_options(options: list[str]) -> tuple[bool, KeyLimits]:
    """The options after `name:key` in VOICEQ_API_KEYS: `admin`, `active=N`, `daily=N`,
    `priority=N`. Returns (admin, limits)."""
    admin, values = False, {}
    names = {"active": "max_active", "daily": "max_per_day", "priority": "max_priority"}
    for option in options:
        if option == "admin":
            admin = True
            continue
        name, sep, raw = option.partition("=")
        if not sep or name not in names or not raw.isdigit():
            raise ValueError("VOICEQ_API_KEYS options are admin, active=N, daily=N and priority=N "
                             "(e.g. name:key:active=20:daily=500)")
        values[names[name]] = int(raw)
    if "max_priority" in values and values["max_priority"] > MAX_PRIORITY:
        raise ValueError(f"VOICEQ_API_KEYS priority=N: N is at most {MAX_PRIORITY}")
    values.setdefault("max_priority", MAX_PRIORITY if admin else 0)
    return admin, KeyLimits(**values)
