"""HTTP ingress deployment: the seed's API (serve_app.http) over handles to bookkeeping and inference.

It lives with the routes it serves, above the deployments it calls: `serve_app` imports
`deployments`, never the other way round."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette

from voiceq.audio_formats import media_type
from deployments.connections import open_blob_storage
from voiceq.jobs import Job, JobStatus, new_job_id
from voiceq.manager import Submission
from voiceq.queue_wait import QueuePlace
from voiceq.settings import Settings
from voiceq.storage import BlobStorage, upload_key
from voiceq.storage.base import source_key
from voiceq.store import JobStats
from voiceq.voice_library import Caller
from voiceq.voices import Erasure, Voice

from deployments.handles import call
from deployments.replica_logs import configure_replica_logging
from deployments.wake import Waker

from .health import EngineState, build_report
from .http import create_http_app


class ServeBackend:
    """`serve_app.http.Backend` made of Serve handles."""

    def __init__(self, settings: Settings, jobs: DeploymentHandle, inference: DeploymentHandle,
                 waker: Waker | None = None, by_model: dict[str, DeploymentHandle] | None = None,
                 storage: BlobStorage | None = None) -> None:
        self.settings = settings
        # Uploads are stored here, as they came: their bytes do not travel on to bookkeeping.
        self.storage = storage or open_blob_storage(settings)
        self.jobs = jobs
        self.inference = inference
        self.waker = waker
        # With several models served, each model's inference deployment (voiceq.models).
        self.by_model = dict(by_model or {})

    async def submit(self, sub: Submission) -> Job:
        sub = await asyncio.to_thread(store_uploads, self.storage, sub)
        job = await call(self.jobs, "submit", sub)
        if self.waker is not None:
            self.waker.poke()
        return job

    async def get(self, job_id: str) -> Job:
        return await call(self.jobs, "get", job_id)

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

    async def read_result(self, job_id: str) -> bytes:
        return await call(self.jobs, "read_result", job_id)

    async def status(self, job_id: str) -> tuple[Job, str | None, QueuePlace | None]:
        return await call(self.jobs, "status", job_id)

    async def result_url(self, job_id: str) -> str | None:
        return await call(self.jobs, "result_url", job_id)

    async def cancel(self, job_id: str) -> Job:
        return await call(self.jobs, "cancel", job_id)

    async def requeue(self, job_id: str) -> Job:
        return await call(self.jobs, "requeue", job_id)

    async def list_jobs(self, *, status: str | None, user_id: str | None, limit: int) -> list[Job]:
        return await call(self.jobs, "list_jobs", status=status, user_id=user_id, limit=limit)

    async def stats(self, user_id: str | None, owner: str | None = None) -> JobStats:
        return await call(self.jobs, "stats", user_id, owner)

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


def store_uploads(storage: BlobStorage, sub: Submission) -> Submission:
    """Blocking: store a submission's uploads under a new job id and hand on their keys only.
    Bookkeeping removes them again if it refuses the submission."""
    if sub.audio is None and sub.source_audio is None:
        return sub
    job_id = new_job_id()
    keys = {"audio_key": upload_key(job_id) if sub.audio is not None else None,
            "source_key": source_key(job_id) if sub.source_audio is not None else None}
    written: list[str] = []
    try:
        for key, data in ((keys["audio_key"], sub.audio), (keys["source_key"], sub.source_audio)):
            if key and data is not None:
                storage.put(key, data, content_type=media_type(data))
                written.append(key)
    except BaseException:
        for key in written:
            try:
                storage.delete(key)
            except Exception:  # never recorded: an orphan blob is the lesser harm
                pass
        raise
    return dataclasses.replace(sub, job_id=job_id, audio=None, source_audio=None, **keys)


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
