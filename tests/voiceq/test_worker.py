"""The worker over real bookkeeping (JobManager, SQLite file, local folder), with a tone engine:
these tests are about the queue's behaviour, not the model's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.audio import decode_mp3, voice_file
from tests.support.engines import ToneEngine
from voiceq.audio import decode_upload
from voiceq.pcm import to_wav
from voiceq.batching import BatchLimits
from deployments.connections import open_blob_storage, open_job_store
from voiceq.jobs import JobStatus, WorkerInfo
from voiceq.manager import JobManager, Submission
from voiceq.settings import Settings
from voiceq.worker import Worker

W = WorkerInfo(environment="development", gpu_type="cpu", worker_id="test-worker")


def make(tmp_path: Path, engine: ToneEngine, **overrides) -> tuple[JobManager, Worker]:
    settings = Settings(data_dir=tmp_path, **{"lease_s": 30.0, "max_attempts": 2, **overrides})
    manager = JobManager(open_job_store(settings), open_blob_storage(settings), settings)
    worker = Worker(manager, manager.storage, engine, worker=W, limits=BatchLimits(max_rows=settings.max_batch_size),
                    heartbeat_s=settings.lease_s / 3, poll_interval_s=0.05)
    return manager, worker


def submission(i: int = 0, text: str = "Hello there.", **kw) -> Submission:
    clip = decode_upload(voice_file("wav", seconds=1.5, seed=i), min_s=1, max_s=60)
    return Submission(user_id=f"user{i}", voice_name=f"voice {i}", sample_text=text, audio=to_wav(clip),
                      audio_seconds=clip.seconds, **kw)


def test_a_batch_completes_every_job_and_stores_voice_and_mp3(tmp_path: Path) -> None:
    engine = ToneEngine()
    manager, worker = make(tmp_path, engine)

    async def scenario() -> list:
        ids = [(await manager.submit(submission(i))).job_id for i in range(3)]
        assert await worker.run_once() == 3
        return [await manager.get(j) for j in ids]

    done = asyncio.run(scenario())
    assert engine.batches and len(engine.batches[0]) == 3  # one engine call for the three jobs
    for job in done:
        assert job.status is JobStatus.COMPLETED and job.attempts == 1
        assert manager.storage.exists(job.voice_key)
        samples, rate = decode_mp3(manager.storage.get(job.result_key))
        assert rate == 24_000 and len(samples) > 0


def test_jobs_of_one_pass_share_its_gpu_time(tmp_path: Path) -> None:
    engine = ToneEngine(batch_s=0.3)
    manager, worker = make(tmp_path, engine)

    async def scenario() -> list:
        ids = [(await manager.submit(submission(i))).job_id for i in range(3)]
        assert await worker.run_once() == 3
        return [await manager.get(j) for j in ids]

    done = asyncio.run(scenario())
    assert [len(b) for b in engine.batches] == [3]
    elapsed = done[0].processing_time
    assert elapsed is not None and elapsed >= 0.3
    ms = 1e-3  # times and shares are recorded to the millisecond
    for job in done:
        # Each job waited the whole pass, and is charged a third of it.
        assert job.processing_time == elapsed
        assert job.gpu_seconds == pytest.approx(elapsed / 3, abs=ms)
    # The pass is counted once, not three times (each rounding may add half a millisecond).
    assert sum(j.gpu_seconds or 0.0 for j in done) == pytest.approx(elapsed, abs=2.5 * ms)
    stats = manager.store.stats()
    assert stats.total_gpu_seconds == pytest.approx(elapsed, abs=2.5 * ms)
    assert stats.total_processing_time == pytest.approx(3 * elapsed)


def test_a_failing_job_fails_alone_and_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    manager, worker = make(tmp_path, ToneEngine(), max_attempts=2, retry_base_s=0.0)

    async def scenario():
        good = await manager.submit(submission(0))
        bad = await manager.submit(submission(1, text="please <<fail>> now"))
        await worker.run_once()
        after_first = await manager.get(bad.job_id)
        await worker.run_once()
        return await manager.get(good.job_id), after_first, await manager.get(bad.job_id)

    good, bad_first, bad_final = asyncio.run(scenario())
    assert good.status is JobStatus.COMPLETED
    assert bad_first.status is JobStatus.PENDING and bad_first.attempts == 1 and "asked to fail" in bad_first.error
    assert bad_final.status is JobStatus.FAILED and "gave up after 2 attempts" in bad_final.error
    # No voice blob is left behind by the failed attempts.
    voices = list((tmp_path / "blobs" / "voices").glob("*.pt"))
    assert len(voices) == 1


def test_a_missing_upload_fails_at_once(tmp_path: Path) -> None:
    manager, worker = make(tmp_path, ToneEngine())

    async def scenario():
        job = await manager.submit(submission(0))
        manager.storage.delete(job.audio_key)
        await worker.run_once()
        return await manager.get(job.job_id)

    job = asyncio.run(scenario())
    assert job.status is JobStatus.FAILED and job.attempts == 1 and "missing from storage" in job.error


def test_a_job_cancelled_while_running_keeps_its_cancellation(tmp_path: Path) -> None:
    engine = ToneEngine(batch_s=0.6)
    manager, worker = make(tmp_path, engine, lease_s=0.3)  # heartbeat every 0.1 s notices the cancel

    async def scenario():
        job = await manager.submit(submission(0))
        run = asyncio.create_task(worker.run_once())
        await asyncio.sleep(0.2)
        await manager.cancel(job.job_id)
        await run
        return await manager.get(job.job_id)

    job = asyncio.run(scenario())
    assert job.status is JobStatus.CANCELLED and job.result_key is None
    assert not list((tmp_path / "blobs").glob("results/*.mp3"))  # the discarded result was removed


def test_leases_are_renewed_while_a_long_batch_runs(tmp_path: Path) -> None:
    manager, worker = make(tmp_path, ToneEngine(batch_s=1.0), lease_s=0.4)

    async def scenario():
        job = await manager.submit(submission(0))
        run = asyncio.create_task(worker.run_once())
        expired = []
        for _ in range(8):  # the reaper runs while the batch is in flight
            await asyncio.sleep(0.12)
            expired += await manager.expire_leases()
        await run
        return expired, await manager.get(job.job_id)

    expired, job = asyncio.run(scenario())
    assert expired == [] and job.status is JobStatus.COMPLETED and job.attempts == 1


def test_a_known_voice_skips_preparation(tmp_path: Path) -> None:
    engine = ToneEngine()
    manager, worker = make(tmp_path, engine)

    async def scenario():
        first = await manager.submit(submission(0))
        await worker.run_once()
        voice_id = (await manager.get(first.job_id)).voice_id
        again = await manager.submit(Submission(user_id="user0", voice_name="again", sample_text="More words.",
                                                voice_id=voice_id))
        worker.voices = worker.voices.__class__()  # cold memory cache: the voice comes from storage
        await worker.run_once()
        return voice_id, await manager.get(again.job_id)

    voice_id, again = asyncio.run(scenario())
    assert again.status is JobStatus.COMPLETED and again.voice_id == voice_id
    assert engine.prepared == 1


def test_run_ids_processes_exactly_the_named_jobs(tmp_path: Path) -> None:
    manager, worker = make(tmp_path, ToneEngine())

    async def scenario():
        a = await manager.submit(submission(0))
        b = await manager.submit(submission(1))
        ran = await worker.run_ids([b.job_id])
        return ran, await manager.get(a.job_id), await manager.get(b.job_id)

    ran, a, b = asyncio.run(scenario())
    assert ran == [b.job_id]
    assert a.status is JobStatus.PENDING and b.status is JobStatus.COMPLETED


@pytest.mark.parametrize("broken", ["store", "storage"])
def test_a_failed_submission_leaves_nothing_behind(tmp_path: Path, broken: str) -> None:
    from voiceq.errors import StorageUnavailable, StoreUnavailable

    manager, _ = make(tmp_path, ToneEngine())

    def fail(*a, **k):
        raise StoreUnavailable("down") if broken == "store" else StorageUnavailable("down")

    if broken == "store":
        manager.store.create = fail  # type: ignore[method-assign]
    else:
        manager.storage.put = fail  # type: ignore[method-assign]
    with pytest.raises((StoreUnavailable, StorageUnavailable)):
        asyncio.run(manager.submit(submission(0)))
    assert manager.store.stats().total == 0
    assert not list((tmp_path / "blobs").rglob("*.wav"))


def test_claimed_jobs_run_in_passes_within_the_token_budget(tmp_path: Path) -> None:
    engine = ToneEngine(batch_s=0.15)  # passes long enough for their GPU shares to tell apart
    manager, worker = make(tmp_path, engine)
    worker.configure(BatchLimits(max_rows=8, token_budget=100))
    worker.tokens_of = lambda job: 60 if "long" in job.sample_text else 20

    async def scenario():
        ids = [(await manager.submit(submission(i, text="a long one." if i == 1 else "short."))).job_id
               for i in range(4)]
        assert await worker.run_once() == 4  # one claim...
        return ids, [await manager.get(j) for j in ids]

    ids, jobs = asyncio.run(scenario())
    assert engine.batches == [ids[:3], ids[3:]]  # ...two engine passes: 20+60+20, then 20
    assert all(j.status is JobStatus.COMPLETED for j in jobs)
    # GPU shares divide each pass among its own jobs, not among the whole claim.
    first, alone = jobs[0].processing_time or 0.0, jobs[3].processing_time or 0.0
    assert [j.gpu_seconds for j in jobs] == pytest.approx([first / 3] * 3 + [alone], abs=1e-3)


def test_a_short_batch_waits_once_to_fill(tmp_path: Path) -> None:
    engine = ToneEngine()
    manager, worker = make(tmp_path, engine)
    worker.configure(BatchLimits(max_rows=4, wait_to_fill_s=0.3))

    async def scenario():
        await manager.submit(submission(0))
        run = asyncio.create_task(worker.run_once())
        await asyncio.sleep(0.1)
        await manager.submit(submission(1))  # arrives while the first waits for company
        return await run

    assert asyncio.run(scenario()) == 2
    assert [len(b) for b in engine.batches] == [2]
