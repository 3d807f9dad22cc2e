"""The OpenAI-compatible speech API on the real app (real Ray Serve, SQLite file, Chatterbox
modules with random weights), driven by the official `openai` client: every response format
decodes to the audio its jobs made, and a streamed response's first bytes arrive before the
request's last chunk is made. Then the light client, installed alone in a fresh virtual
environment, drives the same app. One app start for the whole module."""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.audio import voice_file
from tests.support.decode import decode_any
from tests.support.light_venv import make_light_venv
from tests.support.server import VoiceqServer, wait_until
from voiceq.audio_encode import FORMAT_NAMES

openai = pytest.importorskip("openai")

API = "/api/public/voice/onboarding"
KEY = "speech-openai-key-0123"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(voiceq_server: VoiceqServer, tmp_path_factory: pytest.TempPathFactory) -> VoiceqServer:
    voiceq_server.deploy(voiceq_server.settings_for(
        environment="production", auth="required", api_keys=f"speech:{KEY}",
        data_dir=tmp_path_factory.mktemp("openai-data"), max_speech_tokens=10, max_batch_size=8,
    ))
    return voiceq_server


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def make_voice(app: VoiceqServer, user: str) -> str:
    with app.client() as c:
        made = c.post(f"{API}/clone", headers=auth(), data={"user_id": user, "voice_name": "Reader"},
                      files={"audio_file": ("v.wav", voice_file("wav", seconds=1.5), "audio/wav")})
        assert made.status_code == 202, made.text
        done = wait_until(lambda: (b := status(c, made.json()["jobId"]))["status"] in ("completed", "failed") and b,
                          timeout_s=300, interval_s=0.5, what="the voice's clone job")
    assert done["status"] == "completed", done
    return done["voiceId"]


def status(c: httpx.Client, job_id: str) -> dict[str, Any]:
    return c.get(f"{API}/jobs/{job_id}/status", headers=auth()).json()


def client(app: VoiceqServer) -> Any:
    return openai.OpenAI(api_key=KEY, base_url=f"{app.url}/v1", timeout=300, max_retries=0)


@pytest.fixture(scope="module")
def voice_id(app: VoiceqServer) -> str:
    return make_voice(app, "openai-reader")


def test_every_format_decodes_to_the_audio_its_job_made(app: VoiceqServer, voice_id: str) -> None:
    with client(app) as oai:
        every_format_decodes(app, oai, voice_id)


def every_format_decodes(app: VoiceqServer, oai: Any, voice_id: str) -> None:

    def speak(fmt: str) -> tuple[str, bytes, str]:
        audio = oai.audio.speech.create(model="tts-1", voice=voice_id, input="Hello from the speech route.",
                                        response_format=fmt)
        return fmt, audio.content, audio.response.headers["x-voiceq-first-job"]

    # All six at once: they ride in the same batches.
    with ThreadPoolExecutor(len(FORMAT_NAMES)) as pool:
        results = list(pool.map(speak, FORMAT_NAMES))
    with app.client() as c:
        for fmt, data, job_id in results:
            job = status(c, job_id)
            assert job["status"] == "completed" and job["userId"] == "openai-reader", job
            samples, rate = decode_any(data, fmt)
            # Lossy codecs pad a frame or two (ADTS aac: 2048 samples of priming and padding that
            # its header cannot mark); the lossless ones are exact.
            assert abs(len(samples) / rate - job["audioSeconds"]) < (0.002 if fmt in ("wav", "pcm", "flac") else 0.1), (
                fmt, len(samples) / rate, job["audioSeconds"])
            assert float(abs(samples).max()) > 0.0
        stats = c.get(f"{API}/stats", headers=auth(), params={"user_id": "openai-reader"}).json()
        assert stats["completed"] >= 1 + len(FORMAT_NAMES) and stats["gpuSeconds"] > 0  # jobs like any other

    models = [m.id for m in oai.models.list().data]
    assert "chatterbox" in models and "tts-1" in models
    with pytest.raises(openai.NotFoundError) as missing:
        oai.audio.speech.create(model="tts-1", voice="voice_" + "0" * 16, input="Hi.")
    assert missing.value.code == "voice_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        oai.audio.speech.create(model="tts-1", voice=voice_id, input="Hi.", speed=9.0)
    assert bad.value.param == "speed"


def test_streamed_audio_starts_before_the_last_chunk_is_made(app: VoiceqServer, voice_id: str) -> None:
    text = ("The first sentence arrives first. " + "Then comes a second, much longer sentence that fills a chunk. " * 3
            + "And the third part of the text ends it.")
    first_bytes_at: float | None = None
    received = b""
    started = time.time()
    with client(app) as oai, oai.audio.speech.with_streaming_response.create(
            model="tts-1", voice=voice_id, input=text, response_format="pcm") as response:
        first_job = response.headers["x-voiceq-first-job"]
        chunks = int(response.headers["x-voiceq-chunks"])
        for piece in response.iter_bytes():
            if piece and first_bytes_at is None:
                first_bytes_at = time.time()
            received += piece
    assert chunks >= 2 and first_bytes_at is not None
    with app.client() as c:
        mine = c.get(f"{API}/jobs", headers=auth(), params={"user_id": "openai-reader", "limit": 100}).json()["jobs"]
        parts = [status(c, j["jobId"]) for j in mine if j["createdAt"] >= started - 1]
    assert len(parts) == chunks and first_job in {p["jobId"] for p in parts}
    last_made = max(p["completedAt"] for p in parts)
    assert first_bytes_at < last_made, (first_bytes_at, last_made)
    expected = sum(p["audioSeconds"] for p in parts) + 0.15 * (chunks - 1)
    assert abs(len(decode_any(received, "pcm")[0]) / 24_000 - expected) < 0.01


def test_the_light_client_drives_the_app_without_ray_or_torch(app: VoiceqServer, voice_id: str, tmp_path: Path) -> None:
    python = make_light_venv(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    ran = subprocess.run([str(python), str(Path(__file__).parents[1] / "support" / "light_client_driver.py"),
                          app.url, KEY, voice_id, "openai-reader", str(out)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report["imported"] == [] and report["installed"] == [], report  # no ray, torch, numpy or server code
    assert str(tmp_path / "venv") in report["client_file"]  # the installed wheel, not the source tree
    assert voice_id in report["voices"] and report["status"] == report["async_status"] == "completed"
    assert report["speech_bytes"] > 0
    assert decode_any((out / "result.wav").read_bytes(), "wav")[0].size > 0
    cli = subprocess.run([str(python.parent / "voiceq"), "--api-url", app.url, "--api-key", KEY, "voices",
                          "--user", "openai-reader"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert cli.returncode == 0 and voice_id in cli.stdout, cli.stderr
