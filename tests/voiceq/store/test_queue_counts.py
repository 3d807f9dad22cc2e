"""The queue's running counts: SQLite keeps them with the jobs they count (also in files made
before them), and the autoscaling policy and the reaper's gauges read them, never a count over
the whole jobs table."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from deployments.autoscaling import JobQueueAutoscalingPolicy, autoscaling_config
from tests.deployments.test_autoscaling import FakeClock, context, decide_now, fast_config
from deployments.connections import open_blob_storage
from voiceq.jobs import JobResult, JobStatus, WorkerInfo, new_job, new_job_id
from voiceq.manager import JobManager
from voiceq.settings import Settings
from voiceq.store.sqlite import SQLiteJobStore

W = WorkerInfo(environment="production", gpu_type="cpu", worker_id="w")
RESULT = JobResult(voice_id="voice_x", result_key="r", voice_key="k", speech_tokens=10, audio_seconds=1.0,
                   processing_time=1.0)


def add(store: SQLiteJobStore, n: int, *, model: str = "chatterbox", now: float = 1000.0) -> list[str]:
    return [store.create(new_job(job_id=new_job_id(), user_id=f"u{i}", voice_name="v", sample_text="Hi.",
                                 audio_key="uploads/x.wav", audio_seconds=2.0, now=now + i, model=model)).job_id
            for i in range(n)]


def counted(path: Path) -> dict[tuple[str, str], int]:
    """The truth, counted over the whole table."""
    with sqlite3.connect(path) as conn:
        return {(m, s): n for m, s, n in conn.execute("SELECT model, status, COUNT(*) FROM jobs GROUP BY 1, 2")}


def from_counts(store: SQLiteJobStore) -> dict[tuple[str, str], int]:
    stats = store.queue_stats()
    return {(m, s): int(n) for m, entry in stats.by_model.items() for s, n in entry.items()
            if s in {st.value for st in JobStatus} and n}


def test_the_running_counts_follow_every_transition(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = SQLiteJobStore(path)
    add(store, 5)
    add(store, 2, model="chatterbox-turbo", now=900.0)
    claimed = store.claim(worker=W, limit=3, lease_s=10.0, now=2000.0, model="chatterbox")
    store.complete(claimed[0].job_id, lease_id=claimed[0].lease_id or "", result=RESULT, now=2001.0)
    store.fail(claimed[1].job_id, lease_id=claimed[1].lease_id or "", error="x", transient=True, now=2001.0)
    store.expire_leases(now=3000.0)  # the third claim's lease ran out
    pending = [j for j in store.list_jobs(status=JobStatus.PENDING, limit=100) if j.model == "chatterbox"]
    store.cancel(pending[0].job_id, now=3001.0)
    assert from_counts(store) == counted(path)

    stats = store.queue_stats()
    assert (stats.pending, stats.processing) == (5, 0)
    assert stats.pending_for("chatterbox-turbo") == 2
    assert stats.oldest_pending_created_at == 900.0
    assert stats.oldest_pending_for("chatterbox-turbo") == 900.0
    assert store.count_active() == 5


def test_a_file_made_before_the_counts_gets_them_counted_once(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    add(SQLiteJobStore(path), 4)
    with sqlite3.connect(path) as conn:  # as files were before: no counts, no triggers
        for name in ("job_counts_insert", "job_counts_update", "job_counts_delete"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DROP TABLE job_counts")
    store = SQLiteJobStore(path)
    SQLiteJobStore(path)  # a second opener (another deployment) does not count them again
    add(store, 1)
    assert store.queue_stats().pending == 5 == counted(path)[("chatterbox", "pending")]


class CountsOnly:
    """A real store whose full statistics (a count over the whole table) must not be read."""

    def __init__(self, inner: SQLiteJobStore) -> None:
        self.inner = inner

    def stats(self, **kw: Any) -> Any:
        raise AssertionError("the whole table was counted")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_policy_and_the_reaper_read_the_running_counts(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, environment="production", chatterbox_mode="remote")
    store = CountsOnly(SQLiteJobStore(settings.sqlite_path))
    add(store.inner, 3, now=time.time())

    config = autoscaling_config(settings, fast_config())
    policy = JobQueueAutoscalingPolicy(**config.policy.policy_kwargs, store=store, clock=FakeClock())
    assert asyncio.run(decide_now(policy, context(config, target=0))) == 1
    assert policy.snapshot.pending == 3

    manager = JobManager(store, open_blob_storage(settings), settings)  # type: ignore[arg-type]
    seen = asyncio.run(manager.observe_queue())
    assert seen.pending == 3
