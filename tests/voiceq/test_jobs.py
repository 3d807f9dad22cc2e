"""The job state machine: every transition, and every refusal that keeps the newest state."""

from __future__ import annotations

import pytest

from voiceq import jobs
from voiceq.errors import InvalidTransition, StaleLease
from voiceq.jobs import JobResult, JobStatus, RetryPolicy, WorkerInfo

W = WorkerInfo(environment="production", gpu_type="rocm", worker_id="w1")
RESULT = JobResult(voice_id="voice_0123456789abcdef", result_key="results/x-1.mp3",
                   voice_key="voices/voice_0123456789abcdef.pt", speech_tokens=20, audio_seconds=0.8,
                   processing_time=1.5, gpu_seconds=0.375)


def pending(now: float = 100.0, **kw) -> jobs.Job:
    return jobs.new_job(job_id=jobs.new_job_id(), user_id="u", voice_name="v", sample_text="hi",
                        audio_key="uploads/a.wav", audio_seconds=2.0, now=now, **kw)


def test_ids_have_their_documented_shapes() -> None:
    assert jobs.is_job_id(jobs.new_job_id())
    assert jobs.is_voice_id(jobs.new_voice_id())
    for bad in ["", "../etc/passwd", "123", "0" * 36, "12345678-1234-1234-1234-123456789abc"]:
        assert not jobs.is_job_id(bad)


def test_claim_moves_pending_to_processing_with_a_lease_and_an_attempt() -> None:
    job = jobs.claim(pending(), lease_id="L1", lease_s=30, worker=W, now=110)
    assert job.status is JobStatus.PROCESSING
    assert (job.attempts, job.lease_id, job.lease_expires_at, job.started_at) == (1, "L1", 140, 110)
    assert job.worker_info == W
    with pytest.raises(InvalidTransition):
        jobs.claim(job, lease_id="L2", lease_s=30, worker=W, now=111)


def test_a_job_waiting_for_its_backoff_is_not_claimable() -> None:
    job = pending().replace(next_attempt_at=200)
    assert not jobs.is_claimable(job, 150)
    assert jobs.is_claimable(job, 200)


def test_complete_needs_the_current_lease() -> None:
    job = jobs.claim(pending(), lease_id="L1", lease_s=30, worker=W, now=110)
    with pytest.raises(StaleLease):
        jobs.complete(job, lease_id="other", result=RESULT, now=120)
    done = jobs.complete(job, lease_id="L1", result=RESULT, now=120)
    assert done.status is JobStatus.COMPLETED and done.voice_id == RESULT.voice_id
    assert done.completed_at == 120 and done.processing_time == 1.5 and done.lease_id is None
    assert done.gpu_seconds == 0.375  # its share of the pass, apart from the wall time it waited
    # The same lease again (the first call's reply was lost): the recorded outcome, unchanged.
    assert jobs.complete(done, lease_id="L1", result=RESULT, now=121) == done
    with pytest.raises(StaleLease):  # another lease never overwrites it
        jobs.complete(done, lease_id="L2", result=RESULT, now=121)


def test_fail_is_idempotent_per_lease() -> None:
    job = jobs.claim(pending(), lease_id="L1", lease_s=30, worker=W, now=110)
    retry = jobs.fail(job, lease_id="L1", error="oom", transient=True, retry=RetryPolicy(), now=111)
    assert retry.status is JobStatus.PENDING and retry.last_lease_id == "L1"
    assert jobs.fail(retry, lease_id="L1", error="oom", transient=True, retry=RetryPolicy(), now=112) == retry
    again = jobs.claim(retry.replace(next_attempt_at=0), lease_id="L2", lease_s=30, worker=W, now=113)
    with pytest.raises(StaleLease):  # the old lease's duplicate cannot touch the new attempt
        jobs.fail(again, lease_id="L1", error="oom", transient=True, retry=RetryPolicy(), now=114)


def test_transient_failures_back_off_exponentially_then_give_up() -> None:
    retry = RetryPolicy(max_attempts=3, base_delay_s=2, max_delay_s=100)
    job = pending()
    delays = []
    for attempt in range(1, 4):
        job = jobs.claim(job.replace(next_attempt_at=0), lease_id=f"L{attempt}", lease_s=30, worker=W, now=100)
        job = jobs.fail(job, lease_id=f"L{attempt}", error="storage hiccup", transient=True, retry=retry, now=100)
        delays.append(job.next_attempt_at - 100)
    assert delays[:2] == [2, 4]
    assert job.status is JobStatus.FAILED
    assert "gave up after 3 attempts" in (job.error or "")


def test_permanent_failures_fail_at_once() -> None:
    job = jobs.claim(pending(), lease_id="L", lease_s=30, worker=W, now=100)
    failed = jobs.fail(job, lease_id="L", error="undecodable", transient=False, retry=RetryPolicy(), now=101)
    assert failed.status is JobStatus.FAILED and failed.error == "undecodable" and failed.attempts == 1


def test_an_expired_lease_returns_the_job_to_the_queue() -> None:
    job = jobs.claim(pending(), lease_id="L", lease_s=30, worker=W, now=100)
    assert not jobs.lease_expired(job, 129)
    with pytest.raises(InvalidTransition):
        jobs.expire(job, retry=RetryPolicy(), now=129)
    back = jobs.expire(job, retry=RetryPolicy(), now=131)
    assert back.status is JobStatus.PENDING and back.lease_id is None and back.next_attempt_at == 131
    # The lost worker's late result is refused.
    with pytest.raises(StaleLease):
        jobs.complete(back, lease_id="L", result=RESULT, now=132)


def test_cancel_and_operator_requeue() -> None:
    job = pending()
    cancelled = jobs.cancel(job, now=101)
    assert cancelled.status is JobStatus.CANCELLED
    assert jobs.cancel(cancelled, now=102) == cancelled  # a retried cancel: the first one stands
    with pytest.raises(InvalidTransition):
        jobs.requeue(cancelled, now=102)
    claimed = jobs.claim(pending(), lease_id="L", lease_s=30, worker=W, now=100)
    failed = jobs.fail(claimed, lease_id="L", error="boom", transient=False, retry=RetryPolicy(), now=101)
    again = jobs.requeue(failed, now=200)
    assert again.status is JobStatus.PENDING and again.attempts == 0 and again.error is None


def test_priority_orders_claims_and_waiting_prevents_starvation() -> None:
    old_low = pending(now=0).replace(priority=0)
    new_high = pending(now=100).replace(priority=1)
    # At t=100 the low-priority job has waited 100 s: with aging 60 s that is worth > 1 level.
    assert jobs.claim_order([new_high, old_low], now=100, aging_s=60)[0] is old_low
    assert jobs.claim_order([new_high, old_low], now=100, aging_s=1000)[0] is new_high


def test_jobs_round_trip_through_dicts() -> None:
    job = jobs.claim(pending(), lease_id="L", lease_s=30, worker=W, now=110)
    assert jobs.Job.from_dict(job.to_dict()) == job
    done = jobs.complete(job, lease_id="L", result=RESULT, now=120)
    data = done.to_dict()
    assert (data["processing_time"], data["gpu_seconds"]) == (1.5, 0.375)
    assert jobs.Job.from_dict(data) == done
    # A record written before GPU shares existed reads back without one.
    del data["gpu_seconds"]
    assert jobs.Job.from_dict(data).gpu_seconds is None
