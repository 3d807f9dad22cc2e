"""The job record and its state machine, as pure functions.

    pending ──claim──▶ processing ──complete──▶ completed
       ▲                   │
       └──retry/expire─────┤──fail (permanent, or attempts used up)──▶ failed
                           └──cancel──▶ cancelled   (pending jobs can be cancelled too)

Every store (SQLite, Convex) applies exactly these transitions inside its own atomic
operation; nothing here does I/O. A transition that does not apply raises
`InvalidTransition` or `StaleLease` so that the newest state always wins.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidTransition, StaleLease


class JobStatus(str, enum.Enum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


JOB_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
VOICE_ID_RE = re.compile(r"^voice_[0-9a-f]{16}$")


def new_job_id() -> str:
    return str(uuid.uuid4())


def new_voice_id() -> str:
    return f"voice_{uuid.uuid4().hex[:16]}"


def is_job_id(value: str) -> bool:
    return bool(JOB_ID_RE.match(value))


def is_voice_id(value: str) -> bool:
    return bool(VOICE_ID_RE.match(value))


@dataclass(frozen=True)
class WorkerInfo:
    environment: str
    gpu_type: str
    worker_id: str = ""
    node_id: str | None = None
    droplet_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> WorkerInfo | None:
        if not data:
            return None
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between attempts of a transient failure."""

    max_attempts: int = 3
    base_delay_s: float = 2.0
    max_delay_s: float = 300.0

    def delay_s(self, attempts: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class JobResult:
    voice_id: str
    result_key: str
    voice_key: str
    speech_tokens: int
    audio_seconds: float
    processing_time: float
    # This job's share of the GPU: its engine pass's wall time divided among the pass's jobs.
    # processing_time is what the user waited; gpu_seconds is what the job cost, so batched
    # jobs are not billed once each for the same pass.
    gpu_seconds: float = 0.0
    # The models the voice was prepared for (recorded with a new voice; not part of the job).
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    job_id: str
    user_id: str
    voice_name: str
    sample_text: str
    status: JobStatus
    created_at: float
    updated_at: float
    audio_key: str
    audio_seconds: float
    priority: int = 0
    attempts: int = 0
    max_attempts: int = 3
    next_attempt_at: float = 0.0
    lease_id: str | None = None
    lease_expires_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    worker_info: WorkerInfo | None = None
    voice_id: str | None = None
    voice_key: str | None = None
    result_key: str | None = None
    speech_tokens: int | None = None
    result_seconds: float | None = None
    processing_time: float | None = None
    gpu_seconds: float | None = None
    error: str | None = None
    idempotency_key: str | None = None
    owner: str | None = None
    callback_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The lease under which the last complete/fail was recorded: a retry of that same call
    # (its reply was lost) gets the recorded outcome back instead of a stale-lease error.
    last_lease_id: str | None = None
    # Which member of the Chatterbox family runs the job (voiceq.models), in which language
    # (multilingual only), and what it does: "clone" (text in a voice) or "convert" (speech
    # to speech in a voice). Records written before these existed read as English clones.
    model: str = "chatterbox"
    language: str | None = None
    kind: str = "clone"

    def replace(self, **changes: Any) -> Job:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        data["worker_info"] = self.worker_info.to_dict() if self.worker_info else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["status"] = JobStatus(values["status"])
        values["worker_info"] = WorkerInfo.from_dict(values.get("worker_info"))
        values["extra"] = dict(values.get("extra") or {})
        return cls(**values)


# --- transitions -----------------------------------------------------------------------


def new_job(
    *,
    job_id: str,
    user_id: str,
    voice_name: str,
    sample_text: str,
    audio_key: str,
    audio_seconds: float,
    now: float,
    priority: int = 0,
    max_attempts: int = 3,
    idempotency_key: str | None = None,
    owner: str | None = None,
    callback_url: str | None = None,
    extra: dict[str, Any] | None = None,
    model: str = "chatterbox",
    language: str | None = None,
    kind: str = "clone",
) -> Job:
    return Job(
        job_id=job_id,
        user_id=user_id,
        voice_name=voice_name,
        sample_text=sample_text,
        status=JobStatus.PENDING,
        created_at=now,
        updated_at=now,
        audio_key=audio_key,
        audio_seconds=audio_seconds,
        priority=priority,
        max_attempts=max_attempts,
        next_attempt_at=now,
        idempotency_key=idempotency_key,
        owner=owner,
        callback_url=callback_url,
        extra=dict(extra or {}),
        model=model,
        language=language,
        kind=kind,
    )


def is_claimable(job: Job, now: float) -> bool:
    return job.status is JobStatus.PENDING and job.next_attempt_at <= now


def claim_score(job: Job, now: float, aging_s: float) -> float:
    """Higher is claimed first. Waiting `aging_s` seconds is worth one priority level,
    so a low-priority job is never starved forever by a stream of high-priority ones."""
    return job.priority + max(0.0, now - job.created_at) / aging_s


def claim_order(jobs: list[Job], now: float, aging_s: float) -> list[Job]:
    return sorted(
        (j for j in jobs if is_claimable(j, now)),
        key=lambda j: (-claim_score(j, now, aging_s), j.created_at, j.job_id),
    )


def claim(job: Job, *, lease_id: str, lease_s: float, worker: WorkerInfo, now: float) -> Job:
    if not is_claimable(job, now):
        raise InvalidTransition(f"job {job.job_id} is {job.status.value}, not claimable")
    return job.replace(
        status=JobStatus.PROCESSING,
        attempts=job.attempts + 1,
        lease_id=lease_id,
        lease_expires_at=now + lease_s,
        started_at=now,
        worker_info=worker,
        error=None,
        updated_at=now,
    )


def _check_lease(job: Job, lease_id: str) -> None:
    if job.status is not JobStatus.PROCESSING or job.lease_id != lease_id:
        raise StaleLease(
            f"job {job.job_id} is {job.status.value} under another lease; this worker's result is discarded"
        )


def heartbeat(job: Job, *, lease_id: str, lease_s: float, now: float) -> Job:
    _check_lease(job, lease_id)
    return job.replace(lease_expires_at=now + lease_s, updated_at=now)


def is_replay(job: Job, lease_id: str, *statuses: JobStatus) -> bool:
    """This lease's outcome is already recorded (the first call committed; its reply was lost)."""
    return job.last_lease_id == lease_id and job.status in statuses and job.lease_id is None


def complete(job: Job, *, lease_id: str, result: JobResult, now: float) -> Job:
    if is_replay(job, lease_id, JobStatus.COMPLETED):
        return job
    _check_lease(job, lease_id)
    return job.replace(
        status=JobStatus.COMPLETED,
        last_lease_id=lease_id,
        lease_id=None,
        lease_expires_at=None,
        completed_at=now,
        voice_id=result.voice_id,
        voice_key=result.voice_key,
        result_key=result.result_key,
        speech_tokens=result.speech_tokens,
        result_seconds=result.audio_seconds,
        processing_time=result.processing_time,
        gpu_seconds=result.gpu_seconds,
        error=None,
        updated_at=now,
    )


def _retry_or_fail(job: Job, *, error: str, transient: bool, retry: RetryPolicy, now: float,
                   defer_s: float | None = None) -> Job:
    if transient and job.attempts < job.max_attempts:
        delay = retry.delay_s(job.attempts) if defer_s is None else defer_s
        return job.replace(
            status=JobStatus.PENDING,
            lease_id=None,
            lease_expires_at=None,
            next_attempt_at=now + delay,
            error=error,
            updated_at=now,
        )
    reason = error if not transient else f"{error} (gave up after {job.attempts} attempts)"
    return job.replace(
        status=JobStatus.FAILED,
        lease_id=None,
        lease_expires_at=None,
        completed_at=now,
        error=reason,
        processing_time=(now - job.started_at) if job.started_at is not None else None,
        updated_at=now,
    )


def fail(job: Job, *, lease_id: str, error: str, transient: bool, retry: RetryPolicy, now: float,
         defer_s: float | None = None) -> Job:
    if is_replay(job, lease_id, JobStatus.PENDING, JobStatus.FAILED):
        return job
    _check_lease(job, lease_id)
    failed = _retry_or_fail(job, error=error, transient=transient, retry=retry, now=now, defer_s=defer_s)
    return failed.replace(last_lease_id=lease_id)


def lease_expired(job: Job, now: float) -> bool:
    return (
        job.status is JobStatus.PROCESSING
        and job.lease_expires_at is not None
        and job.lease_expires_at < now
    )


def expire(job: Job, *, retry: RetryPolicy, now: float) -> Job:
    """A worker stopped renewing its lease (killed, node gone): the job goes back to the queue."""
    if not lease_expired(job, now):
        raise InvalidTransition(f"job {job.job_id} holds a live lease")
    return _retry_or_fail(job, error="worker lost (lease expired)", transient=True, retry=retry, now=now,
                          defer_s=0.0)


def cancel(job: Job, *, now: float) -> Job:
    if job.status is JobStatus.CANCELLED:  # a retried cancel: the first one stands
        return job
    if job.status.terminal:
        raise InvalidTransition(f"job {job.job_id} is already {job.status.value}")
    return job.replace(
        status=JobStatus.CANCELLED,
        lease_id=None,
        lease_expires_at=None,
        completed_at=now,
        error="cancelled by request",
        updated_at=now,
    )


def requeue(job: Job, *, now: float) -> Job:
    """Operator retry of a dead-lettered (failed) job: a fresh set of attempts."""
    if job.status is not JobStatus.FAILED:
        raise InvalidTransition(f"only failed jobs can be retried; job {job.job_id} is {job.status.value}")
    return job.replace(
        status=JobStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        completed_at=None,
        error=None,
        updated_at=now,
    )
