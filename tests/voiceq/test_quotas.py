"""Per-key quotas and the key options of VOICEQ_API_KEYS: pure decisions."""

from __future__ import annotations

import pytest

from serve_app.auth import Keyring
from voiceq.errors import InvalidInput, QueueFull
from voiceq.quotas import KeyLimits, check_key_load, check_priority, parse_limit_options
from voiceq.settings import Settings

SETTINGS = Settings(max_active_jobs_per_key=5, max_jobs_per_day_per_key=0, auth="required")


def test_the_existing_key_forms_stay_valid_and_options_follow_them() -> None:
    ring = Keyring.from_settings(SETTINGS.replace(
        api_keys="a:ka,ops:ko:admin,c:kc:active=2:daily=100,vip:kv:priority=5,root:kr:admin:daily=9"))
    a, ops, c, vip, root = (ring.authenticate(f"Bearer {k}") for k in ("ka", "ko", "kc", "kv", "kr"))
    assert (a.admin, a.limits) == (False, KeyLimits())
    assert (ops.admin, ops.limits.max_priority) == (True, 10)
    assert c.limits == KeyLimits(max_active=2, max_per_day=100, max_priority=0)
    assert vip.limits.max_priority == 5 and not vip.admin
    assert root.admin and root.limits.max_per_day == 9


@pytest.mark.parametrize("options", [["admni"], ["active=-1"], ["active=x"], ["speed=3"], ["priority=11"]])
def test_unknown_or_malformed_options_are_refused(options: list[str]) -> None:
    with pytest.raises(ValueError, match="VOICEQ_API_KEYS"):
        parse_limit_options(options)


def test_priorities_above_zero_need_a_key_allowed_them() -> None:
    check_priority(0, KeyLimits())
    check_priority(-3, KeyLimits())
    with pytest.raises(InvalidInput) as refused:
        check_priority(1, KeyLimits())
    assert (refused.value.field, refused.value.status_code) == ("priority", 403)
    check_priority(5, KeyLimits(max_priority=5))
    with pytest.raises(InvalidInput):
        check_priority(6, KeyLimits(max_priority=5))


def test_a_key_is_bounded_however_many_user_ids_it_uses() -> None:
    check_key_load(key="a", active=4, today=1000, limits=KeyLimits(), settings=SETTINGS)
    with pytest.raises(QueueFull) as full:
        check_key_load(key="a", active=5, today=0, limits=KeyLimits(), settings=SETTINGS)
    assert full.value.status_code == 429 and "'a'" in full.value.message
    check_key_load(key="b", active=5, today=0, limits=KeyLimits(max_active=6), settings=SETTINGS)
    with pytest.raises(QueueFull, match="24 hours"):
        check_key_load(key="b", active=0, today=3, limits=KeyLimits(max_per_day=3), settings=SETTINGS)
    with pytest.raises(QueueFull, match="24 hours"):
        check_key_load(key="c", active=0, today=7, limits=KeyLimits(),
                       settings=SETTINGS.replace(max_jobs_per_day_per_key=7))
