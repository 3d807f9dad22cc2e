"""Every error body carries a stable `code` that clients match on instead of message text
(in process: the real routes over a backend that raises what bookkeeping would raise, no Ray)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve_app.http import create_http_app
from tests.support.audio import voice_file
from voiceq.errors import (BlobNotFound, IdempotencyKeyReused, InvalidInput, InvalidTransition, JobNotFound,
                           QueueFull, ServiceUnavailable, StorageUnavailable, StoreUnavailable, VoiceNotFound)
from voiceq.jobs import Job, JobStatus, new_job
from voiceq.settings import Settings

API = "/api/public/voice/onboarding"
KEY, ADMIN = "user-key-0123456789", "admin-key-0123456789"
JOB_ID = "123e4567-e89b-42d3-a456-426614174000"

# The shared vocabulary (clients and the CLI match these), plus the three outcomes of a
# development-mode clone that are not refusals of the request.
VOCABULARY = {
    "invalid_input", "unauthorized", "forbidden", "job_not_found", "voice_not_found", "not_found",
    "method_not_allowed", "invalid_transition", "result_gone", "payload_too_large", "unsupported_media_type",
    "idempotency_key_reused", "rate_limited", "queue_full", "store_unavailable", "storage_unavailable",
    "service_unavailable", "internal_error", "job_not_ready", "job_failed", "processing_timeout",
}


def a_job(status: JobStatus = JobStatus.PENDING, **changes: Any) -> Job:
    job = new_job(job_id=JOB_ID, user_id="u1", voice_name="v", sample_text="hi", audio_key="uploads/x.wav",
                  audio_seconds=1.0, now=0.0, owner="user")
    return job.replace(status=status, **changes)


class Raising:
    """A Backend whose calls raise `error` (when set) and otherwise answer with `job`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.error: BaseException | None = None
        self.job = a_job()
        self.run_for_s = 0.0

    async def _answer(self) -> Job:
        if self.error is not None:
            raise self.error
        return self.job

    async def get(self, job_id: str) -> Job:
        return await self._answer()

    async def status(self, job_id: str) -> tuple[Job, str | None, None]:
        return await self._answer(), None, None

    async def submit(self, sub: Any) -> Job:
        return await self._answer()

    async def run_now(self, job: Job) -> Job:
        await asyncio.sleep(self.run_for_s)
        return await self._answer()

    async def requeue(self, job_id: str) -> Job:
        return await self._answer()

    async def read_result(self, job: Job) -> bytes:
        raise BlobNotFound(f"results/{job.job_id}")

    async def get_voice(self, voice_id: str, *, caller: Any) -> Any:
        raise VoiceNotFound(voice_id)


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(data_dir=tmp_path, auth="required", api_keys=f"user:{KEY},ops:{ADMIN}:admin",
                    max_upload_bytes=200_000, **changes)


def send(app: Any, method: str, path: str, *, key: str | None = KEY, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **kwargs.pop("headers", {})}
            return await c.request(method, path, headers=headers, **kwargs)
    return asyncio.run(go())


def assert_code(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["error"], body
    assert body["code"] == code, body
    assert code in VOCABULARY


@pytest.mark.parametrize(("error", "status", "code"), [
    (JobNotFound(JOB_ID), 404, "job_not_found"),
    (BlobNotFound("results/x"), 410, "result_gone"),
    (InvalidTransition("job is completed; it cannot be cancelled"), 409, "invalid_transition"),
    (QueueFull("user busy", retry_after_s=10, per_user=True), 429, "rate_limited"),
    (QueueFull("queue full", retry_after_s=30, per_user=False), 503, "queue_full"),
    (StoreUnavailable("down"), 503, "store_unavailable"),
    (StorageUnavailable("down"), 503, "storage_unavailable"),
    (ServiceUnavailable("JobManager is restarting"), 503, "service_unavailable"),
    (IdempotencyKeyReused("k1"), 422, "idempotency_key_reused"),
    (InvalidInput("bad", field="x"), 400, "invalid_input"),
    (InvalidInput("too big", status_code=413), 413, "payload_too_large"),
    (InvalidInput("not audio", status_code=415), 415, "unsupported_media_type"),
    (InvalidInput("too short", status_code=422), 422, "invalid_input"),
    (InvalidInput("no priority for this key", status_code=403), 403, "forbidden"),
    (RuntimeError("a bug"), 500, "internal_error"),
])
def test_each_typed_error_answers_its_status_and_code(tmp_path: Path, error: BaseException, status: int,
                                                      code: str) -> None:
    backend = Raising(settings_for(tmp_path))
    backend.error = error
    app = create_http_app(backend)  # type: ignore[arg-type]
    assert_code(send(app, "GET", f"{API}/jobs/{JOB_ID}/status"), status, code)


def test_refusals_of_the_request_itself_carry_their_codes(tmp_path: Path) -> None:
    backend = Raising(settings_for(tmp_path))
    app = create_http_app(backend)  # type: ignore[arg-type]
    assert_code(send(app, "GET", f"{API}/jobs/{JOB_ID}/status", key=None), 401, "unauthorized")
    assert_code(send(app, "GET", f"{API}/jobs/not-a-uuid/status"), 400, "invalid_input")
    assert_code(send(app, "POST", f"{API}/jobs/{JOB_ID}/retry"), 403, "forbidden")
    assert_code(send(app, "GET", f"{API}/nothing-here"), 404, "not_found")
    assert_code(send(app, "PUT", f"{API}/jobs/{JOB_ID}/status"), 405, "method_not_allowed")
    assert_code(send(app, "POST", f"{API}/clone", content=b"{}", headers={"content-type": "application/json"}),
                415, "unsupported_media_type")
    big = b"x" * 600_000
    assert_code(send(app, "POST", f"{API}/clone", files={"audio_file": ("v.wav", big, "audio/wav")}),
                413, "payload_too_large")
    assert_code(send(app, "GET", f"{API}/voices/voice_0123456789abcdef"), 404, "voice_not_found")
    assert_code(send(app, "GET", f"{API}/jobs/{JOB_ID}/audio"), 409, "job_not_ready")
    backend.job = a_job(JobStatus.COMPLETED, result_key="results/gone.mp3")
    assert_code(send(app, "GET", f"{API}/jobs/{JOB_ID}/audio"), 410, "result_gone")


def development_clone(app: Any) -> httpx.Response:
    files = {"audio_file": ("v.wav", voice_file("wav", seconds=1.5), "audio/wav")}
    return send(app, "POST", f"{API}/clone", data={"user_id": "u1", "voice_name": "v"}, files=files)


def test_development_outcomes_that_are_not_results_carry_codes(tmp_path: Path) -> None:
    backend = Raising(settings_for(tmp_path, environment="development", dev_timeout_s=0.2))
    app = create_http_app(backend)  # type: ignore[arg-type]
    backend.job = a_job(JobStatus.FAILED, error="engine exploded", attempts=3)
    assert_code(development_clone(app), 500, "job_failed")
    backend.job = a_job(JobStatus.PENDING, error="storage hiccup", attempts=1)
    assert_code(development_clone(app), 503, "service_unavailable")
    backend.job, backend.run_for_s = a_job(JobStatus.PROCESSING), 5.0
    assert_code(development_clone(app), 504, "processing_timeout")
