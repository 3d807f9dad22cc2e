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

    @property
    def pending(self) -> int:
        return self.by_status.get(JobStatus.PENDING.value, 0)

    @property
    def processing(self) -> int:
        return self.by_status.get(JobStatus.PROCESSING.value, 0)


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
    ) -> list[Job]:
        """Atomically move up to `limit` claimable jobs (all of `job_ids` that are claimable, when
        given) to processing under fresh leases. Two claimers never receive the same job."""
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
