"""The fleet of GPU sizes as Serve's controller drives it: one policy per size's deployment,
each built the way Serve builds it (class unpickled by value from the config we hand Serve),
sharing one plan; and the wake on a request queued at a handle."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from ray.serve._private.common import DeploymentID
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from deployments.autoscaling import JobQueueAutoscalingPolicy
from deployments.fleet_autoscaling import fleet_autoscaling_config
from tests.deployments.test_autoscaling import FakeClock, fast_config, make_policy, submit
from voiceq.scaling import Reason, ScalingConfig
from voiceq.settings import Settings
from voiceq.sizing import GpuType
from voiceq.store.sqlite import SQLiteJobStore

LOGGER = "ray.serve.voiceq_autoscaling"
SMALL = GpuType("gpu_rtx4000", "gpu-4000adax1-20gb", 0.76, 0.7)
LARGE = GpuType("gpu_mi300x", "gpu-mi300x1-192gb", 1.99, 2.7)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, environment="production", chatterbox_mode="remote")


@pytest.fixture
def store(settings: Settings) -> SQLiteJobStore:
    return SQLiteJobStore(settings.sqlite_path)


def fleet_policies(settings: Settings, scaling: ScalingConfig, clock: FakeClock,
                   key: str) -> dict[str, tuple[Any, AutoscalingConfig]]:
    out = {}
    for gpu in (SMALL, LARGE):
        config = fleet_autoscaling_config(settings, scaling, (SMALL, LARGE), gpu.name, fleet=key)
        cls = config.policy.get_policy()  # unpickled from the bytes Serve ships
        out[gpu.name] = (cls(**config.policy.policy_kwargs, clock=clock), config)
    return out


def ctx(config: AutoscalingConfig, name: str, *, target: int, requests: float = 0.0) -> AutoscalingContext:
    return AutoscalingContext(
        deployment_id=DeploymentID(name=name, app_name="voiceq"), deployment_name=name, app_name="voiceq",
        current_num_replicas=target, target_num_replicas=target, running_replicas=[],
        total_num_requests=requests, total_queued_requests=requests, aggregated_metrics={}, raw_metrics={},
        capacity_adjusted_min_replicas=config.min_replicas, capacity_adjusted_max_replicas=config.max_replicas,
        policy_state={}, last_scale_up_time=None, last_scale_down_time=None, current_time=time.time(),
        config=config, total_pending_async_requests=0)


async def tick(policies: dict[str, tuple[Any, AutoscalingConfig]], targets: dict[str, int], clock: FakeClock) -> dict[str, int]:
    """One control-loop round over every deployment that also lets their readings land."""
    clock.advance(0.02)
    for name, (policy, config) in policies.items():
        policy(ctx(config, name, target=targets[name]))
    for policy, _ in policies.values():
        await policy.wait_for_poll()
    clock.advance(1.0)  # past the board's replan interval
    return {name: policy(ctx(config, name, target=targets[name]))[0] for name, (policy, config) in policies.items()}


def test_the_sizes_share_one_plan_a_trickle_small_a_burst_large(
        settings: Settings, store: SQLiteJobStore, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    scaling = fast_config(max_replicas=4, wait_target_s=600.0, stale_after_s=1000.0)
    policies = fleet_policies(settings, scaling, clock, key="test-share")
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario() -> None:
        targets = {SMALL.name: 0, LARGE.name: 0}
        assert await tick(policies, targets, clock) == targets
        submit(store, 1, now=clock())
        desired = await tick(policies, targets, clock)
        assert desired == {SMALL.name: 1, LARGE.name: 0}
        targets = desired
        assert await tick(policies, targets, clock) == targets  # busy: held
        submit(store, 1500, now=clock())
        desired = await tick(policies, targets, clock)
        assert desired[SMALL.name] == 1 and desired[LARGE.name] >= 1, desired

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    up = [line for line in lines if "event=up from=0 to=1" in line]
    assert up and "size=gpu_rtx4000" in up[0] and "cheapest per job meeting" in up[0], lines
    out = [line for line in lines if "reason=backlog" in line]
    assert out and "size=gpu_mi300x" in out[0], lines


def test_a_queued_request_makes_the_policy_read_the_store_at_once_and_hold(
        settings: Settings, store: SQLiteJobStore) -> None:
    clock = FakeClock()
    # Readings every 60 s: without the wake a job would wait a minute for its GPU.
    policy, config = make_policy(settings, fast_config(poll_interval_s=60.0, idle_s=0.0, stale_after_s=1000.0), clock)
    assert isinstance(policy, JobQueueAutoscalingPolicy)

    async def scenario() -> None:
        policy(ctx(config, "VoiceCloneInference", target=0))
        await policy.wait_for_poll()
        assert policy(ctx(config, "VoiceCloneInference", target=0))[0] == 0  # empty queue read
        clock.advance(1.0)
        submit(store, 1, now=clock())
        # Serve's cold-start path started a replica for the queued wake: the policy, whose last
        # reading (empty) predates the wake, must not stop it, and reads the store now.
        assert policy(ctx(config, "VoiceCloneInference", target=1, requests=1.0))[0] == 1
        assert policy.awaiting_wake_reading()
        await policy.wait_for_poll()
        assert policy(ctx(config, "VoiceCloneInference", target=1, requests=1.0))[0] == 1
        assert not policy.awaiting_wake_reading()
        assert policy.last_decision.code is Reason.BUSY and policy.snapshot.pending == 1

    asyncio.run(scenario())


def test_the_fleet_holds_for_a_wake_on_any_size(settings: Settings, store: SQLiteJobStore) -> None:
    clock = FakeClock()
    scaling = fast_config(max_replicas=4, poll_interval_s=60.0, idle_s=0.0, stale_after_s=1000.0)
    policies = fleet_policies(settings, scaling, clock, key="test-wake")
    small, small_config = policies[SMALL.name]
    large, large_config = policies[LARGE.name]

    async def scenario() -> None:
        small(ctx(small_config, SMALL.name, target=0))
        large(ctx(large_config, LARGE.name, target=0))
        await small.wait_for_poll()
        await large.wait_for_poll()
        clock.advance(1.0)
        submit(store, 1, now=clock())
        assert small(ctx(small_config, SMALL.name, target=1, requests=1.0))[0] == 1
        assert large(ctx(large_config, LARGE.name, target=0))[0] == 0
        await small.wait_for_poll()
        clock.advance(1.0)
        assert small(ctx(small_config, SMALL.name, target=1, requests=1.0))[0] == 1
        assert large(ctx(large_config, LARGE.name, target=0))[0] == 0
        assert small.board.plans[-1].decision.code is Reason.BUSY

    asyncio.run(scenario())
