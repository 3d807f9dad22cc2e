"""Webhook delivery from the job store's outbox through real bookkeeping (JobManager, SQLite file,
local folder) to a real local receiver: at least once, the same webhook-id on every attempt, and
picked up by a new manager (a restarted bookkeeping replica) where the old one left off. Also:
an Idempotency-Key reused with another request is refused, nothing stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.audio import voice_file
from tests.support.receiver import webhook_receiver
from voiceq.audio import decode_upload
from voiceq.pcm import to_wav
from deployments.connections import open_blob_storage, open_job_store
from voiceq.errors import IdempotencyKeyReused
from voiceq.jobs import JobResult, WorkerInfo
from voiceq.manager import JobManager, Submission
from voiceq.outbox import DELIVERED
from voiceq.settings import Settings
from voiceq.storage import result_key

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seQ=="
W = WorkerInfo(environment="production", gpu_type="cpu", worker_id="w")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def manager_for(tmp_path: Path, clock: Clock) -> JobManager:
    settings = Settings(data_dir=tmp_path, webhook_secret=SECRET, webhook_allow_private=True)
    return JobManager(open_job_store(settings), open_blob_storage(settings), settings, clock=clock)


def submission(**kw: object) -> Submission:
    clip = decode_upload(voice_file("wav", seconds=1.5), min_s=1, max_s=60)
    return Submission(user_id="u1", voice_name="v", sample_text="Hello.", audio=to_wav(clip),
                      audio_seconds=clip.seconds, **kw)  # type: ignore[arg-type]


async def finish(manager: JobManager, job_id: str) -> None:
    (job,) = await manager.claim(W, limit=1, job_ids=[job_id])
    await manager.complete(job_id, lease_id=job.lease_id or "", result=JobResult(
        voice_id="voice_0123456789abcdef", voice_key="voices/voice_0123456789abcdef.pt",
        result_key=result_key(job_id, job.lease_id or ""), speech_tokens=5, audio_seconds=0.2, processing_time=0.5))


def test_a_webhook_survives_a_restart_of_bookkeeping_during_its_backoff(tmp_path: Path) -> None:
    clock = Clock()
    with webhook_receiver() as receiver:
        receiver.fail_next = 1

        async def first_life() -> str:
            manager = manager_for(tmp_path, clock)
            job = await manager.submit(submission(callback_url=receiver.url))
            await finish(manager, job.job_id)
            assert await manager.deliver_due_webhooks() == 1  # answered 503: backing off
            assert await manager.deliver_due_webhooks() == 0
            return job.job_id

        job_id = asyncio.run(first_life())  # ... and this manager is gone
        assert receiver.received == []
        clock.now += 5  # past the backoff

        async def second_life() -> None:
            manager = manager_for(tmp_path, clock)
            assert await manager.deliver_due_webhooks() == 1
            clock.now += 1000
            assert await manager.deliver_due_webhooks() == 0  # delivered: never again

        asyncio.run(second_life())
        (got,) = receiver.received
    event = Webhook(SECRET).verify(got.body, got.headers)
    assert event["type"] == "voice_clone.completed" and event["data"]["jobId"] == job_id
    store = open_job_store(Settings(data_dir=tmp_path))
    (entry,) = store.outbox_list(job_id=job_id)  # type: ignore[attr-defined]
    assert got.headers["webhook-id"] == entry.webhook_id and (entry.state, entry.attempts) == (DELIVERED, 2)


def test_an_idempotency_key_reused_with_another_request_is_refused(tmp_path: Path) -> None:
    clock = Clock()
    manager = manager_for(tmp_path, clock)

    async def scenario() -> None:
        first = await manager.submit(submission(idempotency_key="order-7", request_hash="a" * 64))
        again = await manager.submit(submission(idempotency_key="order-7", request_hash="a" * 64))
        assert again.job_id == first.job_id
        with pytest.raises(IdempotencyKeyReused) as err:
            await manager.submit(submission(idempotency_key="order-7", request_hash="b" * 64))
        assert err.value.status_code == 422 and err.value.field == "Idempotency-Key"

    asyncio.run(scenario())
    assert manager.store.stats().total == 1
    uploads = list((tmp_path / "blobs" / "uploads").glob("*"))
    assert len(uploads) == 1  # the refused request's upload was removed again
