"""`response_format` on the clone route (in process, no Ray): the result in that format, the
seed's MP3 answer unchanged by default, an unknown format refused with nothing stored."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve_app.http import create_http_app
from tests.support.audio import voice_file
from tests.support.decode import decode_any
from tests.support.inprocess import InProcessBackend, settings_for

API = "/api/public/voice/onboarding"


def clone(backend: InProcessBackend, **fields: str) -> tuple[httpx.Response, httpx.Response | None]:
    app = create_http_app(backend)  # type: ignore[arg-type]

    async def go() -> tuple[httpx.Response, httpx.Response | None]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            made = await c.post(f"{API}/clone", data={"user_id": "u1", "voice_name": "V", **fields},
                                files={"audio_file": ("v.wav", voice_file("wav", seconds=1.5), "audio/wav")})
            audio = await c.get(made.json()["resultUrl"]) if made.status_code == 200 else None
            return made, audio
    return asyncio.run(go())


@pytest.fixture()
def backend(tmp_path: Path) -> InProcessBackend:
    return InProcessBackend(settings_for(tmp_path, environment="development", auth="off"))


@pytest.mark.parametrize(("fmt", "media"), [("flac", "audio/flac"), ("opus", "audio/ogg"), ("wav", "audio/wav")])
def test_the_result_comes_in_the_asked_format(backend: InProcessBackend, fmt: str, media: str) -> None:
    made, audio = clone(backend, response_format=fmt, sample_text="Three words here.")
    assert made.status_code == 200, made.text
    body: dict[str, Any] = made.json()
    prefix = f"data:{media};base64,"
    assert body["sample_audio"].startswith(prefix)
    assert audio is not None and audio.headers["content-type"] == media
    assert audio.content == base64.b64decode(body["sample_audio"][len(prefix):])
    job = asyncio.run(backend.manager.get(body["jobId"]))
    samples, rate = decode_any(audio.content, fmt)
    assert abs(len(samples) / rate - (job.result_seconds or 0)) < 0.03


def test_mp3_stays_the_default_answer(backend: InProcessBackend) -> None:
    made, audio = clone(backend)
    assert made.json()["sample_audio"].startswith("data:audio/mp3;base64,")
    assert audio is not None and audio.headers["content-type"] == "audio/mpeg"
    assert audio.headers["content-disposition"].endswith('.mp3"')


def test_an_unknown_format_is_refused_before_anything_is_stored(backend: InProcessBackend) -> None:
    made, _ = clone(backend, response_format="ogg-vorbis")
    assert made.status_code == 400 and made.json()["field"] == "response_format"
    assert "mp3, opus, aac, flac, wav, pcm" in made.json()["error"]
    assert asyncio.run(backend.manager.stats()).total == 0
