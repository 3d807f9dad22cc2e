"""The OpenAI-compatible routes in process (no Ray): bad input is refused in OpenAI's error
shape with nothing stored, another key's voice does not exist, and speech is ordinary jobs.
The real app, driven by the official `openai` client, is in test_openai_app.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve_app.http import create_http_app
from tests.support.audio import voice_file
from tests.support.decode import decode_any
from tests.support.inprocess import InProcessBackend, settings_for
from voiceq.audio import decode_upload
from voiceq.pcm import to_wav
from voiceq.manager import Submission

KEYS = {"alice": "alice-openai-key-0123", "bob": "bob-openai-key-0123"}


@pytest.fixture()
def backend(tmp_path: Path) -> InProcessBackend:
    return InProcessBackend(settings_for(tmp_path, environment="development", auth="required",
                                         api_keys=f"alice:{KEYS['alice']},bob:{KEYS['bob']}"))


def call(backend: InProcessBackend, method: str, path: str, who: str | None = "alice", **kw: Any) -> httpx.Response:
    app = create_http_app(backend)  # type: ignore[arg-type]
    headers = {**({"Authorization": f"Bearer {KEYS[who]}"} if who else {}), **kw.pop("headers", {})}

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.request(method, path, headers=headers, **kw)
    return asyncio.run(go())


def clone_voice(backend: InProcessBackend, who: str = "alice", user: str = "u1") -> str:
    clip = decode_upload(voice_file("wav", seconds=1.5), min_s=1, max_s=60)

    async def go() -> str:
        job = await backend.manager.submit(Submission(user_id=user, voice_name="Narrator", sample_text="Hi.",
                                                      audio=to_wav(clip), audio_seconds=clip.seconds,
                                                      owner=who))
        done = await backend.run_now(job)
        assert done.voice_id
        return done.voice_id
    return asyncio.run(go())


def job_count(backend: InProcessBackend) -> int:
    return asyncio.run(backend.manager.stats()).total


@pytest.mark.parametrize(("body", "param", "status"), [
    ({"input": "Hi.", "voice": "voice_0123456789abcdef"}, "model", 400),
    ({"model": "tts-1", "voice": "voice_0123456789abcdef"}, "input", 400),
    ({"model": "tts-1", "input": "   ", "voice": "voice_0123456789abcdef"}, "input", 400),
    ({"model": "tts-1", "input": "x" * 4097, "voice": "voice_0123456789abcdef"}, "input", 400),
    ({"model": "tts-1", "input": "Hi.", "voice": "alloy"}, "voice", 400),
    ({"model": "tts-1", "input": "Hi.", "voice": "voice_0123456789abcdef", "response_format": "ogg"},
     "response_format", 400),
    ({"model": "tts-1", "input": "Hi.", "voice": "voice_0123456789abcdef", "speed": 9}, "speed", 400),
    ({"model": "tts-1", "input": "Hi.", "voice": "voice_0123456789abcdef", "speed": "fast"}, "speed", 400),
    ({"model": "whisper-1", "input": "Hi.", "voice": "voice_0123456789abcdef"}, "model", 400),
    ({"model": "tts-1", "input": "Hi.", "voice": "voice_0123456789abcdef", "language": "fr"}, "language", 400),
    ({"model": "tts-1", "input": "Hi.", "voice": "voice_0123456789abcdef", "temperature": 7}, "temperature", 400),
    ({"model": "tts-1", "input": "Hi.", "voice": "voice_0123456789abcdef", "colour": "red"}, "colour", 400),
    ({"model": "tts-1", "input": "Hi.", "voice": "voice_0123456789abcdef", "stream_format": "sse"},
     "stream_format", 400),
])
def test_bad_speech_requests_name_the_problem_and_store_nothing(backend: InProcessBackend, body: dict,
                                                                param: str, status: int) -> None:
    r = call(backend, "POST", "/v1/audio/speech", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["code"] == "invalid_input"
    assert param in error["message"] or param == "model"
    assert job_count(backend) == 0


def test_non_json_and_unauthenticated_requests_answer_in_openais_shape(backend: InProcessBackend) -> None:
    r = call(backend, "POST", "/v1/audio/speech", content=b"input=hi", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = call(backend, "POST", "/v1/audio/speech", json=[1, 2])
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"
    r = call(backend, "GET", "/v1/models", who=None)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error" and r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_another_keys_voice_does_not_exist(backend: InProcessBackend) -> None:
    voice_id = clone_voice(backend, "alice")
    before = job_count(backend)
    body = {"model": "tts-1", "input": "Hello there.", "voice": voice_id}
    stolen = call(backend, "POST", "/v1/audio/speech", who="bob", json=body)
    unknown = call(backend, "POST", "/v1/audio/speech", who="bob", json={**body, "voice": "voice_" + "0" * 16})
    assert stolen.status_code == unknown.status_code == 404
    assert stolen.json()["error"]["code"] == "voice_not_found"
    assert stolen.json()["error"]["message"] == f"no voice with id {voice_id!r}"
    assert job_count(backend) == before
    assert call(backend, "GET", "/v1/audio/voices", who="bob", params={"user_id": "u1"}).json()["voices"] == []
    mine = call(backend, "GET", "/v1/audio/voices", params={"user_id": "u1"}).json()
    assert [v["id"] for v in mine["voices"]] == [voice_id] and mine["voices"][0]["name"] == "Narrator"
    missing = call(backend, "GET", "/v1/audio/voices")
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "user_id"


def test_speech_is_one_job_per_chunk_and_joins_into_one_file(backend: InProcessBackend) -> None:
    voice_id = clone_voice(backend, "alice", user="speaker")
    text = "First sentence here. " + " ".join(f"Sentence number {i} goes on for a while." for i in range(12))
    r = call(backend, "POST", "/v1/audio/speech",
             json={"model": "chatterbox", "input": text, "voice": voice_id, "response_format": "wav"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    parts = int(r.headers["x-voiceq-chunks"])
    assert parts >= 2
    jobs = asyncio.run(backend.manager.list_jobs(user_id="speaker", limit=50))
    chunks = sorted((j for j in jobs if "speech" in j.extra), key=lambda j: j.extra["speech"]["part"])
    assert [j.extra["speech"]["part"] for j in chunks] == list(range(parts))
    assert {j.status.value for j in chunks} == {"completed"}
    assert chunks[0].sample_text == "First sentence here."  # the first chunk is the first sentence alone
    assert {j.extra["speech"]["request"] for j in chunks} == {r.headers["x-request-id"]}
    samples, rate = decode_any(r.content, "wav")
    expected = sum(j.result_seconds or 0 for j in chunks) + 0.15 * (parts - 1)
    assert abs(len(samples) / rate - expected) < 0.05
    # Half speed: twice as long, same jobs' kind of audio.
    slow = call(backend, "POST", "/v1/audio/speech",
                json={"model": "tts-1", "input": "Just one.", "voice": voice_id, "response_format": "pcm", "speed": 0.5})
    one = [j for j in asyncio.run(backend.manager.list_jobs(user_id="speaker", limit=50))
           if j.extra.get("speech", {}).get("request") == slow.headers["x-request-id"]]
    assert abs(len(decode_any(slow.content, "pcm")[0]) / 24_000 - 2 * (one[0].result_seconds or 0)) < 0.05


def test_models_lists_the_served_family_and_openais_names(backend: InProcessBackend) -> None:
    ids = [m["id"] for m in call(backend, "GET", "/v1/models").json()["data"]]
    assert ids[0] == "chatterbox" and "tts-1" in ids
