"""What only the Convex store has: settings, auth, an unreachable or outdated deployment,
transient faults, and the public queries a frontend reads. The job store contract itself is
tests/voiceq/store/test_contract.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Iterator

import pytest

import convex_client.store as convex_store_module
from convex_client import ConvexClient, ConvexFunctionError
from convex_client.store import ConvexJobStore
from tests.fakes import ConvexStandin
from tests.fakes.convex_standin import start_convex_standin, user_token
from deployments.connections import open_job_store
from voiceq.errors import StoreUnavailable
from voiceq.jobs import WorkerInfo, new_job, new_job_id
from voiceq.manager import JobManager, Submission
from voiceq.settings import Settings
from voiceq.storage.local import LocalBlobStorage

WORKER = WorkerInfo(environment="production", gpu_type="rocm", worker_id="w1")


def settings_for(tmp_path: Path, url: str, key: str | None) -> Settings:
    return Settings(convex_url=url, convex_deploy_key=key, data_dir=tmp_path)


@pytest.fixture
def store(fake_convex: ConvexStandin) -> Iterator[ConvexJobStore]:
    s = ConvexJobStore(ConvexClient(fake_convex.url, deploy_key=fake_convex.admin_key, backoff_base_s=0.01))
    yield s
    s.close()


def a_job(now: float = 1000.0, **fields: object):  # type: ignore[no-untyped-def]
    job_id = new_job_id()
    return new_job(job_id=job_id, user_id="user_1", voice_name="V", sample_text="hi", audio_key=f"uploads/{job_id}.wav",
                   audio_seconds=3.0, now=now, **fields)  # type: ignore[arg-type]


def test_chosen_when_convex_url_is_set(tmp_path: Path, fake_convex: ConvexStandin) -> None:
    store = open_job_store(settings_for(tmp_path, fake_convex.url, fake_convex.admin_key))
    assert isinstance(store, ConvexJobStore)
    try:
        store.ping()
        job = store.create(a_job())
        assert store.get(job.job_id) == job
    finally:
        store.close()


def test_a_deploy_key_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CONVEX_DEPLOY_KEY"):
        ConvexJobStore.from_settings(settings_for(tmp_path, "https://happy-otter-123.convex.cloud", None))


def test_a_wrong_deploy_key_is_reported_without_the_key(fake_convex: ConvexStandin) -> None:
    wrong = "prod:other|not-the-key-123"
    store = ConvexJobStore(ConvexClient(fake_convex.url, deploy_key=wrong))
    try:
        with pytest.raises(StoreUnavailable, match="deploy key") as caught:
            store.ping()
    finally:
        store.close()
    assert wrong not in str(caught.value) and "CONVEX_DEPLOY_KEY" in str(caught.value)


def test_without_a_key_internal_functions_are_not_found(fake_convex: ConvexStandin) -> None:
    with ConvexClient(fake_convex.url) as anonymous:
        store = ConvexJobStore(anonymous)
        with pytest.raises(StoreUnavailable, match="internal: set CONVEX_DEPLOY_KEY"):
            store.create(a_job())


def test_frontends_read_jobs_through_the_public_queries(store: ConvexJobStore, fake_convex: ConvexStandin) -> None:
    job = store.create(a_job(idempotency_key="k", owner="acme"))
    store.claim(worker=WORKER, limit=1, lease_s=30, now=1001.0)
    with ConvexClient(fake_convex.url, auth_token=user_token({"sub": "user_1"})) as frontend:
        [seen] = frontend.query("voiceCloneJobs:getUserJobs", {"userId": "user_1"})
        assert seen["jobId"] == job.job_id and seen["status"] == "processing"
        assert seen["workerInfo"] == {"environment": "production", "gpuType": "rocm"}
        assert "leaseId" not in seen and "owner" not in seen and "idempotencyKey" not in seen
        assert frontend.query("voiceCloneJobs:getPendingJobs", {"limit": 10}) == []  # operators only
        stats = frontend.query("voiceCloneJobs:getStats", {})
        assert (stats["userId"], stats["total"], stats["processing"]) == ("user_1", 1, 1)
        with pytest.raises(ConvexFunctionError, match="Could not find public function"):
            frontend.mutation("voiceCloneJobs:cancelJob", {"jobId": job.job_id, "now": 1002.0})
    # Private views: without an identity, or as someone else, nothing.
    for token in (None, user_token({"sub": "user_2"})):
        with ConvexClient(fake_convex.url, auth_token=token) as stranger:
            assert stranger.query("voiceCloneJobs:getUserJobs", {"userId": "user_1"}) == []
            assert stranger.query("voiceCloneJobs:getJobStatus", {"jobId": job.job_id}) is None
            stats = stranger.query("voiceCloneJobs:getStats", {"userId": "user_1"})
            assert stats is None


def test_an_outdated_deployment_says_to_deploy(store: ConvexJobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convex_store_module, "FUNCTIONS_VERSION", convex_store_module.FUNCTIONS_VERSION + 1)
    with pytest.raises(StoreUnavailable, match="npx convex deploy"):
        store.ping()


def test_arguments_the_functions_reject_say_to_deploy(store: ConvexJobStore) -> None:
    with pytest.raises(StoreUnavailable, match="Validator.*npx convex deploy"):
        store._call("mutation", "createJob", {"job": {"jobId": "x"}})


def test_transient_faults_are_ridden_out(store: ConvexJobStore, fake_convex: ConvexStandin) -> None:
    fake_convex.inject_faults(status=503, count=2)
    job = store.create(a_job())
    fake_convex.inject_faults(status=429, count=1)
    [claimed] = store.claim(worker=WORKER, limit=1, lease_s=30, now=1001.0)
    assert claimed.job_id == job.job_id
    fake_convex.inject_faults(status=500, count=2)
    assert store.get(job.job_id) == claimed


def test_a_claim_that_may_have_run_is_not_repeated(store: ConvexJobStore, fake_convex: ConvexStandin) -> None:
    job = store.create(a_job())
    fake_convex.inject_faults(status=500, count=1)
    with pytest.raises(StoreUnavailable, match="not retried"):
        store.claim(worker=WORKER, limit=1, lease_s=30, now=1001.0)
    # (The stand-in refused it unrun, so the job is still there for the next claim.)
    assert [j.job_id for j in store.claim(worker=WORKER, limit=1, lease_s=30, now=1001.0)] == [job.job_id]


def test_an_unreachable_deployment_is_store_unavailable_fast(tmp_path: Path) -> None:
    standin = start_convex_standin()
    settings = settings_for(tmp_path, standin.url, standin.admin_key)
    store = ConvexJobStore.from_settings(settings)
    try:
        store.ping()
        standin.stop()  # Convex goes away
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="^Convex not reachable") as caught:
            store.create(a_job())
        elapsed = time.monotonic() - started
        assert "after 3 attempts" in str(caught.value)
        print(f"unreachable Convex reported in {elapsed:.2f} s")
    finally:
        store.close()
        standin.stop()


def test_a_submission_with_convex_down_leaves_nothing_behind(tmp_path: Path) -> None:
    standin = start_convex_standin()
    store = ConvexJobStore.from_settings(settings_for(tmp_path, standin.url, standin.admin_key))
    storage = LocalBlobStorage(tmp_path / "blobs")
    manager = JobManager(store, storage, settings_for(tmp_path, standin.url, standin.admin_key))
    standin.stop()
    try:
        with pytest.raises(StoreUnavailable):
            asyncio.run(manager.submit(Submission(user_id="user_1", voice_name="V", sample_text="hi",
                                                  audio=b"RIFF....WAVEfmt ", audio_seconds=2.0)))
        assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []
    finally:
        store.close()
