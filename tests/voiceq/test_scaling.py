"""The scaling decision: when a GPU starts, how many, when they go, and why."""

from __future__ import annotations

import pytest

from voiceq.scaling import Decision, QueueSnapshot, Reason, ScalingConfig, ScalingState, decide
from voiceq.store import JobStats

T0 = 1_800_000_000.0


def snap(pending: int = 0, processing: int = 0, oldest: float | None = None, at: float = T0) -> QueueSnapshot:
    if pending and oldest is None:
        oldest = 0.0
    return QueueSnapshot(pending=pending, processing=processing, oldest_pending_age_s=oldest, taken_at=at)


class Driver:
    """Feeds readings to `decide` like the Serve policy does, applying each decision."""

    def __init__(self, config: ScalingConfig, replicas: int = 0) -> None:
        self.config = config
        self.replicas = replicas
        self.state = ScalingState()
        self.changes: list[Decision] = []

    def step(self, at: float, pending: int = 0, processing: int = 0, oldest: float | None = None) -> Decision:
        decision, self.state = decide(snap(pending, processing, oldest, at=at), self.replicas, self.state,
                                      self.config, now=at)
        if decision.desired != self.replicas:
            self.changes.append(decision)
        self.replicas = decision.desired
        return decision


def test_defaults_start_a_gpu_for_the_first_waiting_job() -> None:
    decision, _ = decide(snap(pending=1), 0, ScalingState(), ScalingConfig(), now=T0)
    assert (decision.desired, decision.code) == (1, Reason.MIN_JOBS)


def test_a_gpu_starts_once_enough_jobs_wait() -> None:
    config = ScalingConfig(min_jobs_to_start=5, max_wait_s=120)
    few, _ = decide(snap(pending=4, oldest=30), 0, ScalingState(), config, now=T0)
    assert (few.desired, few.code) == (0, Reason.BELOW_THRESHOLD)
    enough, _ = decide(snap(pending=5, oldest=30), 0, ScalingState(), config, now=T0)
    assert (enough.desired, enough.code) == (1, Reason.MIN_JOBS)
    assert enough.direction == "up"


def test_a_gpu_starts_once_the_oldest_job_has_waited_long_enough() -> None:
    config = ScalingConfig(min_jobs_to_start=5, max_wait_s=120)
    young, _ = decide(snap(pending=1, oldest=119.0), 0, ScalingState(), config, now=T0)
    assert young.desired == 0
    old, _ = decide(snap(pending=1, oldest=120.0), 0, ScalingState(), config, now=T0)
    assert (old.desired, old.code) == (1, Reason.MAX_WAIT)


def test_jobs_under_lease_with_no_replica_start_nothing() -> None:
    # Their worker is gone; the leases expire and the jobs come back as pending.
    decision, _ = decide(snap(processing=3), 0, ScalingState(), ScalingConfig(), now=T0)
    assert (decision.desired, decision.code) == (0, Reason.IDLE)


def test_the_fleet_is_sized_to_the_backlog_and_capped() -> None:
    config = ScalingConfig(jobs_per_replica=100, max_replicas=3)
    start, _ = decide(snap(pending=250), 0, ScalingState(), config, now=T0)
    assert start.desired == 3  # a big queue starts several GPUs at once
    grow, _ = decide(snap(pending=150, processing=50), 1, ScalingState(), config, now=T0)
    assert (grow.desired, grow.code) == (2, Reason.BACKLOG)
    capped, _ = decide(snap(pending=5000), 1, ScalingState(), config, now=T0)
    assert (capped.desired, capped.code) == (3, Reason.MAX_REPLICAS)
    at_cap, _ = decide(snap(pending=5000), 3, ScalingState(), config, now=T0)
    assert (at_cap.desired, at_cap.code) == (3, Reason.MAX_REPLICAS)
    assert at_cap.direction == "hold"


def test_scale_down_waits_for_idle_s_of_empty_queue() -> None:
    d = Driver(ScalingConfig(idle_s=180), replicas=0)
    d.step(T0, pending=3)
    assert d.replicas == 1
    d.step(T0 + 5, processing=3)
    d.step(T0 + 15)  # the batch is done: the queue is empty from here
    for t in (60, 120, 184):
        decision = d.step(T0 + t)
        assert (decision.desired, decision.code) == (1, Reason.COOLDOWN)
    decision = d.step(T0 + 5 + 180)  # 180 s after the last reading that showed work
    assert (decision.desired, decision.code) == (0, Reason.IDLE_TIMEOUT)
    assert decision.log_line().startswith("scale event=down from=1 to=0 reason=idle_timeout")


def test_work_during_the_cooldown_restarts_the_idle_clock() -> None:
    d = Driver(ScalingConfig(idle_s=100), replicas=1)
    d.step(T0, processing=1)
    d.step(T0 + 90)
    d.step(T0 + 95, pending=1)  # one more job just before the GPU would go
    assert d.step(T0 + 150).desired == 1
    assert d.step(T0 + 195).desired == 0


def test_warm_standby_is_kept_while_idle_and_restored() -> None:
    config = ScalingConfig(warm_standby=1, idle_s=60, jobs_per_replica=10, max_replicas=4)
    up, _ = decide(snap(), 0, ScalingState(), config, now=T0)
    assert (up.desired, up.code) == (1, Reason.WARM_STANDBY)
    d = Driver(config, replicas=1)
    d.step(T0, pending=35)
    assert d.replicas == 4
    d.step(T0 + 10)
    assert d.step(T0 + 80).desired == 1  # down to the standby, not to zero
    assert d.step(T0 + 10_000).desired == 1


def test_no_flapping_when_the_backlog_hovers_at_a_boundary() -> None:
    d = Driver(ScalingConfig(jobs_per_replica=100, scale_in_s=120, max_replicas=4), replicas=1)
    # The backlog swings across the 1/2-replica boundary on every reading for ten minutes.
    for i in range(121):
        d.step(T0 + 5 * i, pending=120 if i % 2 == 0 else 80)
    assert [c.desired for c in d.changes] == [2]  # one scale-out, no stop-start cycle
    # A surplus that lasts scale_in_s does shrink the fleet, once.
    t = T0 + 605
    for i in range(30):
        d.step(t + 5 * i, pending=50)
    assert [(c.desired, c.code) for c in d.changes] == [(2, Reason.BACKLOG), (1, Reason.SCALE_IN)]
    assert 120 <= d.changes[-1].at - t < 130


def test_a_surplus_never_scales_to_zero_while_work_is_in_hand() -> None:
    d = Driver(ScalingConfig(jobs_per_replica=10, scale_in_s=0, idle_s=0), replicas=3)
    assert d.step(T0, processing=1).desired == 1
    assert d.step(T0 + 1, processing=1).desired == 1


def test_without_a_fresh_reading_the_fleet_is_held() -> None:
    config = ScalingConfig(stale_after_s=60)
    blind, state = decide(None, 2, ScalingState(last_busy_at=T0 - 10_000), config, now=T0)
    assert (blind.desired, blind.code) == (2, Reason.STORE_UNAVAILABLE)
    assert state == ScalingState(last_busy_at=T0 - 10_000)
    stale, _ = decide(snap(at=T0 - 61), 2, ScalingState(last_busy_at=T0 - 10_000), config, now=T0)
    assert (stale.desired, stale.code) == (2, Reason.STORE_UNAVAILABLE)
    assert stale.log_line() == "scale event=hold from=2 to=2 reason=store_unavailable pending=0 processing=0 oldest_s=-"
    fresh, _ = decide(snap(at=T0 - 59), 2, ScalingState(last_busy_at=T0 - 10_000), config, now=T0)
    assert (fresh.desired, fresh.code) == (0, Reason.IDLE_TIMEOUT)


def test_log_line_grammar() -> None:
    decision, _ = decide(snap(pending=5, oldest=12.34), 0, ScalingState(), ScalingConfig(), now=T0)
    assert decision.log_line() == "scale event=up from=0 to=1 reason=min_jobs pending=5 processing=0 oldest_s=12.3"
    assert decision.to_dict()["code"] == "min_jobs" and decision.to_dict()["direction"] == "up"
    assert "min_jobs_to_start=1" in decision.reason


def test_snapshot_from_store_stats() -> None:
    stats = JobStats(total=7, by_status={"pending": 3, "processing": 2, "completed": 2}, avg_processing_time=None,
                     total_processing_time=0.0, oldest_pending_created_at=T0 - 42.0)
    s = QueueSnapshot.from_stats(stats, now=T0)
    assert (s.pending, s.processing, s.oldest_pending_age_s, s.backlog) == (3, 2, 42.0, 5)
    empty = JobStats(total=0, by_status={}, avg_processing_time=None, total_processing_time=0.0)
    assert QueueSnapshot.from_stats(empty, now=T0).oldest_pending_age_s is None


def test_config_from_env_and_dict_and_validation() -> None:
    config = ScalingConfig.from_env({"VOICEQ_SCALE_MAX_REPLICAS": "2", "VOICEQ_SCALE_IDLE_S": "90",
                                     "VOICEQ_SCALE_WARM_STANDBY": ""}, min_jobs_to_start=3)
    assert (config.max_replicas, config.idle_s, config.min_jobs_to_start, config.warm_standby) == (2, 90.0, 3, 0)
    assert ScalingConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown scaling settings"):
        ScalingConfig.from_dict({"max_gpus": 3})
    with pytest.raises(ValueError, match="VOICEQ|max_replicas"):
        ScalingConfig.from_env({"VOICEQ_SCALE_MAX_REPLICAS": "two"})
    with pytest.raises(ValueError, match="warm_standby"):
        ScalingConfig(warm_standby=5, max_replicas=2)
    with pytest.raises(ValueError, match="min_jobs_to_start"):
        ScalingConfig(min_jobs_to_start=0)
