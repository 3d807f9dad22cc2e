"""The job store interface. SQLite (embedded default) and Convex (production) implement it;
the bookkeeping deployment is its only writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

from ..jobs import Job, JobResult, JobStatus, WorkerInfo


@dataclass(frozen=True)
class JobStats:
    total: int
    by_status: dict[str, int]
    avg_processing_time: float | None
    total_processing_time: float
    oldest_pending_created_at: float | None = None
    audio_seconds_generated: float = 0.0
    # GPU time the jobs used: the sum of the gpu_seconds (each job's share of its engine pass)
    # of completed and failed jobs. Unlike total_processing_time it counts a batched pass once.
    # Only completion records a share today, so failed jobs add nothing until fail() records one.
    total_gpu_seconds: float = 0.0
    user_id: str | None = None
    extra: dict[str, float] = field(default_factory=dict)
    # Per model (voiceq.models): job counts by status, plus audio_seconds (completed jobs),
    # gpu_seconds (completed and failed) and oldest_pending_created_at, as `model_breakdown`
    # sums them.
    by_model: dict[str, dict[str, float]] = field(default_factory=dict)

    def pending_for(self, model: str) -> int:
        return int(self.by_model.get(model, {}).get(JobStatus.PENDING.value, 0))

    def processing_for(self, model: str) -> int:
        return int(self.by_model.get(model, {}).get(JobStatus.PROCESSING.value, 0))

    def oldest_pending_for(self, model: str) -> float | None:
        return self.by_model.get(model, {}).get("oldest_pending_created_at")

    @property
    def pending(self) -> int:
        return self.by_status.get(JobStatus.PENDING.value, 0)

    @property
    def processing(self) -> int:
        return self.by_status.get(JobStatus.PROCESSING.value, 0)


def model_breakdown(rows: Sequence[tuple[str, str, int, float, float, float | None]]) -> dict[str, dict[str, float]]:
    """Per-model stats from (model, status, count, result seconds, gpu seconds, oldest
    created_at) groups."""
    out: dict[str, dict[str, float]] = {}
    for model, status, count, audio_s, gpu_s, oldest in rows:
        entry = out.setdefault(model or "chatterbox", {s.value: 0 for s in JobStatus} | {
            "audio_seconds": 0.0, "gpu_seconds": 0.0})
        entry[status] = entry.get(status, 0) + int(count)
        if status == JobStatus.COMPLETED.value:
            entry["audio_seconds"] += float(audio_s or 0.0)
        if status in (JobStatus.COMPLETED.value, JobStatus.FAILED.value):
            entry["gpu_seconds"] += float(gpu_s or 0.0)
        if status == JobStatus.PENDING.value and oldest is not None:
            entry["oldest_pending_created_at"] = float(oldest)
    return out


@runtime_checkable
class JobStore(Protocol):
    """Every method is atomic on its own. Methods that change a job return the new record and
    raise `JobNotFound`, `StaleLease` or `InvalidTransition` when the change does not apply;
    `StoreUnavailable` when the store cannot be reached."""

    def ping(self) -> None: ...

    def create(self, job: Job) -> Job:
        """Insert a pending job. If the owner already created a job with the same idempotency
        key, return that job instead of inserting a second one."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def claim(
        self,
        *,
        worker: WorkerInfo,
        limit: int,
        lease_s: float,
        now: float,
        job_ids: Sequence[str] | None = None,
        model: str | None = None,
    ) -> list[Job]:
        """Atomically move up to `limit` claimable jobs (all of `job_ids` that are claimable, when
        given), of `model` only when given, to processing under fresh leases. Two claimers never
        receive the same job."""
        ...

    def heartbeat(self, job_id: str, *, lease_id: str, lease_s: float, now: float) -> Job: ...

    def complete(self, job_id: str, *, lease_id: str, result: JobResult, now: float) -> Job: ...

    def fail(
        self,
        job_id: str,
        *,
        lease_id: str,
        error: str,
        transient: bool,
        now: float,
        defer_s: float | None = None,
    ) -> Job: ...

    def expire_leases(self, *, now: float) -> list[Job]:
        """Return every job whose lease ran out to the queue (or fail it when its attempts are used up)."""
        ...

    def cancel(self, job_id: str, *, now: float) -> Job: ...

    def requeue(self, job_id: str, *, now: float) -> Job: ...

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        user_id: str | None = None,
        limit: int = 50,
    ) -> list[Job]: ...

    def count_active(self, *, user_id: str | None = None) -> int:
        """Jobs pending or processing (for backpressure)."""
        ...

    def stats(self, *, user_id: str | None = None) -> JobStats: ...

    def queue_position(self, job_id: str, *, now: float) -> int | None:
        """How many jobs a claim of this job's model at `now` would take before this pending job:
        the claimable jobs (pending, `next_attempt_at <= now`) of the same model, other than this
        one, that come first in the store's own claim order evaluated at `now` (higher priority
        with aging, then older, then smaller job id). 0: it is next. A job still waiting out a
        backoff is placed by the same rule among the claimable ones. None when the job is not
        pending (or does not exist). Its cost follows the queue, never the job history."""
        ...

    def queue_stats(self) -> JobStats:
        """What scaling and the queue gauges need (counts by status and model, the oldest
        pending job), read from running counts: its cost must not grow with the job history."""
        ...
