"""The conversion route applies the calling key's limits as the clone route does (in process:
the routes over a recording backend, no Ray)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from serve_app.http import create_http_app
from tests.support.audio import voice_file
from voiceq.jobs import new_job, new_job_id
from voiceq.manager import Submission
from voiceq.settings import Settings

API = "/api/public/voice/onboarding"


class Recording:
    """A Backend that records submissions instead of queueing them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.submitted: list[Submission] = []

    async def submit(self, sub: Submission) -> Any:
        self.submitted.append(sub)
        return new_job(job_id=new_job_id(), user_id=sub.user_id, voice_name=sub.voice_name, sample_text="",
                       audio_key="uploads/x.wav", audio_seconds=1.0, now=0.0)


def convert(app: Any, key: str, **fields: str) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            files = {"source_audio": ("s.wav", voice_file("wav", seconds=2.0), "audio/wav"),
                     "audio_file": ("v.wav", voice_file("wav", seconds=3.0, seed=1), "audio/wav")}
            return await c.post(f"{API}/convert", data={"user_id": "u1", **fields}, files=files,
                                headers={"Authorization": f"Bearer {key}"})
    return asyncio.run(go())


def test_a_conversion_keeps_the_keys_priority_limit(tmp_path: Path) -> None:
    settings = Settings(environment="production", data_dir=tmp_path, auth="required",
                        api_keys="plain:plain-key-0123456789,vip:vip-key-0123456789:priority=5")
    backend = Recording(settings)
    app = create_http_app(backend)  # type: ignore[arg-type]

    refused = convert(app, "plain-key-0123456789", priority="5")
    assert refused.status_code == 403 and refused.json()["field"] == "priority", refused.text
    assert backend.submitted == []

    accepted = convert(app, "vip-key-0123456789", priority="5")
    assert accepted.status_code == 202, accepted.text
    (sub,) = backend.submitted
    assert sub.priority == 5 and sub.limits is not None and sub.limits.max_priority == 5
