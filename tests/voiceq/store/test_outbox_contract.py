"""The webhook outbox's contract, the same tests against SQLite and the Convex stand-in (the real
convex/ functions): entries are written by the job transitions themselves, once per outcome,
claimed under a lease, settled per attempt, and survive reopening the store (a restart)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from convex_client.client import ConvexClient
from convex_client.store import ConvexJobStore
from tests.fakes import ConvexStandin
from voiceq.jobs import Job, JobResult, JobStatus, RetryPolicy, WorkerInfo, new_job, new_job_id
from voiceq.outbox import DEAD, DELIVERED, MAX_ATTEMPTS, PENDING, WebhookOutbox, after_attempt, webhook_id
from voiceq.storage import result_key, voice_key
from voiceq.store.sqlite import SQLiteJobStore

T0 = 1_700_000_000.0
RETRY = RetryPolicy(max_attempts=3, base_delay_s=2.0, max_delay_s=300.0)
WORKER = WorkerInfo(environment="production", gpu_type="cpu", worker_id="w-1")
HOOK = "https://hooks.example.com/voiceq"


@pytest.fixture(params=["sqlite", "convex"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """Opens another handle on the same store: what a restarted replica gets."""
    opened: list[ConvexJobStore] = []
    if request.param == "sqlite":
        def open_store() -> Any:
            return SQLiteJobStore(tmp_path / "jobs.sqlite3", retry=RETRY)
    else:
        standin: ConvexStandin = request.getfixturevalue("fake_convex")

        def open_store() -> Any:
            store = ConvexJobStore(ConvexClient(standin.url, deploy_key=standin.admin_key, timeout_s=10,
                                                backoff_base_s=0.05), retry=RETRY)
            opened.append(store)
            return store
    yield open_store
    for s in opened:
        s.close()


@pytest.fixture
def store(opener: Callable[[], Any]) -> Any:
    return opener()


def claimed(store: Any, *, callback_url: str | None = HOOK, now: float = T0) -> Job:
    job = store.create(new_job(job_id=new_job_id(), user_id="u1", voice_name="v", sample_text="Hello.",
                               audio_key="uploads/x.wav", audio_seconds=2.0, now=now, callback_url=callback_url))
    (got,) = store.claim(worker=WORKER, limit=1, lease_s=30, now=now, job_ids=[job.job_id])
    return got


def result_for(job: Job) -> JobResult:
    return JobResult(voice_id="voice_0123456789abcdef", voice_key=voice_key("voice_0123456789abcdef"),
                     result_key=result_key(job.job_id, job.lease_id or ""), speech_tokens=10, audio_seconds=0.4,
                     processing_time=1.0, gpu_seconds=0.5)


def test_both_stores_keep_an_outbox(store: Any) -> None:
    assert isinstance(store, WebhookOutbox)


def test_a_completion_writes_one_entry_and_a_replay_none(store: Any) -> None:
    job = claimed(store)
    done = store.complete(job.job_id, lease_id=job.lease_id, result=result_for(job), now=T0 + 5)
    again = store.complete(job.job_id, lease_id=job.lease_id, result=result_for(job), now=T0 + 9)
    assert again == done  # the reply of the first call was lost; the retry gets the same outcome
    (entry,) = store.outbox_list(job_id=job.job_id)
    assert entry.webhook_id == webhook_id(done) == f"{job.job_id}.completed.{int((T0 + 5) * 1000)}"
    assert (entry.url, entry.event, entry.state, entry.attempts, entry.next_attempt_at) == (
        HOOK, "completed", PENDING, 0, T0 + 5)


def test_only_final_transitions_of_jobs_with_a_callback_owe_webhooks(store: Any) -> None:
    plain = claimed(store, callback_url=None)
    store.complete(plain.job_id, lease_id=plain.lease_id, result=result_for(plain), now=T0 + 1)
    retried = claimed(store)
    store.fail(retried.job_id, lease_id=retried.lease_id, error="oom", transient=True, now=T0 + 1)
    assert store.outbox_list(job_id=plain.job_id) == [] and store.outbox_list(job_id=retried.job_id) == []
    assert store.outbox_due(now=T0 + 100, limit=10, lease_s=60) == []


def test_failure_expiry_and_cancellation_owe_webhooks(store: Any) -> None:
    failed = claimed(store)
    store.fail(failed.job_id, lease_id=failed.lease_id, error="bad audio", transient=False, now=T0 + 1)
    store.fail(failed.job_id, lease_id=failed.lease_id, error="bad audio", transient=False, now=T0 + 2)  # replay
    cancelled = claimed(store)
    store.cancel(cancelled.job_id, now=T0 + 1)
    store.cancel(cancelled.job_id, now=T0 + 2)  # a retried cancel
    lost = claimed(store)
    for attempt in range(1, RETRY.max_attempts + 1):  # the worker keeps dying: attempts run out
        store.expire_leases(now=T0 + 100 * attempt)
        if attempt < RETRY.max_attempts:
            store.claim(worker=WORKER, limit=1, lease_s=30, now=T0 + 100 * attempt + 1, job_ids=[lost.job_id])
    assert store.get(lost.job_id).status is JobStatus.FAILED
    events = {j.job_id: [e.event for e in store.outbox_list(job_id=j.job_id)] for j in (failed, cancelled, lost)}
    assert events == {failed.job_id: ["failed"], cancelled.job_id: ["cancelled"], lost.job_id: ["failed"]}


def test_due_entries_are_leased_settled_and_survive_a_restart(store: Any, opener: Callable[[], Any]) -> None:
    job = claimed(store)
    store.complete(job.job_id, lease_id=job.lease_id, result=result_for(job), now=T0 + 5)
    assert store.outbox_due(now=T0 + 4, limit=10, lease_s=60) == []  # not due yet
    (entry,) = store.outbox_due(now=T0 + 6, limit=10, lease_s=60)
    assert store.outbox_due(now=T0 + 7, limit=10, lease_s=60) == []  # held by its deliverer
    # The deliverer dies without settling: another handle (a new replica) gets it back later.
    restarted = opener()
    (back,) = restarted.outbox_due(now=T0 + 67, limit=10, lease_s=60)
    assert back.webhook_id == entry.webhook_id and back.attempts == 0
    failed_once = after_attempt(back, delivered=False, retryable=True, error="receiver answered 503", now=T0 + 68)
    restarted.outbox_settle(failed_once)
    assert (failed_once.attempts, failed_once.next_attempt_at) == (1, T0 + 69)
    assert restarted.outbox_due(now=T0 + 68.5, limit=10, lease_s=60) == []  # backing off
    (third,) = restarted.outbox_due(now=T0 + 69, limit=10, lease_s=60)
    assert third.webhook_id == entry.webhook_id and third.last_error == "receiver answered 503"
    restarted.outbox_settle(after_attempt(third, delivered=True, retryable=False, error=None, now=T0 + 70))
    got = store.outbox_get(entry.webhook_id)
    assert got is not None and (got.state, got.attempts, got.delivered_at, got.last_error) == (DELIVERED, 2, T0 + 70, None)
    assert restarted.outbox_due(now=T0 + 10_000, limit=10, lease_s=60) == []


def test_an_entry_is_left_dead_after_its_attempts_or_a_final_answer(store: Any) -> None:
    job = claimed(store)
    store.cancel(job.job_id, now=T0 + 1)
    (entry,) = store.outbox_due(now=T0 + 1, limit=10, lease_s=60)
    worn = dataclasses.replace(entry, attempts=MAX_ATTEMPTS - 1)
    store.outbox_settle(after_attempt(worn, delivered=False, retryable=True, error="timeout", now=T0 + 2))
    got = store.outbox_get(entry.webhook_id)
    assert got is not None and (got.state, got.attempts, got.last_error) == (DEAD, MAX_ATTEMPTS, "timeout")
    assert store.outbox_due(now=T0 + 10_000, limit=10, lease_s=60) == []
    assert store.outbox_get("no-such-webhook") is None
