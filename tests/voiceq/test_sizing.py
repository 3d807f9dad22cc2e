"""The GPU size choice and the fleet plan (pure), and the billing model they price with."""

from __future__ import annotations

import pytest

from voiceq.billing import Billing
from voiceq.scaling import QueueSnapshot, Reason, ScalingConfig, ScalingState, decide
from voiceq.sizing import (GpuType, billing_from_cluster_config, choose_size, gpu_types_from_cluster_config,
                           plan_fleet)

T0 = 1_800_000_000.0
RTX4000 = GpuType("gpu_rtx4000", "gpu-4000adax1-20gb", 0.76, 0.7)
L40S = GpuType("gpu_l40s", "gpu-l40sx1-48gb", 1.57, 2.0)
MI300X = GpuType("gpu_mi300x", "gpu-mi300x1-192gb", 1.99, 2.7)
H100 = GpuType("gpu_h100", "gpu-h100x1-80gb", 3.39, 3.2)
FLEET = (RTX4000, L40S, MI300X, H100)
PER_SECOND = Billing(1.0, 60.0)
CONFIG = ScalingConfig(max_replicas=4, wait_target_s=600.0, idle_s=180.0, scale_in_s=120.0)


def snap(pending: int = 0, processing: int = 0, at: float = T0) -> QueueSnapshot:
    return QueueSnapshot(pending=pending, processing=processing, oldest_pending_age_s=0.0 if pending else None,
                         taken_at=at)


# ---- billing -----------------------------------------------------------------------------


def test_per_second_billing_has_a_minute_minimum() -> None:
    assert PER_SECOND.billed_s(10) == 60 and PER_SECOND.billed_s(61.2) == 62
    assert PER_SECOND.cost(3600, 1.99) == pytest.approx(1.99)
    hourly = Billing.named("hourly")
    assert hourly.billed_s(1) == 3600 and hourly.billed_s(3601) == 7200
    assert hourly.paid_ahead_s(600) == 3000 and PER_SECOND.paid_ahead_s(600) == 0
    assert Billing.named("60/600") == Billing(60.0, 600.0)
    with pytest.raises(ValueError):
        Billing.named("fortnightly")


# ---- the size choice ---------------------------------------------------------------------


def test_a_trickle_goes_to_the_cheapest_gpu_per_hour() -> None:
    choice = choose_size(1, FLEET, wait_target_s=600, idle_s=180, billing=PER_SECOND, max_replicas=4)
    assert (choice.gpu, choice.replicas, choice.meets_target) == (RTX4000, 1, True)
    assert "gpu_rtx4000 x1: cheapest per job meeting the 600s wait target" in choice.reason


def test_a_burst_goes_to_the_cheapest_gpu_per_job_that_meets_the_target() -> None:
    choice = choose_size(2000, FLEET, wait_target_s=600, idle_s=180, billing=PER_SECOND, max_replicas=4)
    assert choice.gpu in (L40S, MI300X) and choice.meets_target and choice.clear_s <= 600
    # No other size and count that meets the target is cheaper per job.
    for gpu in FLEET:
        for n in range(1, 5):
            clear_s = gpu.cold_start_s + 2000 / (n * gpu.jobs_per_s)
            if clear_s <= 600:
                assert n * PER_SECOND.cost(clear_s + 240, gpu.hourly_usd) >= choice.cost_usd - 1e-9


def test_when_nothing_meets_the_target_the_fastest_wins() -> None:
    choice = choose_size(20000, FLEET, wait_target_s=600, idle_s=180, billing=PER_SECOND, max_replicas=2)
    assert (choice.gpu, choice.replicas, choice.meets_target) == (H100, 2, False)
    assert "no size clears" in choice.reason


def test_hourly_billing_makes_a_short_job_cost_an_hour() -> None:
    per_second = choose_size(1, (MI300X,), wait_target_s=600, idle_s=180, billing=PER_SECOND, max_replicas=1)
    hourly = choose_size(1, (MI300X,), wait_target_s=600, idle_s=180, billing=Billing.named("hourly"),
                         max_replicas=1)
    assert hourly.cost_usd == pytest.approx(1.99)
    assert per_second.cost_usd == pytest.approx(1.99 * 481 / 3600)  # 480.4 s, billed by the second


def test_a_slow_cheap_gpu_loses_when_it_cannot_meet_the_target() -> None:
    choice = choose_size(600, (RTX4000, L40S), wait_target_s=400, idle_s=180, billing=PER_SECOND, max_replicas=2)
    assert choice.gpu == L40S


# ---- the fleet plan ----------------------------------------------------------------------


def test_from_zero_the_plan_starts_the_chosen_size_and_says_why() -> None:
    plan, state = plan_fleet(snap(pending=1), {}, ScalingState(), CONFIG, FLEET, now=T0)
    assert dict(plan.desired) == {"gpu_rtx4000": 1, "gpu_l40s": 0, "gpu_mi300x": 0, "gpu_h100": 0}
    assert plan.decision.code == Reason.MIN_JOBS and plan.size == "gpu_rtx4000"
    line = plan.log_line()
    assert line.startswith("scale event=up from=0 to=1 reason=min_jobs")
    assert "size=gpu_rtx4000" in line and "cheapest per job" in plan.decision.reason
    assert state.fleet_since == T0


def test_a_burst_on_a_small_gpu_adds_a_large_one() -> None:
    current = {"gpu_rtx4000": 1}
    plan, _ = plan_fleet(snap(pending=1500, processing=4), current, ScalingState(), CONFIG, FLEET, now=T0)
    assert plan.desired["gpu_rtx4000"] == 1  # busy replicas are kept
    assert plan.decision.code == Reason.BACKLOG and plan.size in ("gpu_l40s", "gpu_mi300x")
    assert plan.desired[plan.size] >= 1
    assert sum(plan.desired.values()) <= CONFIG.max_replicas


def test_a_fleet_that_clears_the_backlog_in_time_holds() -> None:
    plan, _ = plan_fleet(snap(pending=50), {"gpu_mi300x": 1}, ScalingState(), CONFIG, FLEET, now=T0)
    assert plan.decision.code == Reason.BUSY and dict(plan.desired)["gpu_mi300x"] == 1


def test_the_priciest_surplus_replica_goes_after_scale_in_s() -> None:
    current = {"gpu_rtx4000": 1, "gpu_h100": 1}
    plan, state = plan_fleet(snap(pending=10), current, ScalingState(), CONFIG, FLEET, now=T0)
    assert plan.decision.code == Reason.SURPLUS and plan.desired["gpu_h100"] == 1
    plan, state = plan_fleet(snap(pending=10, at=T0 + 121), current, state, CONFIG, FLEET, now=T0 + 121)
    assert plan.decision.code == Reason.SCALE_IN
    assert dict(plan.desired) == {"gpu_rtx4000": 1, "gpu_l40s": 0, "gpu_mi300x": 0, "gpu_h100": 0}


def test_an_idle_fleet_goes_to_zero_after_idle_s() -> None:
    current = {"gpu_rtx4000": 1, "gpu_mi300x": 2}
    state = ScalingState(last_busy_at=T0, fleet_since=T0 - 600)
    plan, _ = plan_fleet(snap(at=T0 + 100), current, state, CONFIG, FLEET, now=T0 + 100)
    assert plan.decision.code == Reason.COOLDOWN and plan.desired == {**current, "gpu_l40s": 0, "gpu_h100": 0}
    plan, state = plan_fleet(snap(at=T0 + 181), current, state, CONFIG, FLEET, now=T0 + 181)
    assert plan.decision.code == Reason.IDLE_TIMEOUT and sum(plan.desired.values()) == 0
    assert state.fleet_since is None


def test_an_unreadable_store_holds_the_fleet() -> None:
    current = {"gpu_l40s": 2}
    plan, _ = plan_fleet(None, current, ScalingState(), CONFIG, FLEET, now=T0)
    assert plan.decision.code == Reason.STORE_UNAVAILABLE and plan.desired["gpu_l40s"] == 2


def test_the_standby_lives_on_the_cheapest_gpu_per_hour() -> None:
    config = ScalingConfig(max_replicas=4, warm_standby=1)
    plan, _ = plan_fleet(snap(), {}, ScalingState(), config, FLEET, now=T0)
    assert dict(plan.desired)["gpu_rtx4000"] == 1 and sum(plan.desired.values()) == 1


def test_hourly_billing_keeps_an_idle_gpu_until_its_hour_is_nearly_used() -> None:
    config = ScalingConfig(idle_s=180.0, billing_increment_s=3600.0, billing_minimum_s=3600.0)
    state = ScalingState(last_busy_at=T0 + 600, fleet_since=T0)
    held, _ = decide(snap(at=T0 + 1000), 1, state, config, now=T0 + 1000)
    assert held.code == Reason.PREPAID and held.desired == 1
    released, _ = decide(snap(at=T0 + 3520), 1, state, config, now=T0 + 3520)
    assert released.code == Reason.IDLE_TIMEOUT and released.desired == 0
    # Per-second billing: the usual idle timeout.
    per_second, _ = decide(snap(at=T0 + 1000), 1, state, ScalingConfig(idle_s=180.0), now=T0 + 1000)
    assert per_second.code == Reason.IDLE_TIMEOUT


def test_gpu_types_and_billing_come_from_the_cluster_config() -> None:
    import yaml

    from tests.droplets.cluster import REPO

    cluster = yaml.safe_load((REPO / "cluster_configs" / "digitalocean.yaml").read_text())
    gpus = {g.name: g for g in gpu_types_from_cluster_config(cluster)}
    assert {g.size for g in gpus.values()} >= {"gpu-4000adax1-20gb", "gpu-l40sx1-48gb", "gpu-mi300x1-192gb",
                                               "gpu-h100x1-80gb"}
    assert all(g.jobs_per_s > 0 and g.hourly_usd > 0 for g in gpus.values())
    assert billing_from_cluster_config(cluster) == PER_SECOND
