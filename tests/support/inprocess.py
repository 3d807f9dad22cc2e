"""The HTTP app over in-process bookkeeping and a worker (no Ray): a real JobManager on a
real SQLite file and local folder, a real Worker with a stand-in engine. For route tests
that need jobs to run but are not about Serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.engines import ToneEngine
from voiceq.batching import BatchLimits
from deployments.connections import open_blob_storage, open_job_store
from voiceq.jobs import Job, WorkerInfo
from voiceq.manager import JobManager
from voiceq.settings import Settings
from voiceq.worker import Worker


class InProcessBackend:
    """`serve_app.http.Backend` (and the voice library's) over a JobManager and a Worker."""

    def __init__(self, settings: Settings, engine: ToneEngine | None = None) -> None:
        self.settings = settings
        self.manager = JobManager(open_job_store(settings), open_blob_storage(settings), settings)
        self.worker = Worker(self.manager, self.manager.storage, engine or ToneEngine(),
                             worker=WorkerInfo(environment=settings.environment, gpu_type="cpu", worker_id="inproc"),
                             limits=BatchLimits(max_rows=settings.max_batch_size), poll_interval_s=0.05)

    async def run_now(self, job: Job) -> Job:
        outcome = (await self.worker.run_now([job.job_id])).get(job.job_id)
        return outcome or await self.manager.get(job.job_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.manager, name)


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path, **{"lease_s": 30.0, **overrides})
