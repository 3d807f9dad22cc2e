"""One job's path through the ingress's backend, hop by hop (in process: the real routes, the
real ingress backend with its own front desk, real bookkeeping on the same SQLite file and local
folder, a real worker with a tone engine; the Serve handles are replaced by recorders, no Ray)."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import httpx

from serve_app.ingress import ServeBackend
from serve_app.http import create_http_app
from tests.support.audio import voice_file
from tests.support.engines import ToneEngine
from voiceq.batching import BatchLimits
from voiceq.errors import ServiceUnavailable
from deployments.connections import open_blob_storage, open_job_store
from voiceq.jobs import JobStatus, WorkerInfo
from voiceq.manager import JobManager
from voiceq.settings import Settings
from voiceq.storage import upload_key
from voiceq.worker import Worker

API = "/api/public/voice/onboarding"


class Recorder:
    """Stands in for a Serve handle: `handle.method.remote(...)` calls `target.method(...)` in
    process and records the method's name (one hop to that deployment)."""

    def __init__(self, target: Any, name: str) -> None:
        self.target = target
        self.deployment_name = name
        self.calls: list[str] = []
        self.sent: list[tuple[str, tuple]] = []

    def __getattr__(self, method: str) -> Any:
        fn = getattr(self.target, method)
        calls, sent = self.calls, self.sent

        class Method:
            def remote(self_, *args: Any, **kwargs: Any) -> Any:
                calls.append(method)
                sent.append((method, args))
                out = fn(*args, **kwargs)
                return out if inspect.isawaitable(out) else answered(out)  # a handle's reply is awaited

        return Method()


async def answered(value: Any) -> Any:
    return value


class Inference:
    """The inference deployment's `run`, over a worker (without Serve's batching)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def run(self, job_id: str) -> Any:
        return (await self.worker.run_now([job_id])).get(job_id)


def app_over(tmp_path: Path, **changes: Any) -> tuple[Any, JobManager, Recorder, Recorder]:
    settings = Settings(data_dir=tmp_path, **changes)
    manager = JobManager(open_job_store(settings), open_blob_storage(settings), settings)
    worker = Worker(manager, manager.storage, ToneEngine(), limits=BatchLimits(max_rows=4),
                    worker=WorkerInfo(environment=settings.environment, gpu_type="cpu", worker_id="w"))
    jobs, inference = Recorder(manager, "JobManager"), Recorder(Inference(worker), "VoiceCloneInference")
    backend = ServeBackend(settings, jobs, inference)  # type: ignore[arg-type]
    return create_http_app(backend), manager, jobs, inference  # type: ignore[arg-type]


async def clone(c: httpx.AsyncClient, audio: bytes, name: str = "v.wav") -> httpx.Response:
    return await c.post(f"{API}/clone", data={"user_id": "u1", "voice_name": "v", "sample_text": "Hello there."},
                        files={"audio_file": (name, audio, "application/octet-stream")})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_development_takes_the_outcome_from_the_inference_call_and_reads_make_no_hop(tmp_path: Path) -> None:
    app, manager, jobs, inference = app_over(tmp_path, environment="development")

    async def scenario() -> tuple[httpx.Response, list[str], list[list[str]], httpx.Response]:
        async with client(app) as c:
            done = await clone(c, voice_file("wav", seconds=1.5))
            during_clone = list(jobs.calls)
            per_read = []
            for _ in range(2):
                jobs.calls.clear()
                status = await c.get(f"{API}/jobs/{done.json()['jobId']}/status")
                assert status.status_code == 200 and status.json()["status"] == "completed", status.text
                per_read.append(list(jobs.calls))
            jobs.calls.clear()
            audio = await c.get(f"{API}/jobs/{done.json()['jobId']}/audio")
            assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"
            assert jobs.calls == []  # no URL in a local folder: the bytes, read at the ingress
            return done, during_clone, per_read, status

    done, during_clone, per_read, status = asyncio.run(scenario())
    assert done.status_code == 200, done.text
    # Submitted at the ingress, run by the inference call (answering the outcome), the MP3 read
    # at the ingress: no call to bookkeeping, no read of the job between them.
    assert during_clone == []
    assert inference.calls == ["run"]
    # A status read is the ingress's own read of the store; the wait figures, at most every few
    # seconds, are the only thing it asks bookkeeping for.
    assert per_read == [["wait_rates"], []]


def test_the_upload_is_stored_as_received_and_the_worker_reads_it(tmp_path: Path) -> None:
    app, manager, jobs, _ = app_over(tmp_path, environment="production", auth="off")
    mp3 = voice_file("mp3", seconds=1.5, sample_rate=44_100, channels=2)

    async def scenario() -> tuple[httpx.Response, str]:
        async with client(app) as c:
            queued = await clone(c, mp3, "v.mp3")
            job_id = queued.json()["jobId"]
            assert manager.storage.get(upload_key(job_id)) == mp3  # the bytes as sent, not a WAV made of them
            assert jobs.sent == []  # stored at the ingress: the bytes never travel on to bookkeeping
            worker = Worker(manager, manager.storage, ToneEngine(), limits=BatchLimits(max_rows=4),
                            worker=WorkerInfo(environment="production", gpu_type="cpu", worker_id="w2"))
            await worker.run_once()
            return queued, (await manager.get(job_id)).status.value

    queued, final = asyncio.run(scenario())
    assert queued.status_code == 202, queued.text
    assert final == JobStatus.COMPLETED.value


def test_the_wait_estimate_learned_in_bookkeeping_reaches_the_ingress_status(tmp_path: Path) -> None:
    app, manager, jobs, _ = app_over(tmp_path, environment="production", auth="off")

    async def scenario() -> tuple[list[dict[str, Any]], float]:
        async with client(app) as c:
            ids = []
            for n in range(2):
                made = await clone(c, voice_file("wav", seconds=1.5, seed=n))
                ids.append(made.json()["jobId"])
                await asyncio.sleep(0.01)  # distinct creation times: queue order is submission order
            worker = Worker(manager, manager.storage, ToneEngine(), limits=BatchLimits(max_rows=1),
                            worker=WorkerInfo(environment="production", gpu_type="cpu", worker_id="w"))
            await worker.run_once()  # bookkeeping records the first completion and learns from it
            per_job = (await manager.get(ids[0])).gpu_seconds or 0.0
            return [(await c.get(f"{API}/jobs/{i}/status")).json() for i in ids], per_job

    (done, queued), per_job = asyncio.run(scenario())
    assert done["status"] == "completed" and per_job > 0
    assert queued["queuePosition"] == 0 and queued["estimatedWaitS"] == round(per_job, 1), queued


def test_a_status_read_needs_no_bookkeeping(tmp_path: Path) -> None:
    """Bookkeeping down (its replica restarting): submissions and status reads still answer,
    only without a wait estimate."""
    app, manager, jobs, _ = app_over(tmp_path, environment="production", auth="off")

    def restarting(*args: Any, **kwargs: Any) -> Any:
        raise ServiceUnavailable("JobManager is restarting; try again shortly")

    jobs.target = type("Down", (), {"__getattr__": lambda self, name: restarting})()

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with client(app) as c:
            made = await clone(c, voice_file("wav", seconds=1.5))
            return made, await c.get(f"{API}/jobs/{made.json()['jobId']}/status")

    made, status = asyncio.run(scenario())
    assert made.status_code == 202, made.text
    assert status.status_code == 200 and status.json()["status"] == "pending", status.text
    assert status.json()["queuePosition"] == 0 and status.json()["estimatedWaitS"] is None


def test_a_refused_submission_leaves_no_upload_behind(tmp_path: Path) -> None:
    app, manager, _, _ = app_over(tmp_path, environment="production", auth="off", max_active_jobs=1)

    async def scenario() -> httpx.Response:
        async with client(app) as c:
            assert (await clone(c, voice_file("wav", seconds=1.5))).status_code == 202
            return await clone(c, voice_file("wav", seconds=1.5, seed=1))

    refused = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.json()["code"] == "queue_full", refused.text
    uploads = [p.name for p in (tmp_path / "blobs" / "uploads").iterdir()]
    assert len(uploads) == 1, uploads  # the first job's only
