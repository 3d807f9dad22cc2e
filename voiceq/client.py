"""A small typed HTTP client for the voiceq API (the seed's routes plus stats, listing, health).

Used by the `voiceq` CLI and by `test_voice_cloning_queue.py`. Every failure surfaces as a
`ClientError`: `ApiError` carries the server's `error` message and HTTP status, `ApiUnreachable`
says which URL could not be reached, `WaitTimeout` carries the last status seen.
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


# --- errors ---------------------------------------------------------------------------------


class ClientError(Exception):
    """Anything that kept a client call from giving an answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiUnreachable(ClientError):
    """No HTTP answer at all: refused, DNS failure, or no answer within the timeout."""

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
    if not uri.startswith(_DATA_URI_PREFIX):
        raise ClientError(f"sample_audio is not a {_DATA_URI_PREFIX}... URI")
    try:
        return base64.b64decode(uri[len(_DATA_URI_PREFIX):], validate=True)
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


# --- the client -----------------------------------------------------------------------------


class VoiceqClient:
    """Blocking client. `api_key` is sent as `Authorization: Bearer <key>` (never logged)."""

    def __init__(self, base_url: str = DEFAULT_API_URL, *, api_key: str | None = None,
                 timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
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
        try:
            return self._http.request(method, path, timeout=timeout, follow_redirects=follow_redirects, **kwargs)
        except httpx.ConnectError as err:
            raise ApiUnreachable(self.base_url, _connect_reason(err)) from err
        except httpx.TimeoutException as err:
            limit = self.timeout_s if timeout_s is None else timeout_s
            raise ApiUnreachable(self.base_url, f"no answer within {limit:g} s ({type(err).__name__})") from err
        except httpx.TransportError as err:
            raise ApiUnreachable(self.base_url, f"{type(err).__name__}: {err}") from err

    def _json(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response = self._request(method, path, **kwargs)
        if response.status_code not in ok:
            raise error_from_response(response)
        try:
            body = response.json()
        except ValueError:
            raise ApiError(response.status_code, f"expected JSON from {path}, got {_snippet(response)}") from None
        if not isinstance(body, dict):
            raise ApiError(response.status_code, f"expected a JSON object from {path}")
        return response.status_code, body

    # --- the API ----------------------------------------------------------------------------

    def submit(
        self,
        audio: Path | bytes | None,
        *,
        user_id: str,
        voice_name: str,
        sample_text: str | None = None,
        voice_id: str | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        filename: str | None = None,
        timeout_s: float | None = None,
        model: str | None = None,
        language: str | None = None,
    ) -> Submitted:
        """POST the clone form. In development the server answers when the job is done, so
        `timeout_s` must cover the whole job. `model` and `language` pick a member of the
        Chatterbox family (the server's default: chatterbox, English)."""
        data: dict[str, str] = {"user_id": user_id, "voice_name": voice_name}
        if model is not None:
            data["model"] = model
        if language is not None:
            data["language"] = language
        if sample_text is not None:
            data["sample_text"] = sample_text
        if voice_id is not None:
            data["voice_id"] = voice_id
        if priority is not None:
            data["priority"] = str(priority)
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
        started = time.monotonic()
        status, body = self._json("POST", f"{API_PREFIX}/clone", ok=(200, 202), data=data, files=files,
                                  headers=headers, timeout_s=timeout_s)
        return Submitted.from_response(status, body, latency_s=time.monotonic() - started)

    def status(self, job_id: str) -> JobState:
        _, body = self._json("GET", f"{API_PREFIX}/jobs/{job_id}/status")
        return JobState.from_body(body)

    def poll(self, job_id: str, *, timeout_s: float = 600.0, interval_s: float = 0.5, max_interval_s: float = 5.0,
             backoff: float = 1.5, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic, max_transient_errors: int = 5) -> Iterator[JobState]:
        """Yield the job's status after every poll until it is final (the last value yielded)
        or `timeout_s` passes (`WaitTimeout`). The interval grows by `backoff` while nothing
        changes and starts again from `interval_s` when the status or attempt count changes.
        Up to `max_transient_errors` consecutive 429/5xx or unreachable answers are waited out."""
        deadline = clock() + timeout_s
        delay = interval_s
        last: JobState | None = None
        errors = 0
        while True:
            try:
                state = self.status(job_id)
                errors = 0
            except (ApiUnreachable, ApiError) as err:
                if isinstance(err, ApiError) and not err.transient:
                    raise
                errors += 1
                if errors > max_transient_errors:
                    raise
                state = None
            if state is not None:
                changed = last is None or (state.status, state.attempts) != (last.status, last.attempts)
                last = state
                yield state
                if state.terminal:
                    return
                delay = interval_s if changed else min(max_interval_s, delay * backoff)
            remaining = deadline - clock()
            if remaining <= 0:
                raise WaitTimeout(job_id, timeout_s, last)
            sleep(min(delay, remaining))

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
        """The finished MP3, following the redirect to a presigned storage URL when there is one
        (httpx drops the Authorization header when a redirect leaves the API's origin)."""
        response = self._request("GET", f"{API_PREFIX}/jobs/{job_id}/audio", follow_redirects=True,
                                 timeout_s=timeout_s)
        if response.status_code != 200:
            raise error_from_response(response)
        return response.content

    def cancel(self, job_id: str) -> JobState:
        _, body = self._json("POST", f"{API_PREFIX}/jobs/{job_id}/cancel")
        return JobState.from_body(body)

    def jobs(self, user_id: str, *, status: str | None = None, limit: int | None = None) -> list[JobSummary]:
        params: dict[str, str | int] = {"user_id": user_id}
        if status is not None:
            params["status"] = status
        if limit is not None:
            params["limit"] = limit
        _, body = self._json("GET", f"{API_PREFIX}/jobs", params=params)
        jobs = body.get("jobs")
        return [JobSummary.from_body(j) for j in jobs if isinstance(j, Mapping)] if isinstance(jobs, list) else []

    def stats(self, user_id: str | None = None) -> Stats:
        params = {"user_id": user_id} if user_id else None
        _, body = self._json("GET", f"{API_PREFIX}/stats", params=params)
        return Stats.from_body(body)

    def health(self) -> dict[str, Any]:
        """Liveness: raises unless the API answers 200."""
        return self._json("GET", "/health")[1]

    def ready(self) -> Readiness:
        status, body = self._json("GET", "/ready", ok=(200, 503))
        checks = body.get("checks")
        return Readiness(http_status=status, status=str(body.get("status", "")),
                         checks=dict(checks) if isinstance(checks, Mapping) else {}, body=body)


# --- helpers --------------------------------------------------------------------------------


def error_from_response(response: httpx.Response) -> ApiError:
    body: dict[str, Any] = {}
    message = ""
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
            message = str(parsed.get("error") or parsed.get("message") or parsed.get("detail") or "")
    except ValueError:
        pass
    if not message:
        message = _snippet(response) or response.reason_phrase or "error"
    retry_after = response.headers.get("retry-after")
    return ApiError(response.status_code, message, body,
                    retry_after_s=float(retry_after) if retry_after and retry_after.isdigit() else None)


def _snippet(response: httpx.Response, limit: int = 200) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "")


def _connect_reason(err: httpx.ConnectError) -> str:
    text = str(err)
    if "refused" in text.lower():
        return "connection refused"
    return text or type(err).__name__
