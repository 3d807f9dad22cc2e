"""The seed's API end to end: real Serve app, real Ray cluster, real SQLite file, real Chatterbox
modules (random weights), driven over HTTP."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.audio import decode_mp3, voice_file
from tests.support.server import VoiceqServer, wait_until

API = "/api/public/voice/onboarding"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dev(voiceq_server: VoiceqServer) -> VoiceqServer:
    voiceq_server.deploy(voiceq_server.settings_for(environment="development"))
    return voiceq_server


def clone(client: httpx.Client, audio: bytes, *, name: str = "voice.wav", **fields: str) -> httpx.Response:
    data = {"user_id": "test123", "voice_name": "My Voice", **fields}
    return client.post(f"{API}/clone", data=data, files={"audio_file": (name, audio, "application/octet-stream")})


def assert_playable_mp3(data: bytes, *, min_seconds: float = 0.2) -> None:
    samples, rate = decode_mp3(data)
    assert rate == 24_000
    assert len(samples) / rate >= min_seconds
    assert float(abs(samples).max()) > 0.0


def test_development_clone_returns_the_cloned_sample_at_once(dev: VoiceqServer) -> None:
    with dev.client() as c:
        r = clone(c, voice_file("mp3", seconds=3.0, sample_rate=44_100, channels=2),
                  name="sample.mp3", sample_text="Hello, this is my cloned voice")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True
        assert body["voice_name"] == "My Voice"
        assert body["voice_id"].startswith("voice_")
        assert body["message"] == "Voice cloning completed successfully"
        assert body["processingTime"] > 0
        prefix = "data:audio/mp3;base64,"
        assert body["sample_audio"].startswith(prefix)
        mp3 = base64.b64decode(body["sample_audio"][len(prefix):])
        assert_playable_mp3(mp3)

        status = c.get(f"{API}/jobs/{body['jobId']}/status").json()
        assert status["status"] == "completed"
        assert status["voiceId"] == body["voice_id"]
        assert status["voiceName"] == "My Voice"
        assert status["workerInfo"] == {"environment": "development", "gpuType": "cpu"}
        assert status["completedAt"] >= status["createdAt"]
        assert status["processingTime"] == body["processingTime"]
        # The finished sample can be fetched again from the route the status names.
        audio = c.get(status["resultUrl"])
        assert audio.status_code == 200
        assert audio.headers["content-type"] == "audio/mpeg"
        assert audio.content == mp3


def test_a_cloned_voice_is_reused_by_id_without_reuploading(dev: VoiceqServer) -> None:
    with dev.client() as c:
        first = clone(c, voice_file("wav", seconds=2.5, seed=3)).json()
        again = c.post(f"{API}/clone", data={"user_id": "test123", "voice_name": "Again",
                                             "voice_id": first["voice_id"], "sample_text": "Second sentence."})
        assert again.status_code == 200, again.text
        assert again.json()["voice_id"] == first["voice_id"]
        assert_playable_mp3(base64.b64decode(again.json()["sample_audio"].split(",", 1)[1]))
        unknown = c.post(f"{API}/clone", data={"user_id": "u", "voice_name": "x", "voice_id": "voice_" + "0" * 16})
        assert unknown.status_code == 404
        assert "no voice" in unknown.json()["error"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_the_seeds_curl_commands_work(dev: VoiceqServer, tmp_path: Path) -> None:
    audio = tmp_path / "test.mp3"
    audio.write_bytes(voice_file("mp3", seconds=3.0))
    out = subprocess.run(
        ["curl", "-s", "-X", "POST", f"{dev.url}{API}/clone", "-F", f"audio_file=@{audio}",
         "-F", "user_id=test123", "-F", "voice_name=Test Voice"],
        check=True, capture_output=True, text=True, timeout=300,
    )
    body = httpx.Response(200, content=out.stdout).json()
    assert body["success"] is True and body["voice_name"] == "Test Voice"
    status = subprocess.run(["curl", "-s", f"{dev.url}{API}/jobs/{body['jobId']}/status"],
                            check=True, capture_output=True, text=True, timeout=60)
    assert httpx.Response(200, content=status.stdout).json()["status"] == "completed"


def poll_until_done(c: httpx.Client, job_id: str, timeout_s: float = 240) -> dict:
    def done() -> dict | None:
        body = c.get(f"{API}/jobs/{job_id}/status").json()
        return body if body["status"] in ("completed", "failed", "cancelled") else None

    return wait_until(done, timeout_s=timeout_s, interval_s=0.5, what=f"job {job_id} to finish")


def test_production_queues_and_the_status_url_reaches_completed(voiceq_server: VoiceqServer) -> None:
    voiceq_server.deploy(voiceq_server.settings_for(environment="production"))
    with voiceq_server.client() as c:
        r = clone(c, voice_file("flac", seconds=3.0, sample_rate=48_000))
        assert r.status_code == 202, r.text
        body = r.json()
        assert body == {
            "success": True,
            "jobId": body["jobId"],
            "status": "queued",
            "message": "Voice cloning job queued for processing",
            "statusUrl": f"{API}/jobs/{body['jobId']}/status",
        }
        status = poll_until_done(c, body["jobId"])
        assert status["status"] == "completed", status
        for key in ("jobId", "status", "voiceName", "voiceId", "processingTime", "createdAt", "completedAt",
                    "workerInfo"):
            assert status[key] is not None, key
        assert status["workerInfo"] == {"environment": "production", "gpuType": "cpu"}
        assert_playable_mp3(c.get(status["resultUrl"]).content)


def _kill_inference_replicas() -> int:
    import ray

    killed = 0
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if "VoiceCloneInference" in actor["name"]:
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
            killed += 1
    return killed


def test_a_restart_in_the_middle_of_the_queue_loses_no_job(voiceq_server: VoiceqServer, tmp_path: Path) -> None:
    settings = voiceq_server.settings_for(environment="production", data_dir=tmp_path / "data", lease_s=4.0,
                                          max_batch_size=2)
    voiceq_server.deploy(settings)
    with voiceq_server.client() as c:
        ids = [clone(c, voice_file("wav", seconds=2.0, seed=i), user_id=f"user{i}").json()["jobId"] for i in range(4)]

        # Kill the inference replica in the middle of a batch (no graceful shutdown)...
        wait_until(lambda: any(c.get(f"{API}/jobs/{j}/status").json()["status"] == "processing" for j in ids),
                   timeout_s=120, what="a job to be processing")
        assert _kill_inference_replicas() >= 1
        # ...then restart the whole application while jobs are still queued.
        voiceq_server.undeploy()
        voiceq_server.deploy(settings, force=True)

        finals = [poll_until_done(c, j, timeout_s=400) for j in ids]
    assert [f["status"] for f in finals] == ["completed"] * 4, finals
    # The jobs caught in the killed batch went back to the queue and ran again.
    assert max(f["attempts"] for f in finals) >= 2
    from voiceq.store.sqlite import SQLiteJobStore

    stats = SQLiteJobStore(settings.sqlite_path).stats()
    assert stats.by_status["completed"] == 4 and stats.total == 4
