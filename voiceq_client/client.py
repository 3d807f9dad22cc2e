"""A small typed HTTP client for the voiceq API (the seed's routes plus stats, listing, voices,
health and OpenAI-style speech). httpx only: no Ray, no torch (the light `voiceq-client`
distribution in clients/python).

Used by the `voiceq` CLI and by `test_voice_cloning_queue.py`. Every failure surfaces as a
`ClientError` with a stable `code`: `ApiError` carries the server's `error` message, its `code`
(e.g. `voice_not_found`, `queue_full`) and HTTP status, `ApiUnreachable` says which URL could
not be reached (`unreachable`), `WaitTimeout` carries the last status seen (`timeout`).
A 429 or 503 that carries `Retry-After` is retried after that delay (`retries` times).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import httpx

API_PREFIX = "/api/public/voice/onboarding"
DEFAULT_API_URL = "http://localhost:8000"
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
_DATA_URI_PREFIX = "data:audio/mp3;base64,"
# Statuses whose Retry-After the client waits out before asking again (backpressure and
# short outages: the server stored nothing for the refused request).
RETRY_STATUSES = frozenset({429, 503})
# Servers that predate the `code` field: the code an error status stands for.
_CODE_BY_STATUS = {400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                   405: "method_not_allowed", 409: "invalid_transition", 410: "result_gone",
                   413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input",
                   429: "rate_limited", 500: "internal_error", 503: "service_unavailable", 504: "timeout"}


# --- errors ---------------------------------------------------------------------------------


class ClientError(Exception):
    """Anything that kept a client call from giving an answer; `code` says which kind."""

    code = "client_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiUnreachable(ClientError):
    """No HTTP answer at all: refused, DNS failure, or no answer within the timeout."""

    code = "unreachable"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"voiceq API not reachable at {url}: {reason}")
        self.url = url
        self.reason = reason


class ApiError(ClientError):
    """The API answered with an error status; `message` is the server's `error` text."""

    def __init__(self, status_code: int, message: str, body: Mapping[str, Any] | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body: dict[str, Any] = dict(body or {})
        self.retry_after_s = retry_after_s

    @property
    def code(self) -> str:  # type: ignore[override]
        """The server's stable error code (seed-shaped or OpenAI-shaped body), or for servers
        that predate codes, the one the HTTP status stands for."""
        code = self.body.get("code")
        nested = self.body.get("error")
        if not isinstance(code, str) and isinstance(nested, Mapping):
            code = nested.get("code")
        return code if isinstance(code, str) and code else _CODE_BY_STATUS.get(self.status_code, "http_error")

    @property
    def job_id(self) -> str | None:
        """The job an error is about, when the server names one (dev-mode 504/503/500)."""
        value = self.body.get("jobId")
        return value if isinstance(value, str) else None

    @property
    def transient(self) -> bool:
        """Worth asking again later: the server is overloaded or a store blinked."""
        return self.status_code in (429, 502, 503, 504)

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {self.message}"


class WaitTimeout(ClientError):
    code = "timeout"

    def __init__(self, job_id: str, timeout_s: float, last: JobState | None) -> None:
        where = f"still {last.status}" if last is not None else "no status seen"
        super().__init__(f"Processing timeout: job {job_id} did not finish within {timeout_s:g} s ({where})")
        self.job_id = job_id
        self.timeout_s = timeout_s
        self.last = last


# --- answers --------------------------------------------------------------------------------


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Submitted:
    """The answer to a clone request: `completed` with the sample (development, 200) or queued
    (production, 202) with a status URL to poll."""

    job_id: str
    http_status: int
    status: str  # "completed" or "queued"
    status_url: str | None
    voice_id: str | None = None
    voice_name: str | None = None
    processing_time: float | None = None
    sample_audio: bytes | None = None
    latency_s: float = 0.0
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @classmethod
    def from_response(cls, http_status: int, body: Mapping[str, Any], latency_s: float) -> Submitted:
        job_id = _str(body.get("jobId"))
        if not job_id:
            raise ApiError(http_status, "the API answered without a jobId", body)
        audio = None
        sample = _str(body.get("sample_audio"))
        if sample is not None:
            audio = decode_data_uri(sample)
        return cls(
            job_id=job_id,
            http_status=http_status,
            status="completed" if http_status == 200 else str(body.get("status") or "queued"),
            status_url=_str(body.get("statusUrl")),
            voice_id=_str(body.get("voice_id")),
            voice_name=_str(body.get("voice_name")),
            processing_time=_float(body.get("processingTime")),
            sample_audio=audio,
            latency_s=latency_s,
            body=dict(body),
        )


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a `data:audio/...;base64,` URI (MP3 by default, another format when asked)."""
    head, sep, payload = uri.partition(",")
    if not sep or not head.startswith("data:audio/") or not head.endswith(";base64"):
        raise ClientError(f"sample_audio is not a {_DATA_URI_PREFIX}... URI")
    try:
        return base64.b64decode(payload, validate=True)
    except ValueError as err:
        raise ClientError(f"sample_audio is not valid base64: {err}") from err


@dataclass(frozen=True)
class JobState:
    """One answer of the status route."""

    job_id: str
    status: str
    voice_name: str | None = None
    voice_id: str | None = None
    processing_time: float | None = None
    created_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    attempts: int = 0
    max_attempts: int | None = None
    error: str | None = None
    result_url: str | None = None
    next_attempt_at: float | None = None
    worker_info: dict[str, Any] | None = None
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def queue_wait_s(self) -> float | None:
        """Submission to claim, as the server's clock saw it."""
        if self.created_at is None or self.started_at is None:
            return None
        return max(0.0, self.started_at - self.created_at)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> JobState:
        job_id, status = _str(body.get("jobId")), _str(body.get("status"))
        if not job_id or not status:
            raise ClientError("the status route answered without jobId/status")
        worker = body.get("workerInfo")
        max_attempts = body.get("maxAttempts")
        return cls(
            job_id=job_id,
            status=status,
            voice_name=_str(body.get("voiceName")),
            voice_id=_str(body.get("voiceId")),
            processing_time=_float(body.get("processingTime")),
            created_at=_float(body.get("createdAt")),
            started_at=_float(body.get("startedAt")),
            completed_at=_float(body.get("completedAt")),
            attempts=_int(body.get("attempts")),
            max_attempts=_int(max_attempts) if max_attempts is not None else None,
            error=_str(body.get("error")),
            result_url=_str(body.get("resultUrl")),
            next_attempt_at=_float(body.get("nextAttemptAt")),
            worker_info=dict(worker) if isinstance(worker, Mapping) else None,
            body=dict(body),
        )


@dataclass(frozen=True)
class JobSummary:
    job_id: str
    status: str
    voice_name: str | None
    voice_id: str | None
    created_at: float | None
    completed_at: float | None
    processing_time: float | None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> JobSummary:
        return cls(
            job_id=str(body.get("jobId")),
            status=str(body.get("status")),
            voice_name=_str(body.get("voiceName")),
            voice_id=_str(body.get("voiceId")),
            created_at=_float(body.get("createdAt")),
            completed_at=_float(body.get("completedAt")),
            processing_time=_float(body.get("processingTime")),
        )


@dataclass(frozen=True)
class Stats:
    """The stats route: the seed's monitoring numbers, overall or for one user."""

    user_id: str | None
    total: int
    by_status: dict[str, int]
    avg_processing_time: float | None
    gpu_hours: float
    gpu_hourly_price: float | None
    estimated_cost: float | None
    audio_seconds_generated: float | None
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Stats:
        by_status = body.get("byStatus")
        return cls(
            user_id=_str(body.get("userId")),
            total=_int(body.get("total")),
            by_status={str(k): _int(v) for k, v in by_status.items()} if isinstance(by_status, Mapping) else {},
            avg_processing_time=_float(body.get("avgProcessingTime")),
            gpu_hours=_float(body.get("gpuHours")) or 0.0,
            gpu_hourly_price=_float(body.get("gpuHourlyPrice")),
            estimated_cost=_float(body.get("estimatedCost")),
            audio_seconds_generated=_float(body.get("audioSecondsGenerated")),
            body=dict(body),
        )


@dataclass(frozen=True)
class VoiceInfo:
    """One voice of the library."""

    voice_id: str
    user_id: str | None
    name: str | None
    created_at: float | None
    models: tuple[str, ...] = ()
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> VoiceInfo:
        models = body.get("models")
        return cls(voice_id=str(body.get("voiceId") or body.get("id")), user_id=_str(body.get("userId")),
                   name=_str(body.get("name")), created_at=_float(body.get("createdAt")),
                   models=tuple(str(m) for m in models) if isinstance(models, list) else (), body=dict(body))


@dataclass(frozen=True)
class Readiness:
    """The readiness route: overall status and one entry per checked component. 503 is an
    answer here, not an error: it says which component is down."""

    http_status: int
    status: str
    checks: dict[str, Any]
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.http_status == 200 and self.status == "ok"


# --- what each call sends (pure), shared by the blocking and the asyncio client ----------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    ok: tuple[int, ...] = (200,)
    timeout_s: float | None = None
    follow_redirects: bool = False


def submit_call(audio: Path | bytes | None, *, user_id: str, voice_name: str, sample_text: str | None = None,
                voice_id: str | None = None, priority: int | None = None, idempotency_key: str | None = None,
                filename: str | None = None, timeout_s: float | None = None, model: str | None = None,
                language: str | None = None, response_format: str | None = None) -> Call:
    data: dict[str, str] = {"user_id": user_id, "voice_name": voice_name}
    optional = {"model": model, "language": language, "sample_text": sample_text, "voice_id": voice_id,
                "priority": None if priority is None else str(priority), "response_format": response_format}
    data.update({k: v for k, v in optional.items() if v is not None})
    files = None
    if audio is not None:
        if isinstance(audio, Path):
            content, name = audio.read_bytes(), filename or audio.name
        else:
            content, name = audio, filename or "voice.wav"
        files = {"audio_file": (name, content, "application/octet-stream")}
    elif voice_id is None:
        raise ValueError("give an audio file or a voice_id")
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    return Call("POST", f"{API_PREFIX}/clone", {"data": data, "files": files, "headers": headers},
                ok=(200, 202), timeout_s=timeout_s)


def jobs_call(user_id: str, *, status: str | None = None, limit: int | None = None) -> Call:
    params: dict[str, str | int] = {"user_id": user_id}
    if status is not None:
        params["status"] = status
    if limit is not None:
        params["limit"] = limit
    return Call("GET", f"{API_PREFIX}/jobs", {"params": params})


def voices_call(user_id: str, *, limit: int | None = None) -> Call:
    params: dict[str, str | int] = {"user_id": user_id}
    if limit is not None:
        params["limit"] = limit
    return Call("GET", f"{API_PREFIX}/voices", {"params": params})


def speech_call(text: str, *, voice_id: str, model: str = "tts-1", response_format: str = "mp3",
                speed: float | None = None, timeout_s: float | None = None) -> Call:
    body: dict[str, Any] = {"model": model, "input": text, "voice": voice_id, "response_format": response_format}
    if speed is not None:
        body["speed"] = speed
    return Call("POST", "/v1/audio/speech", {"json": body}, timeout_s=timeout_s)


def status_call(job_id: str) -> Call:
    return Call("GET", f"{API_PREFIX}/jobs/{job_id}/status")


def audio_call(job_id: str, timeout_s: float | None = None) -> Call:
    # Follows the redirect to a presigned storage URL when there is one (httpx drops the
    # Authorization header when a redirect leaves the API's origin).
    return Call("GET", f"{API_PREFIX}/jobs/{job_id}/audio", follow_redirects=True, timeout_s=timeout_s)


def parse_json(response: httpx.Response, call: Call) -> tuple[int, dict[str, Any]]:
    if response.status_code not in call.ok:
        raise error_from_response(response)
    try:
        body = response.json()
    except ValueError:
        raise ApiError(response.status_code, f"expected JSON from {call.path}, got {_snippet(response)}") from None
    if not isinstance(body, dict):
        raise ApiError(response.status_code, f"expected a JSON object from {call.path}")
    return response.status_code, body


def parse_voices(body: Mapping[str, Any]) -> list[VoiceInfo]:
    voices = body.get("voices")
    return [VoiceInfo.from_body(v) for v in voices if isinstance(v, Mapping)] if isinstance(voices, list) else []


def parse_jobs(body: Mapping[str, Any]) -> list[JobSummary]:
    jobs = body.get("jobs")
    return [JobSummary.from_body(j) for j in jobs if isinstance(j, Mapping)] if isinstance(jobs, list) else []


def parse_ready(status: int, body: Mapping[str, Any]) -> Readiness:
    checks = body.get("checks")
    return Readiness(http_status=status, status=str(body.get("status", "")),
                     checks=dict(checks) if isinstance(checks, Mapping) else {}, body=dict(body))


@dataclass
class PollPace:
    """When to ask again while polling: the interval grows by `backoff` while nothing changes
    and starts again from `interval_s` when the status or attempt count changes; up to
    `max_transient_errors` consecutive 429/5xx or unreachable answers are waited out."""

    interval_s: float = 0.5
    max_interval_s: float = 5.0
    backoff: float = 1.5
    max_transient_errors: int = 5
    delay: float = 0.0
    errors: int = 0
    last: JobState | None = None

    def __post_init__(self) -> None:
        self.delay = self.interval_s

    def failed(self, err: ClientError) -> None:
        """A poll that got no status; re-raises what is not worth waiting out."""
        if isinstance(err, ApiError) and not err.transient:
            raise err
        if not isinstance(err, (ApiError, ApiUnreachable)):
            raise err
        self.errors += 1
        if self.errors > self.max_transient_errors:
            raise err

    def seen(self, state: JobState) -> None:
        changed = self.last is None or (state.status, state.attempts) != (self.last.status, self.last.attempts)
        self.errors = 0
        self.last = state
        self.delay = self.interval_s if changed else min(self.max_interval_s, self.delay * self.backoff)


# --- the client -----------------------------------------------------------------------------


class VoiceqClient:
    """Blocking client. `api_key` is sent as `Authorization: Bearer <key>` (never logged).
    A 429 or 503 with `Retry-After` is asked again after that delay, up to `retries` times
    and `max_retry_wait_s` per wait (0 retries: report it at once)."""

    def __init__(self, base_url: str = DEFAULT_API_URL, *, api_key: str | None = None,
                 timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None,
                 retries: int = 2, max_retry_wait_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_retry_wait_s = max_retry_wait_s
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s,
                                  transport=transport)

    def __enter__(self) -> VoiceqClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, timeout_s: float | None = None,
                 follow_redirects: bool = False, **kwargs: Any) -> httpx.Response:
        timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, timeout=timeout, follow_redirects=follow_redirects,
                                              **kwargs)
            except httpx.TransportError as err:
                raise unreachable(self.base_url, err, self.timeout_s if timeout_s is None else timeout_s) from err
            wait = retry_after_s(response) if response.status_code in RETRY_STATUSES else None
            if wait is None or attempt == self.retries or wait > self.max_retry_wait_s:
                return response
            self._sleep(wait)
        raise AssertionError("unreachable")

    def _send(self, call: Call) -> httpx.Response:
        return self._request(call.method, call.path, timeout_s=call.timeout_s,
                             follow_redirects=call.follow_redirects, **call.kwargs)

    def _json(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> tuple[int, dict[str, Any]]:
        call = Call(method, path, kwargs, ok=ok)
        return parse_json(self._send(call), call)

    def _call_json(self, call: Call) -> tuple[int, dict[str, Any]]:
        return parse_json(self._send(call), call)

    # --- the API ----------------------------------------------------------------------------

    def submit(self, audio: Path | bytes | None, *, user_id: str, voice_name: str, sample_text: str | None = None,
               voice_id: str | None = None, priority: int | None = None, idempotency_key: str | None = None,
               filename: str | None = None, timeout_s: float | None = None, model: str | None = None,
               language: str | None = None, response_format: str | None = None) -> Submitted:
        """POST the clone form. In development the server answers when the job is done, so
        `timeout_s` must cover the whole job. `model` and `language` pick a member of the
        Chatterbox family (the server's default: chatterbox, English); `response_format` the
        result's audio format (default MP3)."""
        call = submit_call(audio, user_id=user_id, voice_name=voice_name, sample_text=sample_text,
                           voice_id=voice_id, priority=priority, idempotency_key=idempotency_key, filename=filename,
                           timeout_s=timeout_s, model=model, language=language, response_format=response_format)
        started = time.monotonic()
        status, body = self._call_json(call)
        return Submitted.from_response(status, body, latency_s=time.monotonic() - started)

    def status(self, job_id: str) -> JobState:
        return JobState.from_body(self._call_json(status_call(job_id))[1])

    def poll(self, job_id: str, *, timeout_s: float = 600.0, interval_s: float = 0.5, max_interval_s: float = 5.0,
             backoff: float = 1.5, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic, max_transient_errors: int = 5) -> Iterator[JobState]:
        """Yield the job's status after every poll until it is final (the last value yielded)
        or `timeout_s` passes (`WaitTimeout`); see `PollPace` for the pacing."""
        deadline = clock() + timeout_s
        pace = PollPace(interval_s, max_interval_s, backoff, max_transient_errors)
        while True:
            try:
                state: JobState | None = self.status(job_id)
            except ClientError as err:
                pace.failed(err)
                state = None
            if state is not None:
                pace.seen(state)
                yield state
                if state.terminal:
                    return
            remaining = deadline - clock()
            if remaining <= 0:
                raise WaitTimeout(job_id, timeout_s, pace.last)
            sleep(min(pace.delay, remaining))

    def wait(self, job_id: str, *, timeout_s: float = 600.0, on_progress: Callable[[JobState], None] | None = None,
             **poll_options: Any) -> JobState:
        """Poll until the job is final; returns that state (completed, failed or cancelled)."""
        final: JobState | None = None
        for state in self.poll(job_id, timeout_s=timeout_s, **poll_options):
            if on_progress is not None:
                on_progress(state)
            final = state
        assert final is not None  # poll() yields at least once or raises
        return final

    def result_audio(self, job_id: str, *, timeout_s: float | None = None) -> bytes:
        """The finished audio (MP3 unless the job asked for another format)."""
        response = self._send(audio_call(job_id, timeout_s))
        if response.status_code != 200:
            raise error_from_response(response)
        return response.content

    def cancel(self, job_id: str) -> JobState:
        return JobState.from_body(self._json("POST", f"{API_PREFIX}/jobs/{job_id}/cancel")[1])

    def retry(self, job_id: str) -> JobState:
        """Put a failed job back in the queue (admin keys)."""
        return JobState.from_body(self._json("POST", f"{API_PREFIX}/jobs/{job_id}/retry")[1])

    def jobs(self, user_id: str, *, status: str | None = None, limit: int | None = None) -> list[JobSummary]:
        return parse_jobs(self._call_json(jobs_call(user_id, status=status, limit=limit))[1])

    def voices(self, user_id: str, *, limit: int | None = None) -> list[VoiceInfo]:
        return parse_voices(self._call_json(voices_call(user_id, limit=limit))[1])

    def speech(self, text: str, *, voice_id: str, model: str = "tts-1", response_format: str = "mp3",
               speed: float | None = None, timeout_s: float | None = None) -> Iterator[bytes]:
        """OpenAI-style speech in a voice of the library: the audio's bytes as they are made."""
        call = speech_call(text, voice_id=voice_id, model=model, response_format=response_format, speed=speed,
                           timeout_s=timeout_s)
        timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s
        try:
            with self._http.stream(call.method, call.path, timeout=timeout, **call.kwargs) as response:
                if response.status_code != 200:
                    response.read()
                    raise error_from_response(response)
                yield from response.iter_bytes()
        except httpx.TransportError as err:
            raise unreachable(self.base_url, err, self.timeout_s if timeout_s is None else timeout_s) from err

    def stats(self, user_id: str | None = None) -> Stats:
        params = {"user_id": user_id} if user_id else None
        _, body = self._json("GET", f"{API_PREFIX}/stats", params=params)
        return Stats.from_body(body)

    def health(self) -> dict[str, Any]:
        """Liveness: raises unless the API answers 200."""
        return self._json("GET", "/health")[1]

    def ready(self) -> Readiness:
        return parse_ready(*self._json("GET", "/ready", ok=(200, 503)))


# --- helpers --------------------------------------------------------------------------------


def error_from_response(response: httpx.Response) -> ApiError:
    body: dict[str, Any] = {}
    message = ""
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
            error = parsed.get("error")
            message = str((error if isinstance(error, str) else "") or parsed.get("message") or parsed.get("detail") or "")
    except ValueError:
        pass
    if not message and isinstance(body.get("error"), Mapping):  # OpenAI's shape
        message = str(body["error"].get("message") or "")
    if not message:
        message = _snippet(response) or response.reason_phrase or "error"
    return ApiError(response.status_code, message, body, retry_after_s=retry_after_s(response))


def _snippet(response: httpx.Response, limit: int = 200) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "")


def unreachable(base_url: str, err: httpx.TransportError, timeout_s: float) -> ApiUnreachable:
    if isinstance(err, httpx.ConnectError):
        return ApiUnreachable(base_url, _connect_reason(err))
    if isinstance(err, httpx.TimeoutException):
        return ApiUnreachable(base_url, f"no answer within {timeout_s:g} s ({type(err).__name__})")
    return ApiUnreachable(base_url, f"{type(err).__name__}: {err}")


def _connect_reason(err: httpx.ConnectError) -> str:
    text = str(err)
    if "refused" in text.lower():
        return "connection refused"
    return text or type(err).__name__


def retry_after_s(response: httpx.Response) -> float | None:
    """Seconds the server asked to wait (Retry-After in seconds), when it did."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
