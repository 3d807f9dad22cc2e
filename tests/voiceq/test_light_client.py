"""The light client without a server: stable error codes (seed-shaped and OpenAI-shaped
bodies), Retry-After honoured (blocking and asyncio), and advice chosen by code."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from voiceq_client import cli as light_cli
from voiceq_client.aio import AsyncVoiceqClient
from voiceq_client.client import ApiError, ApiUnreachable, VoiceqClient, WaitTimeout
from voiceq_client.present import troubleshooting

JOB = "3f2a1b4c-0000-4000-8000-000000000001"
STATUS = {"jobId": JOB, "status": "completed", "attempts": 1, "maxAttempts": 3}


def answering(answers: list[httpx.Response]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)
    return httpx.MockTransport(handle), seen


def test_errors_carry_the_servers_code_in_either_shape() -> None:
    transport, _ = answering([
        httpx.Response(404, json={"success": False, "error": "no voice with id 'v'", "code": "voice_not_found"}),
        httpx.Response(404, json={"error": {"message": "no voice", "type": "invalid_request_error", "param": None,
                                            "code": "voice_not_found"}}),
        httpx.Response(503, json={"success": False, "error": "Job store not reachable: check the disk"}),
    ])
    client = VoiceqClient("http://t", transport=transport, retries=0)
    for message in ("no voice with id 'v'", "no voice"):
        with pytest.raises(ApiError) as err:
            client.status(JOB)
        assert err.value.code == "voice_not_found" and err.value.message == message
    with pytest.raises(ApiError) as old:
        client.status(JOB)
    assert old.value.code == "service_unavailable"  # a server without codes: the status's code


def test_retry_after_is_waited_out_then_the_answer_returned() -> None:
    slept: list[float] = []
    transport, seen = answering([httpx.Response(429, headers={"Retry-After": "3"}, json={"code": "rate_limited"}),
                                 httpx.Response(503, headers={"Retry-After": "1"}, json={"code": "queue_full"}),
                                 httpx.Response(200, json=STATUS)])
    client = VoiceqClient("http://t", transport=transport, sleep=slept.append)
    assert client.status(JOB).status == "completed"
    assert slept == [3.0, 1.0] and len(seen) == 3
    # A wait longer than the client accepts is reported, not slept through.
    transport, _ = answering([httpx.Response(429, headers={"Retry-After": "3600"}, json={"code": "rate_limited"})])
    with pytest.raises(ApiError) as err:
        VoiceqClient("http://t", transport=transport, sleep=slept.append).status(JOB)
    assert err.value.code == "rate_limited" and err.value.retry_after_s == 3600.0 and slept == [3.0, 1.0]


def test_the_async_client_honours_retry_after_and_waits_for_the_job() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    answers = [httpx.Response(503, headers={"Retry-After": "2"}, json={"code": "store_unavailable"}),
               httpx.Response(200, json={**STATUS, "status": "processing"}), httpx.Response(200, json=STATUS)]

    async def handle(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    async def scenario() -> str:
        async with AsyncVoiceqClient("http://t", transport=httpx.MockTransport(handle), sleep=sleep) as client:
            return (await client.wait(JOB, interval_s=0.01)).status
    assert asyncio.run(scenario()) == "completed"
    assert slept[0] == 2.0


def test_advice_follows_the_code_not_the_wording() -> None:
    reworded = ApiError(503, "the database is having a moment", {"code": "store_unavailable"})
    assert troubleshooting(reworded)[0] == '"Job store not reachable"'
    assert troubleshooting(ApiUnreachable("http://x", "connection refused"))[0] == '"voiceq API not reachable"'
    assert troubleshooting(WaitTimeout(JOB, 5.0, None))[0] == '"Processing timeout"'
    assert troubleshooting(ApiError(401, "who are you", {"code": "unauthorized"}))[0] == '"API key required"'
    assert troubleshooting(ApiError(404, "Job store not reachable", {"code": "job_not_found"})) == []


def test_new_commands_cancel_retry_download_voices(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    routes = {
        ("POST", f"/api/public/voice/onboarding/jobs/{JOB}/cancel"): httpx.Response(200, json={**STATUS, "status": "cancelled"}),
        ("POST", f"/api/public/voice/onboarding/jobs/{JOB}/retry"): httpx.Response(
            403, json={"success": False, "error": "operator retry needs an admin key", "code": "forbidden"}),
        ("GET", f"/api/public/voice/onboarding/jobs/{JOB}/audio"): httpx.Response(200, content=b"ID3audio"),
        ("GET", "/api/public/voice/onboarding/voices"): httpx.Response(200, json={"userId": "u1", "voices": [
            {"voiceId": "voice_0123456789abcdef", "userId": "u1", "name": "Narrator", "createdAt": 0.0,
             "models": ["chatterbox"]}]}),
    }
    transport = httpx.MockTransport(lambda request: routes[(request.method, request.url.path)])
    monkeypatch.setattr(light_cli, "VoiceqClient", lambda url, api_key=None: VoiceqClient(url, transport=transport))
    assert light_cli.main(["cancel", JOB]) == 0 and "cancelled" in capsys.readouterr().out
    assert light_cli.main(["retry", JOB]) == 2 and "admin key" in capsys.readouterr().err
    out = tmp_path / "a.mp3"
    assert light_cli.main(["download", JOB, "--out", str(out)]) == 0 and out.read_bytes() == b"ID3audio"
    capsys.readouterr()
    assert light_cli.main(["voices", "--user", "u1"]) == 0
    listed = capsys.readouterr().out
    assert "voice_0123456789abcdef" in listed and "Narrator" in listed
