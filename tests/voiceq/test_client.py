"""voiceq.client: against the real app (slow tests) and, for the polling and error logic,
against httpx's own in-memory transport."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.support.audio import decode_mp3, voice_file
from tests.support.server import VoiceqServer, free_port
from voiceq.client import (
    API_PREFIX,
    ApiError,
    ApiUnreachable,
    JobState,
    Submitted,
    VoiceqClient,
    WaitTimeout,
)

JOB_ID = "3f2a1b4c-0000-4000-8000-000000000001"


def status_body(status: str, attempts: int = 0, **extra: Any) -> dict[str, Any]:
    return {"jobId": JOB_ID, "status": status, "attempts": attempts, "maxAttempts": 3, "createdAt": 100.0,
            "startedAt": 102.5 if status != "pending" else None, **extra}


def scripted(answers: list[httpx.Response | Exception], **options: Any) -> tuple[VoiceqClient, list[httpx.Request]]:
    """A client whose transport answers the given responses in order (in memory, no server).
    It reports a 429/503 at once unless `retries` is given (the Retry-After tests do)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    options = {"retries": 0, **options}
    return VoiceqClient("http://voiceq.test", api_key="k-123", transport=httpx.MockTransport(handle), **options), seen


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --- without a server ---------------------------------------------------------------------


def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    with VoiceqClient(url) as client, pytest.raises(ApiUnreachable) as info:
        client.health()
    assert str(info.value).startswith(f"voiceq API not reachable at {url}")
    assert "refused" in str(info.value)


def test_http_errors_carry_the_servers_message_and_status() -> None:
    client, _ = scripted([
        httpx.Response(404, json={"success": False, "error": f"no job {JOB_ID}"}),
        httpx.Response(502, text="<html>Bad Gateway</html>"),
        httpx.Response(503, json={"success": False, "error": "Convex not reachable: check CONVEX_URL"},
                       headers={"Retry-After": "5"}),
    ])
    with client:
        with pytest.raises(ApiError) as info:
            client.status(JOB_ID)
        assert (info.value.status_code, info.value.message) == (404, f"no job {JOB_ID}")
        assert str(info.value) == f"HTTP 404: no job {JOB_ID}"
        assert not info.value.transient
        with pytest.raises(ApiError) as info:
            client.stats()
        assert info.value.status_code == 502 and "Bad Gateway" in info.value.message
        with pytest.raises(ApiError) as info:
            client.jobs("u1")
    assert info.value.transient and info.value.retry_after_s == 5
    assert info.value.message.startswith("Convex not reachable")


def test_the_api_key_is_sent_as_bearer_and_not_to_a_redirect_target_elsewhere() -> None:
    client, seen = scripted([
        httpx.Response(307, headers={"Location": "http://storage.test/bucket/result.mp3?sig=abc"}),
        httpx.Response(200, content=b"ID3mp3-bytes"),
    ])
    with client:
        assert client.result_audio(JOB_ID) == b"ID3mp3-bytes"
    assert seen[0].headers["authorization"] == "Bearer k-123"
    assert seen[0].url.path == f"{API_PREFIX}/jobs/{JOB_ID}/audio"
    assert seen[1].url.host == "storage.test"
    assert "authorization" not in seen[1].headers  # the presigned URL must not see the key


def test_submit_sends_the_seeds_form_fields_and_idempotency_key() -> None:
    client, seen = scripted([httpx.Response(202, json={"success": True, "jobId": JOB_ID, "status": "queued",
                                                       "statusUrl": f"{API_PREFIX}/jobs/{JOB_ID}/status"})])
    with client:
        result = client.submit(b"RIFF....", user_id="u1", voice_name="My Voice", sample_text="Hi there",
                               priority=3, idempotency_key="retry-1", filename="me.wav")
    assert result.job_id == JOB_ID and result.status == "queued" and not result.completed
    request = seen[0]
    assert request.headers["idempotency-key"] == "retry-1"
    body = request.read().decode("latin-1")
    for field, value in (("user_id", "u1"), ("voice_name", "My Voice"), ("sample_text", "Hi there"), ("priority", "3")):
        assert f'name="{field}"\r\n\r\n{value}\r\n' in body
    assert 'name="audio_file"; filename="me.wav"' in body


def test_a_development_answer_carries_the_decoded_sample() -> None:
    body = {"success": True, "jobId": JOB_ID, "voice_id": "voice_0123456789abcdef", "voice_name": "V",
            "sample_audio": "data:audio/mp3;base64,SUQzAAAA", "processingTime": 4.5}
    result = Submitted.from_response(200, body, latency_s=5.0)
    assert result.completed and result.sample_audio == b"ID3\x00\x00\x00"
    assert (result.voice_id, result.processing_time) == ("voice_0123456789abcdef", 4.5)


def test_polling_backs_off_while_nothing_changes_and_restarts_on_change() -> None:
    answers: list[httpx.Response | Exception] = [
        httpx.Response(200, json=status_body("pending")),
        httpx.Response(200, json=status_body("pending")),
        httpx.Response(200, json=status_body("pending")),
        httpx.Response(200, json=status_body("processing", attempts=1)),
        httpx.Response(503, json={"error": "Convex not reachable"}),  # a blip is waited out
        httpx.ConnectError("refused"),
        httpx.Response(200, json=status_body("completed", attempts=1, processingTime=6.0)),
    ]
    client, _ = scripted(answers)
    t = FakeTime()
    with client:
        states = list(client.poll(JOB_ID, timeout_s=100, interval_s=1.0, backoff=2.0, max_interval_s=3.0,
                                  sleep=t.sleep, clock=t.clock))
    assert [s.status for s in states] == ["pending", "pending", "pending", "processing", "completed"]
    assert t.sleeps == [1.0, 2.0, 3.0, 1.0, 1.0, 1.0]
    assert states[-1].terminal and states[-1].queue_wait_s == 2.5


def test_wait_times_out_with_the_last_status_seen() -> None:
    client, _ = scripted([httpx.Response(200, json=status_body("pending")) for _ in range(20)])
    t = FakeTime()
    with client, pytest.raises(WaitTimeout) as info:
        client.wait(JOB_ID, timeout_s=10, interval_s=1.0, backoff=1.5, sleep=t.sleep, clock=t.clock)
    assert info.value.last is not None and info.value.last.status == "pending"
    assert str(info.value).startswith(f"Processing timeout: job {JOB_ID} did not finish within 10 s")
    assert t.now == pytest.approx(10.0)


def test_polling_stops_at_once_on_a_client_error() -> None:
    client, seen = scripted([httpx.Response(404, json={"error": "no such job"})])
    with client, pytest.raises(ApiError):
        client.wait(JOB_ID, timeout_s=10, sleep=lambda s: None)
    assert len(seen) == 1


def test_readiness_503_is_an_answer_naming_the_failing_check() -> None:
    report = {"status": "unavailable", "environment": "production", "checks": {
        "job_store": {"status": "error", "message": "Convex not reachable", "action": "check CONVEX_URL"},
        "storage": {"status": "ok"}}}
    client, _ = scripted([httpx.Response(503, json=report)])
    with client:
        ready = client.ready()
    assert not ready.ok and ready.checks["job_store"]["message"] == "Convex not reachable"


# --- against the real app -------------------------------------------------------------------


def unique_user() -> str:
    return "client-" + uuid.uuid4().hex[:10]


@pytest.mark.slow
def test_development_clone_status_result_listing_and_stats(voiceq_server: VoiceqServer) -> None:
    voiceq_server.deploy(voiceq_server.settings_for(environment="development"))
    user = unique_user()
    with VoiceqClient(voiceq_server.url, timeout_s=60) as client:
        assert client.health()["status"] == "ok"
        ready = client.ready()
        assert ready.ok and ready.body["environment"] == "development"

        done = client.submit(voice_file("mp3", seconds=3.0), user_id=user, voice_name="Dev Voice",
                             sample_text="Hello there.", filename="me.mp3", timeout_s=300)
        assert done.completed and done.http_status == 200
        samples, rate = decode_mp3(done.sample_audio or b"")
        assert rate == 24_000 and len(samples) > 0

        state = client.status(done.job_id)
        assert (state.status, state.voice_id, state.voice_name) == ("completed", done.voice_id, "Dev Voice")
        assert state.queue_wait_s is not None and state.processing_time == done.processing_time
        assert client.result_audio(done.job_id) == done.sample_audio

        listed = client.jobs(user)
        assert [j.job_id for j in listed] == [done.job_id]
        assert client.jobs(user, status="failed") == []

        stats = client.stats(user)
        assert stats.user_id == user and stats.total == 1 and stats.by_status.get("completed") == 1
        assert stats.avg_processing_time == pytest.approx(state.processing_time)
        assert stats.gpu_hours == pytest.approx(state.processing_time / 3600)
        assert stats.estimated_cost == pytest.approx(stats.gpu_hours * 1.99, abs=1e-6)

        with pytest.raises(ApiError) as info:
            client.status(str(uuid.uuid4()))
        assert info.value.status_code == 404 and info.value.message
        with pytest.raises(ApiError) as info:
            client.submit(b"not audio at all", user_id=user, voice_name="Bad")
        assert info.value.status_code in (400, 415, 422) and "audio" in info.value.message.lower()


@pytest.mark.slow
def test_production_queue_then_wait_with_progress(voiceq_server: VoiceqServer) -> None:
    voiceq_server.deploy(voiceq_server.settings_for(environment="production"))
    user = unique_user()
    seen: list[JobState] = []
    with VoiceqClient(voiceq_server.url) as client:
        queued = client.submit(voice_file("wav", seconds=3.0, seed=5), user_id=user, voice_name="Prod Voice")
        assert queued.http_status == 202 and queued.status == "queued" and queued.sample_audio is None
        assert queued.status_url == f"{API_PREFIX}/jobs/{queued.job_id}/status"
        final = client.wait(queued.job_id, timeout_s=300, on_progress=seen.append, interval_s=0.3)
        assert final.status == "completed" and final.voice_id
        assert seen[-1] is final and all(s.job_id == queued.job_id for s in seen)
        assert all(not s.terminal for s in seen[:-1])
        samples, rate = decode_mp3(client.result_audio(queued.job_id))
        assert rate == 24_000 and len(samples) > 0
        assert json.loads(json.dumps(final.body))["workerInfo"]["environment"] == "production"
