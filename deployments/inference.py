"""Inference deployment: the only code that touches the model.

Each replica loads one engine and runs a `Worker` over it. The worker pulls batches from the
queue on its own (production's path), and `run` processes given jobs at once (development's
path); Serve's batching groups concurrent `run` calls into one engine batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Callable

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

from voiceq.batching import BatchLimits
from deployments.connections import open_blob_storage
from voiceq.engine import Engine
from voiceq.jobs import Job, WorkerInfo
from voiceq.metrics import Metrics
from voiceq.settings import Settings
from voiceq.worker import Worker

from .handles import RemoteJobs
from .replica_logs import configure_replica_logging

log = logging.getLogger("voiceq.deployments")

EngineFactory = Callable[[Settings], Engine]


def batch_limits(max_rows: int, wait_s: float, token_budget: int) -> BatchLimits:
    return BatchLimits(max_rows=max_rows, token_budget=token_budget, wait_to_fill_s=wait_s)


def default_engine_factory(settings: Settings, model: str = "chatterbox") -> Engine:
    from voiceq.engine.family import load_engine

    return load_engine(settings, model)


def deployment_name(model: str) -> str:
    """Each served model is its own inference deployment; English keeps the original name."""
    return "VoiceCloneInference" if model == "chatterbox" else f"VoiceCloneInference-{model}"


@serve.deployment(name="VoiceCloneInference", max_ongoing_requests=32, health_check_period_s=10)
class InferenceDeployment:
    async def __init__(self, settings: Settings, jobs: DeploymentHandle,
                       engine_factory: EngineFactory | None = None, model: str | None = None) -> None:
        configure_replica_logging()
        self.settings = settings
        if engine_factory is None:
            engine = await asyncio.to_thread(default_engine_factory, settings, model or "chatterbox")
        else:
            engine = await asyncio.to_thread(engine_factory, settings)
        context = serve.get_replica_context()
        worker = WorkerInfo(
            environment=settings.environment,
            gpu_type=engine.info.gpu_type,
            worker_id=f"{socket.gethostname()}/{context.replica_id.unique_id}",
            node_id=ray.get_runtime_context().get_node_id(),
            droplet_id=os.environ.get("VOICEQ_DROPLET_ID") or None,
        )
        self.worker = Worker(
            RemoteJobs(jobs),
            open_blob_storage(settings),
            engine,
            worker=worker,
            limits=batch_limits(settings.max_batch_size, settings.batch_wait_s, settings.token_budget),
            heartbeat_s=max(0.5, settings.lease_s / 3),
            poll_interval_s=settings.poll_interval_s,
            metrics=Metrics(),
            # With several models served, each deployment claims its own model's jobs only.
            model=model if len(settings.served_models) > 1 else None,
        )
        self.run.set_max_batch_size(settings.max_batch_size)
        self.run.set_batch_wait_timeout_s(settings.batch_wait_s)
        self._loop = asyncio.get_running_loop().create_task(self.worker.run_forever())
        log.info("inference replica %s ready on %s (%s)", worker.worker_id, engine.info.device,
                 engine.info.description or engine.info.name)

    def reconfigure(self, config: dict) -> None:
        """Batch limits at run time: `serve deploy` with a new `user_config` for this
        deployment (keys max_batch_size, batch_wait_s, token_budget) changes them in place,
        without restarting the replica or reloading the model."""
        current = self.worker.limits
        limits = batch_limits(
            int(config.get("max_batch_size", current.max_rows)),
            float(config.get("batch_wait_s", current.wait_to_fill_s)),
            int(config.get("token_budget", current.token_budget)),
        )
        self.worker.configure(limits)
        self.run.set_max_batch_size(limits.max_rows)
        self.run.set_batch_wait_timeout_s(limits.wait_to_fill_s)
        log.info("batch limits now max_rows=%d token_budget=%d wait_to_fill_s=%.3f",
                 limits.max_rows, limits.token_budget, limits.wait_to_fill_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.25)
    async def run(self, job_ids: list[str]) -> list[Job | None]:
        """Process these jobs now; for each, the outcome this call recorded (a final state, or
        pending again for a retry), or None (someone else had the job, or no outcome could be
        recorded): development mode answers from it without reading the store again."""
        outcomes = await self.worker.run_now(job_ids)
        return [outcomes.get(job_id) for job_id in job_ids]

    async def wake(self) -> bool:
        """Nothing: the ingress queues this call to start a replica of a fleet scaled to zero
        (deployments.wake)."""
        return True

    def describe(self) -> dict:
        """What this replica is and has done (operators, health checks, fault tests)."""
        return {
            "pid": os.getpid(),
            "worker_id": self.worker.worker.worker_id,
            "node_id": self.worker.worker.node_id,
            "device": self.worker.engine.info.device,
            "gpu_type": self.worker.engine.info.gpu_type,
            "engine": self.worker.engine.info.name,
            "batches_run": self.worker.batches_run,
            "last_batch_size": self.worker.last_batch_size,
            "max_batch_size": self.worker.limits.max_rows,
            "token_budget": self.worker.limits.token_budget,
            "batch_wait_s": self.worker.limits.wait_to_fill_s,
            "voice_cache": {"size": len(self.worker.voices), "hits": self.worker.voices.hits,
                            "misses": self.worker.voices.misses},
        }

    def check_health(self) -> None:
        if self._loop.done():
            raise RuntimeError("worker loop stopped")

    async def __del__(self) -> None:
        if hasattr(self, "_loop"):  # the constructor may have failed
            await self.worker.stop(timeout_s=self.settings.shutdown_grace_s)
            self._loop.cancel()
