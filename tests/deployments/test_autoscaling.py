"""The Serve autoscaling policy over a real SQLite job store, driven the way Serve's controller
drives it: the class and kwargs come out of the `AutoscalingConfig` we hand Serve, each call
gets an `AutoscalingContext`, and calls come from a running event loop. No Ray cluster needed."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import pytest
from ray.serve._private.common import DeploymentID
from ray.serve.autoscaling_policy import _apply_autoscaling_config
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from deployments.autoscaling import JobQueueAutoscalingPolicy, autoscaling_config, settings_to_kwargs
from voiceq.jobs import Job, JobResult, WorkerInfo, new_job, new_job_id
from voiceq.scaling import Reason, ScalingConfig
from voiceq.settings import Settings
from voiceq.store.sqlite import SQLiteJobStore

LOGGER = "ray.serve.voiceq_autoscaling"
WORKER = WorkerInfo(environment="production", gpu_type="rocm", worker_id="gpu-1")


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fast_config(**overrides: Any) -> ScalingConfig:
    values = {"poll_interval_s": 0.01, "poll_timeout_s": 1.0, "stale_after_s": 60.0, "idle_s": 180.0}
    values.update(overrides)
    return ScalingConfig(**values)


def make_policy(settings: Settings, scaling: ScalingConfig, clock: FakeClock) -> tuple[JobQueueAutoscalingPolicy,
                                                                                       AutoscalingConfig]:
    """The policy exactly as Serve builds it: class and kwargs from the config we give Serve."""
    config = autoscaling_config(settings, scaling)
    cls = config.policy.get_policy()
    assert isinstance(cls, type)
    policy = cls(**config.policy.policy_kwargs, clock=clock)
    return policy, config


def context(config: AutoscalingConfig, *, target: int, running: int | None = None) -> AutoscalingContext:
    running = target if running is None else running
    return AutoscalingContext(
        deployment_id=DeploymentID(name="VoiceCloneInference", app_name="voiceq"),
        deployment_name="VoiceCloneInference",
        app_name="voiceq",
        current_num_replicas=running,
        target_num_replicas=target,
        running_replicas=[],
        total_num_requests=0.0,
        total_queued_requests=0.0,
        aggregated_metrics={},
        raw_metrics={},
        capacity_adjusted_min_replicas=config.min_replicas,
        capacity_adjusted_max_replicas=config.max_replicas,
        policy_state={},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=time.time(),
        config=config,
        total_pending_async_requests=0,
    )


async def decide_now(policy: Any, ctx: AutoscalingContext, call: Callable | None = None) -> int:
    """One control-loop tick that starts a poll, the poll, and the tick that sees its reading.
    `call` is what Serve calls (the policy, or Serve's wrapper around it)."""
    call = call or policy
    policy._clock.advance(2 * policy.config.poll_interval_s)  # a reading is due
    call(ctx)
    await policy.wait_for_poll()
    desired, _ = call(ctx)
    return desired


def submit(store: SQLiteJobStore, n: int, *, now: float) -> list[str]:
    ids = []
    for i in range(n):
        job = new_job(job_id=new_job_id(), user_id=f"user{i}", voice_name="v", sample_text="Hello there.",
                      audio_key=f"uploads/{i}.wav", audio_seconds=3.0, now=now)
        ids.append(store.create(job).job_id)
    return ids


def claim_all(store: SQLiteJobStore, *, now: float) -> list[Job]:
    return store.claim(worker=WORKER, limit=100, lease_s=600.0, now=now)


def complete(store: SQLiteJobStore, jobs: list[Job], *, now: float) -> None:
    for job in jobs:
        store.complete(job.job_id, lease_id=job.lease_id, now=now, result=JobResult(
            voice_id="voice_x", result_key="r", voice_key="k", speech_tokens=10, audio_seconds=1.0,
            processing_time=1.0))


def finish_all(store: SQLiteJobStore, *, now: float) -> None:
    complete(store, claim_all(store, now=now), now=now)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, environment="production", chatterbox_mode="remote")


@pytest.fixture
def store(settings: Settings) -> SQLiteJobStore:
    return SQLiteJobStore(settings.sqlite_path)


def test_waiting_jobs_scale_up_from_zero_and_an_empty_queue_scales_back_down(
        settings: Settings, store: SQLiteJobStore, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    # The fake clock jumps minutes at a time; the readings stay trusted across the jumps.
    policy, config = make_policy(settings, fast_config(min_jobs_to_start=3, max_wait_s=600, stale_after_s=1000),
                                 clock)
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario() -> None:
        assert await decide_now(policy, context(config, target=0)) == 0
        submit(store, 2, now=clock())
        assert await decide_now(policy, context(config, target=0)) == 0
        assert policy.last_decision.code is Reason.BELOW_THRESHOLD
        clock.advance(12.3)
        submit(store, 3, now=clock())
        assert await decide_now(policy, context(config, target=0)) == 1
        # The droplet boots: Serve's target is 1, nothing runs yet; the policy keeps it.
        assert await decide_now(policy, context(config, target=1, running=0)) == 1
        clock.advance(240)
        batch = claim_all(store, now=clock())  # the replica is up and takes the batch
        assert await decide_now(policy, context(config, target=1)) == 1
        assert policy.snapshot.processing == 5
        clock.advance(10)
        complete(store, batch, now=clock())
        assert await decide_now(policy, context(config, target=1)) == 1
        assert policy.last_decision.code is Reason.COOLDOWN
        clock.advance(165)  # 175 s since the last reading with work in it
        assert await decide_now(policy, context(config, target=1)) == 1
        clock.advance(5)
        assert await decide_now(policy, context(config, target=1)) == 0

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 2, lines  # one line per change, not one per tick
    assert lines[0].startswith("scale event=up from=0 to=1 reason=min_jobs pending=5 processing=0 oldest_s=12.3 ")
    assert lines[1].startswith("scale event=down from=1 to=0 reason=idle_timeout pending=0 processing=0 oldest_s=- ")
    # Every change of count or reason is kept, starting with "no reading yet".
    assert [(d.desired, d.current, d.code) for d in policy.decisions] == [
        (0, 0, Reason.STORE_UNAVAILABLE), (0, 0, Reason.IDLE), (0, 0, Reason.BELOW_THRESHOLD),
        (1, 0, Reason.MIN_JOBS), (1, 1, Reason.BUSY), (1, 1, Reason.COOLDOWN), (0, 1, Reason.IDLE_TIMEOUT)]


def test_through_serves_wrapper_decisions_take_effect_at_once(settings: Settings, store: SQLiteJobStore) -> None:
    """Serve wraps the policy with its delays and bounds; ours are zero, so the policy's
    decision is the one that happens (Serve's defaults would hold an idle GPU 10 more minutes)."""
    clock = FakeClock()
    policy, config = make_policy(settings, fast_config(idle_s=0.0, max_replicas=2, jobs_per_replica=4), clock)
    wrapped = _apply_autoscaling_config(policy)

    async def scenario() -> None:
        submit(store, 20, now=clock())
        # Five replicas' worth of jobs, capped at two, from zero at once.
        assert await decide_now(policy, context(config, target=0), wrapped) == 2
        finish_all(store, now=clock())
        clock.advance(1)
        # Idle past idle_s (0 here): down with no delay on top. Serve only goes to zero from
        # one replica, so from two it takes two control-loop ticks (0.1 s apart).
        assert await decide_now(policy, context(config, target=2), wrapped) == 1
        assert await decide_now(policy, context(config, target=1), wrapped) == 0

    asyncio.run(scenario())


def test_a_store_outage_holds_the_fleet_and_is_logged_once(
        settings: Settings, store: SQLiteJobStore, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    policy, config = make_policy(settings, fast_config(idle_s=0.0, stale_after_s=30.0), clock)
    caplog.set_level(logging.INFO, logger=LOGGER)
    db = settings.sqlite_path

    async def scenario() -> None:
        submit(store, 1, now=clock())
        assert await decide_now(policy, context(config, target=0)) == 1
        # The database goes away (a directory where the file was: SQLite cannot open it). This
        # test's own connection goes first: SQLite shares a file's WAL index among a process's
        # connections, and one left open on the removed files would break the restored ones.
        store.close()
        saved = db.with_suffix(".saved")
        db.rename(saved)
        for wal in db.parent.glob(db.name + "-*"):
            wal.unlink()
        db.mkdir()
        for _ in range(5):
            clock.advance(10)
            assert await decide_now(policy, context(config, target=1)) == 1
        assert policy.last_decision.code is Reason.STORE_UNAVAILABLE
        # Back again, with the queue empty: the fleet may go.
        db.rmdir()
        saved.rename(db)
        finish_all(SQLiteJobStore(db), now=clock())
        clock.advance(1)
        assert await decide_now(policy, context(config, target=1)) == 0

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    outage = [line for line in lines if line.startswith("scale store=unavailable")]
    assert len(outage) == 1 and "holding=1" in outage[0] and "StoreUnavailable" in outage[0], lines
    assert "scale store=ok" in lines
    assert lines[-1].startswith("scale event=down from=1 to=0 reason=idle_timeout")


class BlockingStore:
    """A real SQLite store whose `queue_stats` hangs until released: a store that stops answering."""

    def __init__(self, inner: SQLiteJobStore) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.calls = 0

    def queue_stats(self):
        self.calls += 1
        self.release.wait(timeout=10)
        return self.inner.queue_stats()


def test_a_hung_store_times_out_without_piling_up_reads(settings: Settings, store: SQLiteJobStore) -> None:
    clock = FakeClock()
    blocking = BlockingStore(store)
    config = autoscaling_config(settings, fast_config(poll_timeout_s=0.05))
    policy = JobQueueAutoscalingPolicy(**config.policy.policy_kwargs, store=blocking, clock=clock)
    submit(store, 4, now=clock())

    async def scenario() -> None:
        started = time.monotonic()
        for _ in range(5):
            assert await decide_now(policy, context(config, target=0)) == 0
        assert time.monotonic() - started < 2.0  # each poll gave up after its timeout
        assert policy.last_decision.code is Reason.STORE_UNAVAILABLE
        assert blocking.calls == 1  # the hung read is waited on, not repeated
        blocking.release.set()
        await asyncio.sleep(0.05)
        assert await decide_now(policy, context(config, target=0)) == 1

    asyncio.run(scenario())


def test_polls_are_one_shot_tasks_that_do_not_keep_the_policy_alive(settings: Settings,
                                                                    store: SQLiteJobStore) -> None:
    clock = FakeClock()

    async def scenario() -> weakref.ref:
        policy, config = make_policy(settings, fast_config(), clock)
        for _ in range(3):
            await decide_now(policy, context(config, target=0))
        await asyncio.sleep(0.02)
        assert asyncio.all_tasks() == {asyncio.current_task()}
        ref = weakref.ref(policy)
        del policy
        gc.collect()
        return ref

    assert asyncio.run(scenario())() is None


def test_the_config_we_hand_serve(settings: Settings) -> None:
    secret = settings.replace(convex_deploy_key="prod:very-secret")
    scaling = ScalingConfig(max_replicas=3, warm_standby=1, idle_s=90)
    config = autoscaling_config(secret, scaling)
    assert (config.min_replicas, config.initial_replicas, config.max_replicas) == (1, None, 3)
    assert (config.upscale_delay_s, config.downscale_delay_s, config.downscale_to_zero_delay_s) == (0, 0, 0)
    kwargs = config.policy.policy_kwargs
    text = json.dumps(kwargs)  # Serve requires JSON, and logs these kwargs
    assert "very-secret" not in text and "convex_deploy_key" not in text
    assert ScalingConfig.from_dict(kwargs["scaling"]) == scaling
    policy = config.policy.get_policy()(**kwargs)
    assert policy.settings.data_dir == settings.data_dir and isinstance(policy.settings.data_dir, Path)
    assert policy.settings.chatterbox_mode == "remote"
    assert kwargs["settings"] == settings_to_kwargs(settings)


def test_the_policy_is_read_from_the_environment_by_default(settings: Settings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEQ_SCALE_MAX_REPLICAS", "6")
    monkeypatch.setenv("VOICEQ_SCALE_MIN_JOBS_TO_START", "4")
    config = autoscaling_config(settings)
    assert config.max_replicas == 6
    assert config.policy.policy_kwargs["scaling"]["min_jobs_to_start"] == 4


def test_the_secret_comes_from_the_policys_own_environment(settings: Settings,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEX_DEPLOY_KEY", "prod:from-env")
    config = autoscaling_config(settings.replace(convex_deploy_key="prod:driver"), ScalingConfig())
    policy = config.policy.get_policy()(**config.policy.policy_kwargs)
    assert policy.settings.convex_deploy_key == "prod:from-env"


def test_serve_runs_the_policy_from_zero_to_one_and_back(ray_cluster: int, tmp_path: Path) -> None:
    """On a real Serve controller: the policy is unpickled there, reads the SQLite queue from
    its event loop, and Serve follows it; its lines land in the controller's log."""
    import ray
    from ray import serve

    from tests.support.server import wait_until

    settings = Settings(data_dir=tmp_path, environment="production", chatterbox_mode="remote")
    store = SQLiteJobStore(settings.sqlite_path)
    app = "autoscaling-policy-test"

    @serve.deployment(name="VoiceCloneInference", ray_actor_options={"num_cpus": 0})
    class Idle:
        def __call__(self) -> str:
            return "ok"

    def running() -> int:
        status = serve.status().applications[app].deployments["VoiceCloneInference"]
        return status.replica_states.get("RUNNING", 0)

    config = autoscaling_config(settings, ScalingConfig(idle_s=2.0, poll_interval_s=0.5))
    serve.run(Idle.options(autoscaling_config=config).bind(), name=app, route_prefix=None)
    try:
        assert running() == 0
        submit(store, 3, now=time.time())
        wait_until(lambda: running() == 1, timeout_s=60, what="a replica for the waiting jobs")
        finish_all(store, now=time.time())
        wait_until(lambda: running() == 0, timeout_s=60, what="scale to zero after idle_s")
    finally:
        serve.delete(app)
    logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
    text = "".join(p.read_text(errors="replace") for p in logs.glob("controller_*.log"))
    assert "scale event=up from=0 to=1 reason=min_jobs pending=3" in text
    assert "scale event=down from=1 to=0 reason=idle_timeout" in text
