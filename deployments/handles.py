"""Calls to other deployments, with their errors arriving as the errors that were raised.

Serve wraps an exception raised in another replica in `RayTaskError`; the bookkeeping API's
callers need `StaleLease`, `JobNotFound` and friends to decide what to do.
"""

from __future__ import annotations

from typing import Any, Sequence

from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.handle import DeploymentHandle

from voiceq.errors import ServiceUnavailable
from voiceq.jobs import Job, JobResult, WorkerInfo


async def call(handle: DeploymentHandle, method: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return await getattr(handle, method).remote(*args, **kwargs)
    except RayTaskError as err:
        cause = err.cause if isinstance(getattr(err, "cause", None), BaseException) else None
        if cause is not None:
            raise cause from None
        raise
    except (RayActorError, ActorUnavailableError) as err:
        # The replica died or is restarting (Serve replaces it): the caller may try again.
        raise ServiceUnavailable(f"{handle.deployment_name} is restarting; try again shortly") from err


class RemoteJobs:
    """The worker's `JobsApi`, over a handle to the bookkeeping deployment."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    async def get(self, job_id: str) -> Job:
        return await call(self.handle, "get", job_id)

    async def claim(self, worker: WorkerInfo, *, limit: int, job_ids: Sequence[str] | None = None,
                    model: str | None = None) -> list[Job]:
        extra = {"model": model} if model is not None else {}
        return await call(self.handle, "claim", worker, limit=limit, job_ids=job_ids, **extra)

    async def heartbeat(self, job_id: str, *, lease_id: str) -> Job:
        return await call(self.handle, "heartbeat", job_id, lease_id=lease_id)

    async def complete(self, job_id: str, *, lease_id: str, result: JobResult) -> Job:
        return await call(self.handle, "complete", job_id, lease_id=lease_id, result=result)

    async def fail(
        self, job_id: str, *, lease_id: str, error: str, transient: bool, defer_s: float | None = None
    ) -> Job:
        return await call(self.handle, "fail", job_id, lease_id=lease_id, error=error, transient=transient,
                          defer_s=defer_s)
