"""HTTP ingress deployment: the seed's API (serve_app.http) over its own front desk on the job
store and handles to bookkeeping and inference.

Submissions and reads (status, audio, lists, stats) are the queue's hot path: the ingress does
them itself through a `JobManager` on its own store connection (the store's transactions make
that safe beside bookkeeping's), so a status poll or a submission costs no hop to another
deployment. Bookkeeping keeps what needs one owner: the worker protocol, the lease reaper,
webhooks, housekeeping, and the changes operators and voice owners ask for.

It lives with the routes it serves, above the deployments it calls: `serve_app` imports
`deployments`, never the other way round."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette

from deployments.connections import open_blob_storage, open_job_store
from voiceq.jobs import Job, JobStatus
from voiceq.manager import JobManager, Submission
from voiceq.metrics import Metrics
from voiceq.queue_wait import QueuePlace
from voiceq.settings import Settings
from voiceq.store import JobStats
from voiceq.voice_library import Caller
from voiceq.voices import Erasure, Voice

from deployments.handles import call
from deployments.replica_logs import configure_replica_logging
from deployments.wake import Waker

from .health import EngineState, build_report
from .http import create_http_app


# How old the ingress's copy of bookkeeping's wait figures may be when a status read uses it.
WAIT_RATES_TTL_S = 5.0


class ServeBackend:
    """`serve_app.http.Backend` made of a front desk on the job store and Serve handles."""

    def __init__(self, settings: Settings, jobs: DeploymentHandle, inference: DeploymentHandle,
                 waker: Waker | None = None, by_model: dict[str, DeploymentHandle] | None = None,
                 desk: JobManager | None = None) -> None:
        self.settings = settings
        self.desk = desk or JobManager(open_job_store(settings), open_blob_storage(settings), settings,
                                       metrics=Metrics())
        self.jobs = jobs
        self.inference = inference
        self.waker = waker
        # With several models served, each model's inference deployment (voiceq.models).
        self.by_model = dict(by_model or {})
        self._rates_at = -WAIT_RATES_TTL_S

    async def submit(self, sub: Submission) -> Job:
        # Admission, the upload as it came and the record in one trip to a thread, here.
        job = await self.desk.submit(sub)
        if self.waker is not None:
            self.waker.poke()
        return job

    async def get(self, job_id: str) -> Job:
        return await self.desk.get(job_id)

    async def run_now(self, job: Job) -> Job:
        outcome = await call(self.by_model.get(job.model, self.inference), "run", job.job_id)
        if outcome is not None:  # this call ran it: the outcome it recorded is the answer
            return outcome
        # A worker's own loop claimed it first (or its outcome could not be recorded): wait for
        # the outcome in the store, a final state or back in the queue after a failure that may pass.
        while True:
            job = await self.get(job.job_id)
            if job.status.terminal or (job.status is JobStatus.PENDING and job.attempts > 0):
                return job
            await asyncio.sleep(0.2)

    async def read_result(self, job: Job) -> bytes:
        return await self.desk.read_result(job)

    async def status(self, job_id: str) -> tuple[Job, str | None, QueuePlace | None]:
        await self._fresh_wait_rates()
        return await self.desk.status(job_id)

    async def _fresh_wait_rates(self) -> None:
        """Bookkeeping records the completions the wait estimate learns from: its figures are
        fetched at most every few seconds, and a status read goes on with older ones (or none)
        when bookkeeping does not answer at once."""
        now = time.monotonic()
        if now - self._rates_at < WAIT_RATES_TTL_S:
            return
        self._rates_at = now
        try:
            rates = await asyncio.wait_for(call(self.jobs, "wait_rates"), timeout=1.0)
        except Exception:  # an estimate is a nicety; the status itself comes from the store
            return
        self.desk.waits.adopt(rates)

    async def cancel(self, job_id: str) -> Job:
        return await call(self.jobs, "cancel", job_id)

    async def requeue(self, job_id: str) -> Job:
        return await call(self.jobs, "requeue", job_id)

    async def list_jobs(self, *, status: str | None, user_id: str | None, limit: int) -> list[Job]:
        return await self.desk.list_jobs(status=status, user_id=user_id, limit=limit)

    async def stats(self, user_id: str | None, owner: str | None = None) -> JobStats:
        return await self.desk.stats(user_id, owner)

    # The voice library (serve_app.voice_routes.VoiceBackend).

    async def list_voices(self, user_id: str, *, caller: Caller, limit: int) -> list[Voice]:
        return await call(self.jobs, "list_voices", user_id, caller=caller, limit=limit)

    async def get_voice(self, voice_id: str, *, caller: Caller) -> Voice:
        return await call(self.jobs, "get_voice", voice_id, caller=caller)

    async def rename_voice(self, voice_id: str, name: str, *, caller: Caller) -> Voice:
        return await call(self.jobs, "rename_voice", voice_id, name, caller=caller)

    async def delete_voice(self, voice_id: str, *, caller: Caller) -> Voice:
        return await call(self.jobs, "delete_voice", voice_id, caller=caller)

    async def erase_user(self, user_id: str, *, caller: Caller) -> Erasure:
        return await call(self.jobs, "erase_user", user_id, caller=caller)

    async def health(self) -> dict[str, Any]:
        pings = await call(self.jobs, "ping")
        stats, oldest_processing = None, None
        if pings.get("job_store") == "ok":
            stats = await call(self.jobs, "queue_snapshot")  # indexed reads, no table scan
            oldest_processing = stats.extra.get("oldest_processing_started_at")
        return build_report(self.settings, pings=pings, engine=await asyncio.to_thread(_engine_state),
                            stats=stats, oldest_processing_started_at=oldest_processing, now=time.time())


def _engine_state() -> EngineState:
    """The inference deployment as Serve's controller sees it (asking the replicas themselves
    would queue a request and wake a deployment that is scaled to zero)."""
    app = serve.status().applications.get(serve.get_replica_context().app_name)
    # One inference deployment per served model: VoiceCloneInference[-<model>].
    engines = [d for name, d in (app.deployments.items() if app else []) if name.startswith("VoiceCloneInference")]
    if not engines:
        return EngineState(status="MISSING", running_replicas=0)
    running = sum(n for d in engines for state, n in d.replica_states.items() if str(state).endswith("RUNNING"))
    statuses = [str(d.status).rsplit(".", 1)[-1] for d in engines]
    worst = next((st for st in statuses if st != "HEALTHY"), "HEALTHY")
    return EngineState(status=worst, running_replicas=running,
                       message="; ".join(d.message for d in engines if d.message))


# Serve builds the ASGI app on each replica by calling `_build_http_app` right after
# `IngressDeployment.__init__` ran in the same process; the backend is handed over here.
# (Through module-level functions: Serve ships the deployment class by value, so a global
# named in its body would be a copy, while these functions are imported by reference.)
_handoff: list[ServeBackend] = []


def _offer(backend: ServeBackend) -> None:
    _handoff.append(backend)


def _build_http_app() -> Starlette:
    return create_http_app(_handoff.pop())


# Past max_queued_requests Serve answers 503 itself, before our code runs: the last line of
# backpressure when submissions outrun even the bookkeeping.
@serve.deployment(name="Ingress", max_ongoing_requests=256, max_queued_requests=2048,
                  ray_actor_options={"num_cpus": 0})
@serve.ingress(_build_http_app)
class IngressDeployment:
    def __init__(self, settings: Settings, jobs: DeploymentHandle, inference: DeploymentHandle,
                 wake: DeploymentHandle | None = None, fleet: dict[str, DeploymentHandle] | None = None,
                 by_model: dict[str, DeploymentHandle] | None = None) -> None:
        # `fleet`: every inference deployment by name (one per GPU size); bound here so that
        # Serve deploys them all. `wake`: the one to wake on a submission to an empty fleet.
        # `by_model`: with several models served, each model's inference deployment.
        configure_replica_logging()
        waker = Waker(wake, sorted(fleet or {"VoiceCloneInference": inference})) if wake is not None else None
        self.backend = ServeBackend(settings, jobs, inference, waker, by_model)
        _offer(self.backend)
