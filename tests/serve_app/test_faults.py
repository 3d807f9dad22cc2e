"""Faults on the worst day: the inference replica SIGKILLed mid-batch, the bookkeeping deployment
killed and restarted, storage and the job store unavailable for a while. Every job reaches a
final state, each completed exactly once, none lost. Real app, real model, production mode."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import fake_convex, fake_convex_session  # noqa: F401  (fixtures)
from tests.support.audio import voice_file
from tests.support.server import VoiceqServer, wait_until
from voiceq.errors import StoreUnavailable
from voiceq.settings import Settings
from voiceq.store.sqlite import SQLiteJobStore

API = "/api/public/voice/onboarding"
pytestmark = pytest.mark.slow


def submit(c: httpx.Client, i: int) -> httpx.Response:
    return c.post(f"{API}/clone", data={"user_id": f"user{i}", "voice_name": "V"},
                  files={"audio_file": ("v.wav", voice_file("wav", seconds=1.5, seed=i), "audio/wav")})


def status(c: httpx.Client, job_id: str) -> dict | None:
    r = c.get(f"{API}/jobs/{job_id}/status")
    return r.json() if r.status_code == 200 else None  # 503 while a deployment restarts


def wait_all_final(c: httpx.Client, ids: list[str], timeout_s: float = 400) -> list[dict]:
    def final() -> list[dict] | None:
        bodies = [status(c, j) for j in ids]
        if all(b and b["status"] in ("completed", "failed", "cancelled") for b in bodies):
            return bodies  # type: ignore[return-value]
        return None

    return wait_until(final, timeout_s=timeout_s, interval_s=1.0, what="every job to finish")


def wait_processing(c: httpx.Client, ids: list[str]) -> None:
    wait_until(lambda: any((b := status(c, j)) and b["status"] == "processing" for j in ids),
               timeout_s=120, interval_s=0.2, what="a job to be processing")


def assert_each_completed_once(settings: Settings, finals: list[dict]) -> None:
    assert [f["status"] for f in finals] == ["completed"] * len(finals), finals
    results = list((Path(settings.data_dir) / "blobs" / "results").glob("*.mp3"))
    for f in finals:
        mine = [p for p in results if p.name.startswith(f["jobId"])]
        assert len(mine) == 1, (f["jobId"], mine)  # one recorded result; late duplicates removed
    stats = SQLiteJobStore(settings.sqlite_path).stats()
    assert stats.by_status["completed"] == stats.total == len(finals)


def replica_pid(deployment: str) -> int:
    from ray import serve

    return serve.get_deployment_handle(deployment, app_name="voiceq").describe.remote().result()["pid"]


def fault_settings(server: VoiceqServer, tmp_path: Path, **overrides) -> Settings:
    return server.settings_for(environment="production", data_dir=tmp_path / "data", lease_s=6.0,
                               max_batch_size=2, max_attempts=6, retry_base_s=0.5, retry_max_s=2.0,
                               **overrides)


def test_inference_replica_sigkilled_mid_batch(voiceq_server: VoiceqServer, tmp_path: Path) -> None:
    settings = voiceq_server.deploy(fault_settings(voiceq_server, tmp_path))
    with voiceq_server.client() as c:
        ids = [submit(c, i).json()["jobId"] for i in range(3)]
        wait_processing(c, ids)
        os.kill(replica_pid("VoiceCloneInference"), signal.SIGKILL)
        finals = wait_all_final(c, ids)
    assert_each_completed_once(settings, finals)
    assert max(f["attempts"] for f in finals) >= 2  # the killed batch ran again elsewhere


def test_bookkeeping_killed_and_restarted(voiceq_server: VoiceqServer, tmp_path: Path) -> None:
    settings = voiceq_server.deploy(fault_settings(voiceq_server, tmp_path))
    with voiceq_server.client() as c:
        ids = [submit(c, i).json()["jobId"] for i in range(3)]
        wait_processing(c, ids)
        os.kill(replica_pid("JobManager"), signal.SIGKILL)
        during = submit(c, 9)  # answered 202 (already back) or 503: never a 500, never half stored
        assert during.status_code in (202, 503), during.text
        if during.status_code == 202:
            ids.append(during.json()["jobId"])
        finals = wait_all_final(c, ids)
    assert_each_completed_once(settings, finals)


def test_storage_unavailable_for_a_while(voiceq_server: VoiceqServer, tmp_path: Path) -> None:
    settings = voiceq_server.deploy(fault_settings(voiceq_server, tmp_path))
    blobs = Path(settings.data_dir) / "blobs"
    with voiceq_server.client() as c:
        ids = [submit(c, i).json()["jobId"] for i in range(2)]
        # The storage "disk" goes away: the folder is replaced by a file for 8 seconds.
        shutil.move(blobs, blobs.with_name("blobs.away"))
        blobs.write_text("storage outage")
        try:
            refused = submit(c, 5)
            assert refused.status_code == 503 and "storage" in refused.json()["error"].lower()
            time.sleep(8)
        finally:
            blobs.unlink()
            shutil.move(blobs.with_name("blobs.away"), blobs)
        finals = wait_all_final(c, ids)
    assert_each_completed_once(settings, finals)


def test_job_store_unavailable_for_a_while(voiceq_server: VoiceqServer, tmp_path: Path) -> None:
    settings = voiceq_server.deploy(fault_settings(voiceq_server, tmp_path, store_timeout_s=2.0))
    with voiceq_server.client() as c:
        ids = [submit(c, i).json()["jobId"] for i in range(2)]
        wait_processing(c, ids)
        # Another process holds SQLite's write lock for 12 s: every write in voiceq times out.
        holder = sqlite3.connect(settings.sqlite_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            refused = submit(c, 5)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"].startswith("Job store not reachable")
            time.sleep(10)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        finals = wait_all_final(c, ids)
    assert_each_completed_once(settings, finals)


# --- lost replies: the store applied the call, the caller never heard -----------------------


class DropsReplies:
    """A job store that applies the named calls and then loses their replies (raises
    StoreUnavailable, as a killed bookkeeping replica or a Convex 5xx after commit looks to the
    caller), `times` times. Everything else passes through."""

    def __init__(self, store: object, *, methods: tuple[str, ...], times: int = 1) -> None:
        self._store = store
        self._methods = methods
        self.left = times

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._store, name)
        if name not in self._methods:
            return attr

        def applied_then_lost(*args: object, **kwargs: object) -> object:
            result = attr(*args, **kwargs)
            if self.left > 0:
                self.left -= 1
                raise StoreUnavailable(f"reply of {name} lost after it was applied")
            return result

        return applied_then_lost


def run_one_job_through_lost_replies(store: object, tmp_path: Path, receiver_url: str) -> tuple[Any, Any, Any]:
    from tests.support.engines import ToneEngine
    from voiceq.audio import decode_upload
    from voiceq.pcm import to_wav
    from voiceq.batching import BatchLimits
    from deployments.connections import open_blob_storage
    from voiceq.jobs import WorkerInfo
    from voiceq.manager import JobManager, Submission
    from voiceq.worker import Worker

    settings = Settings(data_dir=tmp_path, webhook_secret="whsec_" + "a" * 32, webhook_allow_private=True)
    manager = JobManager(store, open_blob_storage(settings), settings)  # type: ignore[arg-type]
    worker = Worker(manager, manager.storage, ToneEngine(), worker=WorkerInfo("production", "cpu", "w"),
                    limits=BatchLimits(max_rows=2), heartbeat_s=5.0)
    clip = decode_upload(voice_file("wav", seconds=1.5), min_s=1, max_s=60)

    async def scenario() -> tuple[Any, bytes]:
        job = await manager.submit(Submission(user_id="u", voice_name="v", sample_text="Hello.",
                                              audio=to_wav(clip), audio_seconds=clip.seconds,
                                              callback_url=receiver_url))
        assert await worker.run_once() == 1
        await manager.drain_webhooks(10)
        done = await manager.get(job.job_id)
        return done, await manager.read_result(done)  # /audio: not 410

    done, mp3 = asyncio.run(scenario())
    return done, mp3, manager


@pytest.mark.parametrize("kind", ["sqlite", "convex"])
def test_a_completion_whose_reply_is_lost_keeps_its_result(kind: str, tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    from tests.support.receiver import webhook_receiver

    if kind == "sqlite":
        store: object = DropsReplies(SQLiteJobStore(tmp_path / "jobs.sqlite3"), methods=("complete",))
    else:
        from convex_client.client import ConvexClient
        from convex_client.store import ConvexJobStore

        standin = request.getfixturevalue("fake_convex")
        # The stand-in runs completeJob, then answers 503: the commit happened, the reply is gone.
        standin.inject_faults(status=503, count=1, after=True, path="voiceCloneJobs:completeJob")
        store = ConvexJobStore(ConvexClient(standin.url, deploy_key=standin.admin_key, timeout_s=10,
                                            backoff_base_s=0.05))
    with webhook_receiver() as receiver, contextlib.closing(store) if kind == "convex" else contextlib.nullcontext():
        done, mp3, manager = run_one_job_through_lost_replies(store, tmp_path, receiver.url)
        assert done.status.value == "completed" and mp3[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")
        assert manager.storage.exists(done.voice_key)  # the new voice is kept too
        assert [r.headers["webhook-id"] for r in receiver.received] == [
            f"{done.job_id}.completed.{int(done.updated_at * 1000)}"]  # one webhook for one outcome
    if kind == "sqlite":
        assert store.left == 0  # type: ignore[attr-defined]  (the fault did happen)


def test_bookkeeping_killed_during_a_webhooks_backoff(voiceq_server: VoiceqServer, tmp_path: Path) -> None:
    """The receiver fails the first attempts; bookkeeping is SIGKILLed while the webhook waits for
    its next one. The restarted replica finds it in the outbox: it arrives, once per webhook-id."""
    from tests.support.receiver import webhook_receiver

    secret = "whsec_" + "ZmF1bHQtdGVzdC13ZWJob29rLXNlY3JldA=="
    voiceq_server.deploy(fault_settings(voiceq_server, tmp_path, webhook_secret=secret, webhook_allow_private=True))
    with webhook_receiver() as receiver, voiceq_server.client() as c:
        receiver.fail_next = 3  # 503, 503, 503, then 204: backoffs of 1, 2 and 4 s
        r = c.post(f"{API}/clone", data={"user_id": "hooked", "voice_name": "V", "callback_url": receiver.url},
                   files={"audio_file": ("v.wav", voice_file("wav", seconds=1.5), "audio/wav")})
        job_id = r.json()["jobId"]
        wait_until(lambda: receiver.fail_next < 3, timeout_s=300, interval_s=0.1, what="the first webhook attempt")
        time.sleep(0.5)  # its failure is recorded: the webhook is now waiting out its backoff
        os.kill(replica_pid("JobManager"), signal.SIGKILL)
        got = wait_until(lambda: receiver.received, timeout_s=180, interval_s=0.5, what="the webhook")
        time.sleep(5)  # any duplicate would arrive by now
        final = status(c, job_id)
    assert final is not None and final["status"] == "completed"
    ids = [g.headers["webhook-id"] for g in receiver.received]
    assert ids == [got[0].headers["webhook-id"]] and ids[0].startswith(f"{job_id}.completed.")
    from standardwebhooks.webhooks import Webhook

    assert Webhook(secret).verify(got[0].body, got[0].headers)["data"]["jobId"] == job_id
