"""The asyncio client: the same calls as `VoiceqClient`, awaited (httpx.AsyncClient).

    async with AsyncVoiceqClient("http://localhost:8000", api_key=KEY) as client:
        job = await client.submit(Path("voice.wav"), user_id="u1", voice_name="Me")
        final = await client.wait(job.job_id)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx

from .client import (DEFAULT_API_URL, RETRY_STATUSES, ApiError, Call, ClientError, JobState, JobSummary, PollPace,
                     Readiness, Stats, Submitted, VoiceInfo, WaitTimeout, audio_call, error_from_response,
                     jobs_call, parse_jobs, parse_json, parse_ready, parse_voices, retry_after_s, speech_call,
                     status_call, submit_call, unreachable, voices_call)
from .client import API_PREFIX


class AsyncVoiceqClient:
    """Like `VoiceqClient` (Retry-After honoured, the same errors and codes), for asyncio."""

    def __init__(self, base_url: str = DEFAULT_API_URL, *, api_key: str | None = None, timeout_s: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, retries: int = 2, max_retry_wait_s: float = 30.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_retry_wait_s = max_retry_wait_s
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)

    async def __aenter__(self) -> AsyncVoiceqClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        timeout = httpx.USE_CLIENT_DEFAULT if call.timeout_s is None else call.timeout_s
        for attempt in range(self.retries + 1):
            try:
                response = await self._http.request(call.method, call.path, timeout=timeout,
                                                     follow_redirects=call.follow_redirects, **call.kwargs)
            except httpx.TransportError as err:
                raise unreachable(self.base_url, err, call.timeout_s or self.timeout_s) from err
            wait = retry_after_s(response) if response.status_code in RETRY_STATUSES else None
            if wait is None or attempt == self.retries or wait > self.max_retry_wait_s:
                return response
            await self._sleep(wait)
        raise AssertionError("unreachable")

    async def _json(self, call: Call) -> tuple[int, dict[str, Any]]:
        return parse_json(await self._send(call), call)

    async def submit(self, audio: Path | bytes | None, *, user_id: str, voice_name: str, **options: Any) -> Submitted:
        started = time.monotonic()
        status, body = await self._json(submit_call(audio, user_id=user_id, voice_name=voice_name, **options))
        return Submitted.from_response(status, body, latency_s=time.monotonic() - started)

    async def status(self, job_id: str) -> JobState:
        return JobState.from_body((await self._json(status_call(job_id)))[1])

    async def wait(self, job_id: str, *, timeout_s: float = 600.0,
                   on_progress: Callable[[JobState], None] | None = None, interval_s: float = 0.5,
                   max_interval_s: float = 5.0, backoff: float = 1.5, max_transient_errors: int = 5) -> JobState:
        """Poll until the job is final (paced as `VoiceqClient.poll`); `WaitTimeout` after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        pace = PollPace(interval_s, max_interval_s, backoff, max_transient_errors)
        while True:
            try:
                state: JobState | None = await self.status(job_id)
            except ClientError as err:
                pace.failed(err)
                state = None
            if state is not None:
                pace.seen(state)
                if on_progress is not None:
                    on_progress(state)
                if state.terminal:
                    return state
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(job_id, timeout_s, pace.last)
            await self._sleep(min(pace.delay, remaining))

    async def result_audio(self, job_id: str, *, timeout_s: float | None = None) -> bytes:
        response = await self._send(audio_call(job_id, timeout_s))
        if response.status_code != 200:
            raise error_from_response(response)
        return response.content

    async def cancel(self, job_id: str) -> JobState:
        return JobState.from_body((await self._json(Call("POST", f"{API_PREFIX}/jobs/{job_id}/cancel")))[1])

    async def retry(self, job_id: str) -> JobState:
        return JobState.from_body((await self._json(Call("POST", f"{API_PREFIX}/jobs/{job_id}/retry")))[1])

    async def jobs(self, user_id: str, *, status: str | None = None, limit: int | None = None) -> list[JobSummary]:
        return parse_jobs((await self._json(jobs_call(user_id, status=status, limit=limit)))[1])

    async def voices(self, user_id: str, *, limit: int | None = None) -> list[VoiceInfo]:
        return parse_voices((await self._json(voices_call(user_id, limit=limit)))[1])

    async def speech(self, text: str, *, voice_id: str, model: str = "tts-1", response_format: str = "mp3",
                     speed: float | None = None, timeout_s: float | None = None) -> AsyncIterator[bytes]:
        """OpenAI-style speech: the audio's bytes as they are made."""
        call = speech_call(text, voice_id=voice_id, model=model, response_format=response_format, speed=speed,
                           timeout_s=timeout_s)
        timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s
        try:
            async with self._http.stream(call.method, call.path, timeout=timeout, **call.kwargs) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise error_from_response(response)
                async for piece in response.aiter_bytes():
                    yield piece
        except httpx.TransportError as err:
            raise unreachable(self.base_url, err, timeout_s or self.timeout_s) from err

    async def stats(self, user_id: str | None = None) -> Stats:
        call = Call("GET", f"{API_PREFIX}/stats", {"params": {"user_id": user_id} if user_id else None})
        return Stats.from_body((await self._json(call))[1])

    async def health(self) -> dict[str, Any]:
        return (await self._json(Call("GET", "/health")))[1]

    async def ready(self) -> Readiness:
        return parse_ready(*(await self._json(Call("GET", "/ready", ok=(200, 503)))))


__all__ = ["AsyncVoiceqClient", "ApiError", "ClientError"]
