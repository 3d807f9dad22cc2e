"""The Convex-backed job store: `voiceq.store.base.JobStore` over the functions in
convex/voiceCloneJobs.ts, chosen by deployments.connections when CONVEX_URL is set.

Every method is one Convex function call, and every change one mutation: Convex runs each
mutation as a serializable transaction, so the atomicity the interface promises (two claimers
never get the same job) is Convex's. The TypeScript mutations apply the same transitions as
voiceq/jobs.py; the clock is this service's (`now` is an argument), as with SQLite.

Errors: an unreachable or refusing deployment is `StoreUnavailable` within seconds (the
client's retries are bounded); function errors that carry a `kind` become the voiceq error of
that name (`StaleLease`, `InvalidTransition`, `JobNotFound`).
"""

from __future__ import annotations

from typing import Any, Sequence

from voiceq.errors import StoreUnavailable
from voiceq.jobs import Job, JobResult, JobStatus, RetryPolicy, WorkerInfo
from voiceq.settings import Settings
from voiceq.store.base import JobStats

from .calls import DEPLOY_HINT
from .client import ConvexClient
from .documents import job_from_document, job_to_document, result_to_document, worker_to_document
from .library import ConvexLibrary
from .outbox import ConvexOutbox

# Must equal FUNCTIONS_VERSION in convex/voiceCloneJobs.ts.
FUNCTIONS_VERSION = 5
# Bounds of the TypeScript functions (MAX_CLAIM, MAX_LIST there).
MAX_CLAIM = 256
MAX_LIST = 1000


class ConvexJobStore(ConvexOutbox, ConvexLibrary):
    def __init__(
        self,
        client: ConvexClient,
        *,
        retry: RetryPolicy = RetryPolicy(),
        aging_s: float = 60.0,
        expire_batch: int = 256,
    ) -> None:
        if aging_s <= 0:
            raise ValueError("aging_s must be positive")
        self.client = client
        self.retry = retry
        self.aging_s = aging_s
        self.expire_batch = expire_batch

    @classmethod
    def from_settings(cls, settings: Settings, **client_options: Any) -> ConvexJobStore:
        if not settings.convex_url:
            raise ValueError("CONVEX_URL is not set")
        if not settings.convex_deploy_key:
            raise ValueError(
                "CONVEX_DEPLOY_KEY is not set: the job store calls internal Convex functions, which need "
                "a deploy key (Convex dashboard > Settings > Deploy keys)"
            )
        client = ConvexClient(settings.convex_url, deploy_key=settings.convex_deploy_key, **client_options)
        return cls(client, retry=settings.retry_policy)

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"ConvexJobStore({self.client!r})"

    # --- calls --------------------------------------------------------------------------

    def _retry_args(self) -> dict[str, float]:
        return {"baseDelayS": float(self.retry.base_delay_s), "maxDelayS": float(self.retry.max_delay_s)}

    # --- JobStore -----------------------------------------------------------------------

    def ping(self) -> None:
        reply = self._call("query", "ping", {})
        version = reply.get("functionsVersion") if isinstance(reply, dict) else None
        if version != FUNCTIONS_VERSION:
            raise StoreUnavailable(
                f"the Convex deployment runs voiceCloneJobs functions version {version}, this voiceq needs "
                f"version {FUNCTIONS_VERSION}: {DEPLOY_HINT}"
            )

    def create(self, job: Job) -> Job:
        # Safe to repeat: createJob returns the stored job for a job id it already has.
        return job_from_document(self._call("mutation", "createJob", {"job": job_to_document(job)}, idempotent=True))

    def get(self, job_id: str) -> Job | None:
        doc = self._call("query", "getJob", {"jobId": job_id})
        return job_from_document(doc) if doc is not None else None

    def queue_position(self, job_id: str, *, now: float) -> int | None:
        # The same claim order as claimJobs: this store's aging travels with the call.
        position = self._call("query", "queuePosition",
                              {"jobId": job_id, "now": float(now), "agingS": float(self.aging_s)})
        return None if position is None else int(position)

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
        if limit <= 0 or (job_ids is not None and not job_ids):
            return []
        args: dict[str, Any] = {
            "worker": worker_to_document(worker),
            "limit": min(int(limit), MAX_CLAIM),
            "leaseS": float(lease_s),
            "now": float(now),
            "agingS": float(self.aging_s),
        }
        if job_ids is not None:
            args["jobIds"] = list(job_ids)
        if model is not None:
            args["model"] = model
        return [job_from_document(d) for d in self._call("mutation", "claimJobs", args)]

    def heartbeat(self, job_id: str, *, lease_id: str, lease_s: float, now: float) -> Job:
        args = {"jobId": job_id, "leaseId": lease_id, "leaseS": float(lease_s), "now": float(now)}
        # Safe to repeat: a second renewal under the same lease sets the same expiry.
        return job_from_document(self._call("mutation", "heartbeatJob", args, idempotent=True))

    def complete(self, job_id: str, *, lease_id: str, result: JobResult, now: float) -> Job:
        args = {"jobId": job_id, "leaseId": lease_id, "result": result_to_document(result), "now": float(now)}
        return job_from_document(self._call("mutation", "completeJob", args, idempotent=True))

    def fail(
        self,
        job_id: str,
        *,
        lease_id: str,
        error: str,
        transient: bool,
        now: float,
        defer_s: float | None = None,
    ) -> Job:
        args: dict[str, Any] = {
            "jobId": job_id,
            "leaseId": lease_id,
            "error": error,
            "transient": bool(transient),
            "now": float(now),
            "retry": self._retry_args(),
        }
        if defer_s is not None:
            args["deferS"] = float(defer_s)
        return job_from_document(self._call("mutation", "failJob", args, idempotent=True))

    def expire_leases(self, *, now: float) -> list[Job]:
        expired: list[Job] = []
        while True:
            # Safe to repeat: a second run finds only leases that are still expired.
            batch = self._call(
                "mutation",
                "expireLeases",
                {"now": float(now), "retry": self._retry_args(), "limit": self.expire_batch},
                idempotent=True,
            )
            expired += [job_from_document(d) for d in batch]
            if len(batch) < self.expire_batch:
                return expired

    def cancel(self, job_id: str, *, now: float) -> Job:
        return job_from_document(self._call("mutation", "cancelJob", {"jobId": job_id, "now": float(now)},
                                                 idempotent=True))

    def requeue(self, job_id: str, *, now: float) -> Job:
        return job_from_document(self._call("mutation", "requeueJob", {"jobId": job_id, "now": float(now)}))

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        user_id: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        args: dict[str, Any] = {"limit": max(0, min(int(limit), MAX_LIST))}
        if status is not None:
            args["status"] = JobStatus(status).value
        if user_id is not None:
            args["userId"] = user_id
        return [job_from_document(d) for d in self._call("query", "listJobs", args)]

    def count_active(self, *, user_id: str | None = None) -> int:
        return int(self._call("query", "countActive", {} if user_id is None else {"userId": user_id}))

    def queue_stats(self) -> JobStats:
        # Convex's stats already read the running counts (convex/model/counts.ts).
        return self.stats()

    def stats(self, *, user_id: str | None = None) -> JobStats:
        s = self._call("query", "stats", {} if user_id is None else {"userId": user_id})
        by_status = {st.value: int(s["byStatus"].get(st.value, 0)) for st in JobStatus}
        avg = s.get("avgProcessingTime")
        oldest = s.get("oldestPendingCreatedAt")
        return JobStats(
            total=int(s["total"]),
            by_status=by_status,
            avg_processing_time=float(avg) if avg is not None else None,
            total_processing_time=float(s.get("totalProcessingTime") or 0.0),
            oldest_pending_created_at=float(oldest) if oldest is not None else None,
            audio_seconds_generated=float(s.get("audioSecondsGenerated") or 0.0),
            total_gpu_seconds=float(s.get("totalGpuSeconds") or 0.0),
            user_id=user_id,
            by_model={m: {k: float(v) for k, v in entry.items() if v is not None}
                      for m, entry in (s.get("byModel") or {}).items()},
        )
