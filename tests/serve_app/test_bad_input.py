"""Hostile and malformed requests against the running app: each gets a 4xx JSON error that names
the problem, nothing is stored, and the server stays healthy."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
import pytest

from tests.support.audio import voice_file
from tests.support.server import VoiceqServer
from tests.voiceq.test_audio_hostile import HOSTILE, wav_header
from voiceq.pcm import Clip, to_wav

API = "/api/public/voice/onboarding"
pytestmark = pytest.mark.slow

GOOD = {"user_id": "test123", "voice_name": "My Voice"}
WAV = voice_file("wav", seconds=2.0)
MP3 = voice_file("mp3", seconds=2.0)


def form(fields: dict[str, Any] | None = None, audio: bytes | None = WAV, name: str = "v.wav") -> dict[str, Any]:
    files = {"audio_file": (name, audio, "audio/wav")} if audio is not None else None
    return {"data": {**GOOD, **(fields or {})} if fields is not None else dict(GOOD), "files": files}


def post_form(**kw: Any) -> Callable[[httpx.Client], httpx.Response]:
    return lambda c: c.post(f"{API}/clone", **form(**kw))


def without(field: str) -> Callable[[httpx.Client], httpx.Response]:
    data = {k: v for k, v in GOOD.items() if k != field}
    return lambda c: c.post(f"{API}/clone", data=data, files={"audio_file": ("v.wav", WAV, "audio/wav")})


def raw(body: bytes, content_type: str | None, path: str = f"{API}/clone") -> Callable[[httpx.Client], httpx.Response]:
    headers = {"content-type": content_type} if content_type else {}
    return lambda c: c.post(path, content=body, headers=headers)


def multipart_body(boundary: str, parts: list[tuple[str, bytes, str | None]]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


FULL_BODY = multipart_body("XyZ", [("user_id", b"u1", None), ("voice_name", b"v", None),
                                   ("audio_file", WAV, "v.wav")])
SILENT = to_wav(Clip(np.zeros(48_000, np.float32), 24_000))

CASES: dict[str, tuple[Callable[[httpx.Client], httpx.Response], int, str]] = {
    # name: (request, expected status, words the error must contain)
    "json body": (lambda c: c.post(f"{API}/clone", json={"user_id": "u"}), 415, "multipart/form-data"),
    "text/plain body": (raw(b"hello", "text/plain"), 415, "multipart/form-data"),
    "no content type": (raw(b"hello", None), 415, "multipart/form-data"),
    "missing user_id": (without("user_id"), 400, "user_id is required"),
    "missing voice_name": (without("voice_name"), 400, "voice_name is required"),
    "missing audio_file": (post_form(audio=None), 400, "audio_file is required"),
    "audio_file as a text field": (lambda c: c.post(f"{API}/clone", data={**GOOD, "audio_file": "abc"}), 400,
                                   "must be a file upload"),
    "empty file": (post_form(audio=b""), 400, "audio_file is empty"),
    "text file": (post_form(audio=b"just some words, no audio at all" * 20, name="notes.txt"), 415,
                  "could not be decoded"),
    "png image": (post_form(audio=b"\x89PNG\r\n\x1a\n" + bytes(4000), name="pic.png"), 415, "audio_file"),
    "truncated mp3": (post_form(audio=MP3[:300], name="v.mp3"), 415, "audio_file"),
    "too short": (post_form(audio=voice_file("wav", seconds=0.3)), 422, "too short"),
    "too long": (post_form(audio=voice_file("wav", seconds=61.0, sample_rate=8_000)), 413, "longer than"),
    "silent": (post_form(audio=SILENT), 422, "silent"),
    "oversized upload": (post_form(audio=b"\0" * (21 * 1024 * 1024)), 413, "larger than"),
    "overlong voice_name": (post_form(fields={"voice_name": "v" * 101}), 400, "voice_name is too long"),
    "overlong sample_text": (post_form(fields={"sample_text": "word " * 300}), 400, "sample_text is too long"),
    "overlong user_id": (post_form(fields={"user_id": "u" * 200}), 400, "user_id"),
    "path traversal in user_id": (post_form(fields={"user_id": "../../etc/passwd"}), 400, "user_id may only"),
    "newline in user_id": (post_form(fields={"user_id": "bob\nadmin"}), 400, "user_id"),
    "nul in voice_name": (post_form(fields={"voice_name": "bad\x00name"}), 400, "control"),
    "sample_text without words": (post_form(fields={"sample_text": "!!! ??? ..."}), 400, "no words"),
    "malformed voice_id": (post_form(fields={"voice_id": "voice_../../x"}, audio=None), 400, "malformed voice_id"),
    "voice_id and audio": (post_form(fields={"voice_id": "voice_" + "a" * 16}), 400, "either audio_file or voice_id"),
    "exaggeration not a number": (post_form(fields={"exaggeration": "lots"}), 400, "exaggeration must be a number"),
    "exaggeration out of range": (post_form(fields={"exaggeration": "5"}), 400, "between 0 and 2"),
    "temperature nan": (post_form(fields={"temperature": "nan"}), 400, "temperature"),
    "seed not an integer": (post_form(fields={"seed": "1.5"}), 400, "seed must be an integer"),
    "priority out of range": (post_form(fields={"priority": "99"}), 400, "priority"),
    "javascript callback_url": (post_form(fields={"callback_url": "javascript:alert(1)"}), 400, "callback_url"),
    "truncated multipart body": (raw(FULL_BODY[: len(FULL_BODY) // 2], "multipart/form-data; boundary=XyZ"),
                                 400, ""),
    "multipart without boundary": (raw(FULL_BODY, "multipart/form-data"), 400, ""),
    "two files": (lambda c: c.post(f"{API}/clone", data=GOOD, files=[("audio_file", ("a.wav", WAV, "audio/wav")),
                                                                     ("extra", ("b.wav", WAV, "audio/wav"))]),
                  400, ""),
    "huge text field": (post_form(fields={"sample_text": "a" * 200_000}), 400, ""),
    "bad idempotency key": (lambda c: c.post(f"{API}/clone", headers={"Idempotency-Key": "no spaces allowed"},
                                             **form()), 400, "Idempotency-Key"),
    "malformed job id": (lambda c: c.get(f"{API}/jobs/abc/status"), 400, "malformed job id"),
    "path traversal job id": (lambda c: c.get(f"{API}/jobs/..%2F..%2Fetc%2Fpasswd/status"), 404, "no such endpoint"),
    "sql in job id": (lambda c: c.get(f"{API}/jobs/1'%20OR%20'1'='1/status"), 400, "malformed job id"),
    "unknown job": (lambda c: c.get(f"{API}/jobs/123e4567-e89b-42d3-a456-426614174000/status"), 404, "no job"),
    "unknown job audio": (lambda c: c.get(f"{API}/jobs/123e4567-e89b-42d3-a456-426614174000/audio"), 404, "no job"),
    "cancel unknown job": (lambda c: c.delete(f"{API}/jobs/123e4567-e89b-42d3-a456-426614174000"), 404, "no job"),
    "jobs without user_id": (lambda c: c.get(f"{API}/jobs"), 400, "user_id"),
    "jobs with a bogus status": (lambda c: c.get(f"{API}/jobs", params={"user_id": "u", "status": "x"}), 400,
                                 "status must be one of"),
    "jobs with a bad limit": (lambda c: c.get(f"{API}/jobs", params={"user_id": "u", "limit": "-1"}), 400, "limit"),
    "wrong method": (lambda c: c.get(f"{API}/clone"), 405, "not allowed"),
}

# Hostile files with audio names (tests/voiceq/test_audio_hostile.py has the bytes): network
# protocols, playlists, concat lists, archives, images, absurd headers. Each one is refused from
# its first bytes or its header, before any decoding.
HOSTILE_UPLOADS = {
    "sdp session as audio": ("sdp", "v.mp3"),
    "hls playlist as audio": ("hls playlist", "v.mp3"),
    "m3u playlist as audio": ("m3u playlist", "v.wav"),
    "ffconcat list as audio": ("ffconcat", "v.wav"),
    "concat url list as audio": ("concat url", "v.ogg"),
    "pls playlist as audio": ("pls playlist", "v.mp3"),
    "rtsp url as audio": ("rtsp url text", "v.mp3"),
    "zip archive named .wav": ("zip archive", "v.wav"),
    "gzip named .mp3": ("gzip", "v.mp3"),
    "jpeg named .mp3": ("jpeg image", "v.mp3"),
    "gif named .wav": ("gif image", "v.wav"),
    "pdf named .m4a": ("pdf", "v.m4a"),
    "avi in a riff named .wav": ("avi in riff", "v.wav"),
    "html named .webm": ("html", "v.webm"),
}
for _name, (_kind, _file) in HOSTILE_UPLOADS.items():
    CASES[_name] = (post_form(audio=HOSTILE[_kind], name=_file), 415, "not an accepted format")
CASES.update({
    "wav with 65535 channels": (post_form(audio=wav_header(65_535, 8_000)), 415, "audio_file"),
    "wav with 64 channels": (post_form(audio=wav_header(64, 24_000)), 415, "channels"),
    "wav at 4 GHz": (post_form(audio=wav_header(1, 4_000_000_000)), 415, "audio_file"),
    "wav at 1 Hz": (post_form(audio=wav_header(1, 1)), 415, "sample rate"),
})


def first_with_key(c: httpx.Client) -> None:
    r = c.post(f"{API}/clone", headers={"Idempotency-Key": "reused-key-1"}, **form())
    assert r.status_code == 200, r.text


# name: (request, expected status, words, what runs first and may store)
PREPARED: dict[str, tuple[Callable[[httpx.Client], httpx.Response], int, str, Callable[[httpx.Client], None]]] = {
    "idempotency key reused with another body": (
        lambda c: c.post(f"{API}/clone", headers={"Idempotency-Key": "reused-key-1"},
                         **form(fields={"voice_name": "Another Voice"})),
        422, "already used with a different request", first_with_key),
}


def stored(settings_data_dir: Path) -> tuple[int, int]:
    from voiceq.store.sqlite import SQLiteJobStore

    blobs = settings_data_dir / "blobs"
    files = sum(1 for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else 0
    return SQLiteJobStore(settings_data_dir / "jobs.sqlite3").stats().total, files


@pytest.fixture(scope="module")
def app(voiceq_server: VoiceqServer) -> VoiceqServer:
    voiceq_server.deploy(voiceq_server.settings_for(environment="development"))
    return voiceq_server


def test_there_are_at_least_sixty_distinct_cases() -> None:
    assert len(CASES) + len(PREPARED) >= 60


def health_s(c: httpx.Client) -> float:
    started = time.monotonic()
    assert c.get("/health").status_code == 200
    return time.monotonic() - started


@pytest.mark.parametrize("name", list(CASES) + list(PREPARED))
def test_bad_request_is_refused_clearly_and_stores_nothing(app: VoiceqServer, name: str) -> None:
    request, status, words, *prepare = CASES.get(name) or PREPARED[name]
    assert app.settings is not None
    with app.client() as c:
        for step in prepare:
            step(c)
        before = stored(Path(app.settings.data_dir))
        r = request(c)
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        body = r.json()
        assert body["success"] is False and body["error"], body
        assert words in body["error"], body
        assert stored(Path(app.settings.data_dir)) == before
        assert c.get("/ready").status_code == 200
        assert health_s(c) < 1.0


def test_health_answers_within_a_second_while_hostile_files_arrive(app: VoiceqServer) -> None:
    """Hostile uploads, a few at a time, while /health is asked every 0.1 s: it never waits."""
    hostile = [CASES[n][0] for n in HOSTILE_UPLOADS] + [CASES["too long"][0], CASES["wav with 64 channels"][0]]
    latencies: list[float] = []
    def send(req: Callable[[httpx.Client], httpx.Response]) -> int:
        with app.client(timeout=60) as own:
            return req(own).status_code

    with app.client() as c, ThreadPoolExecutor(4) as pool:
        codes = [pool.submit(send, req) for req in hostile]
        while not all(f.done() for f in codes):
            latencies.append(health_s(c))
            time.sleep(0.1)
        assert all(400 <= f.result() < 500 for f in codes), [f.result() for f in codes]
    assert latencies and max(latencies) < 1.0, max(latencies)


def test_a_hostile_file_name_never_becomes_a_storage_path(app: VoiceqServer) -> None:
    assert app.settings is not None
    data_dir = Path(app.settings.data_dir)
    with app.client() as c:
        r = c.post(f"{API}/clone", data=GOOD, files={"audio_file": ("../../../../tmp/evil.wav", WAV, "audio/wav")})
    assert r.status_code == 200, r.text
    job_id = r.json()["jobId"]
    names = [p.name for p in (data_dir / "blobs").rglob("*") if p.is_file()]
    assert f"{job_id}.wav" in names and not any("evil" in n for n in names)
    assert not Path("/tmp/evil.wav").exists()
