"""/ready: cheap at any history size (indexed reads of the active jobs only, no table scan) and
terse to callers without an admin key (no paths, URLs, actions or queue figures)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import httpx

from serve_app.health import EngineState, build_report
from serve_app.http import create_http_app
from deployments.connections import open_blob_storage
from voiceq.jobs import JobResult, WorkerInfo, new_job, new_job_id
from voiceq.manager import JobManager
from voiceq.settings import Settings
from voiceq.store.sqlite import SQLiteJobStore

W = WorkerInfo(environment="production", gpu_type="cpu", worker_id="w")


def test_the_readiness_snapshot_reads_only_indexes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    for i in range(300):  # history: finished jobs the probe must not walk
        job = store.create(new_job(job_id=new_job_id(), user_id=f"u{i % 7}", voice_name="v", sample_text="Hi.",
                                   audio_key="uploads/x.wav", audio_seconds=2.0, now=1000.0 + i))
        (c,) = store.claim(worker=W, limit=1, lease_s=30, now=2000.0, job_ids=[job.job_id])
        store.complete(c.job_id, lease_id=c.lease_id or "", now=2001.0, result=JobResult(
            voice_id="voice_0123456789abcdef", voice_key="voices/v.pt", result_key="results/r.mp3",
            speech_tokens=1, audio_seconds=0.1, processing_time=0.1))
    for i in range(3):
        store.create(new_job(job_id=new_job_id(), user_id="u", voice_name="v", sample_text="Hi.",
                             audio_key="uploads/x.wav", audio_seconds=2.0, now=3000.0 + i))
    store.claim(worker=W, limit=1, lease_s=30, now=3005.0)

    statements: list[str] = []
    real_connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    manager = JobManager(store, open_blob_storage(Settings(data_dir=tmp_path)), Settings(data_dir=tmp_path))
    snapshot = asyncio.run(manager.queue_snapshot())
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    assert (snapshot.pending, snapshot.processing, snapshot.oldest_pending_created_at) == (2, 1, 3001.0)
    assert snapshot.extra["oldest_processing_started_at"] == 3005.0

    plans = []
    with real_connect(tmp_path / "jobs.sqlite3") as conn:
        for sql in statements:
            if sql.lstrip().upper().startswith("SELECT") and "FROM jobs" in sql:
                plans += [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()]
    assert plans and not [p for p in plans if p.startswith("SCAN jobs")], plans  # SEARCH by index only


class ReportOnly:
    """A Backend whose health report names a path and a URL (what an operator needs)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def health(self) -> dict[str, Any]:
        return build_report(self.settings, pings={"job_store": "OperationalError: disk I/O error", "storage": "ok"},
                            engine=EngineState("HEALTHY", 1), stats=None, oldest_processing_started_at=None, now=0.0)


def test_anonymous_callers_learn_only_whether_it_is_ready(tmp_path: Path) -> None:
    settings = Settings(environment="production", data_dir=tmp_path / "secret-place", auth="required",
                        api_keys="ops:ops-key:admin,alice:alice-key")
    app = create_http_app(ReportOnly(settings))  # type: ignore[arg-type]

    def get(headers: dict[str, str]) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                return await c.get("/ready", headers=headers)
        return asyncio.run(go())

    for headers in ({}, {"Authorization": "Bearer alice-key"}, {"Authorization": "Bearer wrong"}):
        r = get(headers)
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "checks": {
            "job_store": {"status": "error", "message": "Job store not reachable"},
            "storage": {"status": "ok"}, "engine": {"status": "ok"}}}
        assert "secret-place" not in r.text
    full = get({"Authorization": "Bearer ops-key"}).json()
    assert "secret-place" in full["checks"]["job_store"]["action"] and full["checks"]["job_store"]["detail"]
