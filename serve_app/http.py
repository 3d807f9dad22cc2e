"""The seed's HTTP API as a Starlette app, over a small `Backend` interface.

The ingress deployment supplies a backend made of Serve handles; the routes here only parse,
validate, call the backend and shape responses.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voiceq.audio_encode import result_format
from voiceq.errors import (
    BlobNotFound,
    InvalidInput,
    InvalidTransition,
    JobNotFound,
    QueueFull,
    ServiceUnavailable,
    StorageUnavailable,
    StoreUnavailable,
    VoiceNotFound,
    VoiceqError,
)
from voiceq.jobs import Job, JobStatus
from voiceq.manager import Submission
from voiceq.queue_wait import QueuePlace
from voiceq.settings import Settings
from voiceq.store import JobStats

from . import responses
from .auth import Forbidden, Keyring, Principal, Unauthorized, can_see, owner_of, require_admin
from .responses import API_PREFIX
from .family import build_conversion, conversion_form
from .health import terse_report
from .page import page_routes
from .validation import build_submission, check_job_id, check_limit, check_user_id, read_upload
from .openai_routes import openai_routes
from .openapi import openapi_document
from .voice_routes import voice_routes

log = logging.getLogger("voiceq.http")

# Room for the multipart framing and the text fields around the audio file.
_FORM_OVERHEAD_BYTES = 256 * 1024


class Backend(Protocol):
    settings: Settings

    async def submit(self, sub: Submission) -> Job: ...

    async def get(self, job_id: str) -> Job: ...

    async def status(self, job_id: str) -> tuple[Job, str | None, QueuePlace | None]:
        """The job, its result's URL (None: no result, or storage without URLs) and, while it is
        pending, its place in the queue, in one call."""
        ...

    async def run_now(self, job: Job) -> Job:
        """Process the job just submitted at once (development mode) and return its outcome: a
        final state, or pending again after a failure that may pass."""
        ...

    async def read_result(self, job: Job) -> bytes:
        """The result's bytes of a completed job, as the caller read it."""
        ...

    async def cancel(self, job_id: str) -> Job: ...

    async def requeue(self, job_id: str) -> Job: ...

    async def list_jobs(self, *, status: str | None, user_id: str | None, limit: int) -> list[Job]: ...

    async def stats(self, user_id: str | None, owner: str | None = None) -> JobStats: ...

    async def health(self) -> dict[str, Any]: ...


def _backend(request: Request) -> Backend:
    return request.app.state.backend


def _principal(request: Request) -> Principal:
    keyring: Keyring = request.app.state.keyring
    return keyring.authenticate(request.headers.get("authorization"))


async def _visible_job(request: Request, principal: Principal) -> Job:
    job = await _backend(request).get(check_job_id(request.path_params["job_id"]))
    if not can_see(principal, job):
        raise JobNotFound(job.job_id)  # other keys' jobs do not exist for this key
    return job


# --- routes ------------------------------------------------------------------------------


async def clone(request: Request) -> Response:
    backend = _backend(request)
    settings = backend.settings
    principal = _principal(request)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise InvalidInput("expected a multipart/form-data body with audio_file, user_id and voice_name",
                           status_code=415)
    try:
        async with request.form(max_files=1, max_fields=32, max_part_size=64 * 1024) as form:
            upload = form.get("audio_file")
            if isinstance(upload, str):
                raise InvalidInput("audio_file must be a file upload, not a text field", field="audio_file")
            audio = await read_upload(upload, settings) if upload is not None else None
            # Decoding is CPU work on untrusted bytes: off the event loop, so every other route
            # (/health included) keeps answering while it runs.
            submission = await asyncio.to_thread(
                build_submission, form, audio, settings, owner=owner_of(principal),
                idempotency_key=request.headers.get("idempotency-key"), admin=principal.admin,
                limits=principal.limits,
            )
    except MultiPartException as err:
        raise InvalidInput(f"malformed multipart body: {err.message}") from err
    job = await backend.submit(submission)
    if settings.production:
        return JSONResponse(responses.clone_queued(job), status_code=202)
    try:
        job = await asyncio.wait_for(backend.run_now(job), timeout=settings.dev_timeout_s)
    except asyncio.TimeoutError:
        return JSONResponse(
            responses.error(
                f"Processing timeout: the job did not finish within {settings.dev_timeout_s:g} s; "
                "it stays queued and its status URL will show the outcome",
                code="processing_timeout", jobId=job.job_id, statusUrl=responses.status_url(job.job_id),
            ),
            status_code=504,
        )
    if job.status is JobStatus.COMPLETED:
        mp3 = await backend.read_result(job)
        return JSONResponse(responses.clone_completed(job, mp3), status_code=200)
    if job.status is JobStatus.PENDING:  # a transient failure: it will be retried
        return JSONResponse(
            responses.error(f"Voice cloning hit a temporary error and will be retried: {job.error}",
                            code="service_unavailable", jobId=job.job_id,
                            statusUrl=responses.status_url(job.job_id)),
            status_code=503, headers={"Retry-After": "5"},
        )
    return JSONResponse(responses.clone_failed(job), status_code=500)


async def convert(request: Request) -> Response:
    """Voice conversion: `source_audio` spoken in the voice of `voice_id` or of an
    `audio_file` sample; queued and run like a clone (same states, retries, webhooks)."""
    backend = _backend(request)
    settings = backend.settings
    principal = _principal(request)
    if not request.headers.get("content-type", "").startswith(("multipart/form-data",
                                                               "application/x-www-form-urlencoded")):
        raise InvalidInput("expected a multipart/form-data body with source_audio, user_id and voice_id or audio_file",
                           status_code=415)
    try:
        async with request.form(max_files=2, max_fields=32, max_part_size=64 * 1024) as form:
            uploads = {}
            for name in ("source_audio", "audio_file"):
                upload = form.get(name)
                if isinstance(upload, str):
                    raise InvalidInput(f"{name} must be a file upload, not a text field", field=name)
                uploads[name] = await read_upload(upload, settings, name) if upload is not None else None
            fields = conversion_form(form)
            # Decoding is CPU work on untrusted bytes: off the event loop, as for clones; and the
            # key's limits (priority, quotas) apply to conversions as to clones.
            base = await asyncio.to_thread(
                build_submission, fields, uploads["audio_file"], settings, owner=owner_of(principal),
                idempotency_key=request.headers.get("idempotency-key"), admin=principal.admin,
                limits=principal.limits,
            )
            submission = await asyncio.to_thread(build_conversion, uploads["source_audio"], settings, base=base)
    except MultiPartException as err:
        raise InvalidInput(f"malformed multipart body: {err.message}") from err
    job = await backend.submit(submission)
    return JSONResponse(responses.clone_queued(job), status_code=202)


async def _visible_status(request: Request) -> tuple[Job, str | None, QueuePlace | None]:
    """The job of the path as `Backend.status` reads it (one read: the job, its result URL, its
    place), if the caller may see it."""
    principal = _principal(request)
    job, url, place = await _backend(request).status(check_job_id(request.path_params["job_id"]))
    if not can_see(principal, job):
        raise JobNotFound(job.job_id)  # other keys' jobs do not exist for this key
    return job, url, place


async def job_status(request: Request) -> Response:
    job, url, place = await _visible_status(request)
    return JSONResponse(responses.job_status(job, result_url=url, queue=place))


async def job_audio(request: Request) -> Response:
    job, url, _ = await _visible_status(request)
    if job.status is not JobStatus.COMPLETED:
        return JSONResponse(responses.error(f"job {job.job_id} is {job.status.value}; no audio yet",
                                            code="job_not_ready"), status_code=409)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    audio = await _backend(request).read_result(job)
    fmt = result_format(job)
    return Response(audio, media_type=fmt.media_type,
                    headers={"Content-Disposition": f'inline; filename="{job.job_id}.{fmt.extension}"'})


async def cancel_job(request: Request) -> Response:
    job = await _visible_job(request, _principal(request))
    job = await _backend(request).cancel(job.job_id)
    return JSONResponse(responses.job_status(job))


async def retry_job(request: Request) -> Response:
    """Operator retry of a dead-lettered job: back to the queue with fresh attempts."""
    principal = _principal(request)
    require_admin(principal)
    job = await _visible_job(request, principal)
    job = await _backend(request).requeue(job.job_id)
    return JSONResponse(responses.job_status(job))


async def list_jobs(request: Request) -> Response:
    backend = _backend(request)
    principal = _principal(request)
    user_id = request.query_params.get("user_id") or request.query_params.get("userId")
    if not user_id:
        raise InvalidInput("user_id query parameter is required", field="user_id")
    status = request.query_params.get("status")
    if status is not None and status not in {s.value for s in JobStatus}:
        raise InvalidInput(f"status must be one of {', '.join(s.value for s in JobStatus)}", field="status")
    limit = check_limit(request.query_params.get("limit"), default=50, maximum=500)
    jobs = await backend.list_jobs(status=status, user_id=check_user_id(user_id), limit=limit)
    jobs = [j for j in jobs if can_see(principal, j)]
    return JSONResponse({"userId": user_id, "jobs": [responses.job_summary(j) for j in jobs]})


async def stats(request: Request) -> Response:
    backend = _backend(request)
    principal = _principal(request)
    user_id = request.query_params.get("user_id") or request.query_params.get("userId")
    if user_id is not None:
        check_user_id(user_id)
    # A key sees its own users only; admin keys (and development without keys) everything.
    result = await backend.stats(user_id, owner=None if principal.admin else owner_of(principal))
    return JSONResponse(responses.stats_body(result, gpu_hourly_price=backend.settings.gpu_hourly_price))


async def health(request: Request) -> Response:
    report = await _backend(request).health()
    # "degraded" (a job waiting too long) still serves traffic; "unavailable" does not.
    code = 503 if report.get("status") == "unavailable" else 200
    try:
        admin = _principal(request).admin
    except (Unauthorized, Forbidden):
        admin = False
    # Anyone may ask whether the service is ready (load balancers carry no key); only an admin
    # key (or a server without auth) is told why, with the paths and URLs that entails.
    return JSONResponse(report if admin else terse_report(report), status_code=code)


async def openapi_json(request: Request) -> Response:
    """The OpenAPI description of every route (serve_app.openapi)."""
    return JSONResponse(openapi_document(request.app.routes))


async def live(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


# --- errors ------------------------------------------------------------------------------


def store_unreachable_message(settings: Settings) -> str:
    if settings.job_store_kind == "convex":
        return ("Convex not reachable: check CONVEX_URL, CONVEX_DEPLOY_KEY and that the Convex deployment "
                "is running")
    # No path: this is answered to any caller.
    return "Job store not reachable: check that the data directory is on a writable disk"


# The stable codes of Starlette's own refusals (no route, wrong method...), by status.
HTTP_CODES = {400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "invalid_transition", 413: "payload_too_large",
              415: "unsupported_media_type", 429: "rate_limited", 503: "service_unavailable"}


def _error(exc: VoiceqError, message: str, status_code: int, headers: dict[str, str] | None = None,
           field: str | None = None) -> Response:
    return JSONResponse(responses.error(message, code=exc.code, field=field), status_code=status_code,
                        headers=headers)


async def handle_error(request: Request, exc: Exception) -> Response:
    settings: Settings = request.app.state.backend.settings
    if isinstance(exc, InvalidInput):
        return _error(exc, exc.message, exc.status_code, field=exc.field)
    if isinstance(exc, (JobNotFound, VoiceNotFound)):
        return _error(exc, str(exc), 404)
    if isinstance(exc, BlobNotFound):
        return _error(exc, "the result of this job is no longer available", 410)
    if isinstance(exc, InvalidTransition):
        return _error(exc, str(exc), 409)
    if isinstance(exc, QueueFull):
        return _error(exc, exc.message, exc.status_code, {"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, Unauthorized):
        return _error(exc, exc.message, 401, {"WWW-Authenticate": 'Bearer realm="voiceq"'})
    if isinstance(exc, Forbidden):
        return _error(exc, exc.message, 403)
    if isinstance(exc, StoreUnavailable):
        log.warning("job store unavailable: %s", exc)
        return _error(exc, store_unreachable_message(settings), 503, {"Retry-After": "5"})
    if isinstance(exc, ServiceUnavailable):
        log.warning("service unavailable: %s", exc)
        return _error(exc, str(exc), 503, {"Retry-After": "2"})
    if isinstance(exc, StorageUnavailable):
        log.warning("storage unavailable: %s", exc)
        return _error(exc, "Audio storage not reachable: try again shortly", 503, {"Retry-After": "5"})
    if isinstance(exc, HTTPException):
        message = {
            404: f"no such endpoint: {request.method} {request.url.path}",
            405: f"method {request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        code = HTTP_CODES.get(exc.status_code, "invalid_input" if exc.status_code < 500 else "internal_error")
        return JSONResponse(responses.error(message, code=code), status_code=exc.status_code, headers=exc.headers)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(responses.error("internal error", code="internal_error"), status_code=500)


class BodyLimit:
    """Refuses a request body past the upload limit while it streams in, before it is read whole."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = scope["app"].state.backend.settings.max_upload_bytes + _FORM_OVERHEAD_BYTES
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise InvalidInput(f"request body is larger than {limit} bytes", status_code=413)
            return message

        await self.app(scope, limited, send)


async def _too_large(limit: int, send: Send) -> None:
    response = JSONResponse(responses.error(f"request body is larger than {limit} bytes", code="payload_too_large"),
                            status_code=413)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_http_app(backend: Backend) -> Starlette:
    routes = [
        Route(f"{API_PREFIX}/clone", clone, methods=["POST"]),
        Route(f"{API_PREFIX}/convert", convert, methods=["POST"]),
        Route(f"{API_PREFIX}/jobs", list_jobs, methods=["GET"]),
        Route(f"{API_PREFIX}/stats", stats, methods=["GET"]),
        Route(f"{API_PREFIX}/jobs/{{job_id}}/status", job_status, methods=["GET"]),
        Route(f"{API_PREFIX}/jobs/{{job_id}}/audio", job_audio, methods=["GET"]),
        Route(f"{API_PREFIX}/jobs/{{job_id}}/cancel", cancel_job, methods=["POST"]),
        Route(f"{API_PREFIX}/jobs/{{job_id}}/retry", retry_job, methods=["POST"]),
        Route(f"{API_PREFIX}/jobs/{{job_id}}", cancel_job, methods=["DELETE"]),
        Route("/health", live, methods=["GET"]),
        Route("/ready", health, methods=["GET"]),
        *voice_routes(),
        *openai_routes(handle_error),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *page_routes(),  # the onboarding page at /
    ]
    # VoiceqError and HTTPException are answered by Starlette's exception middleware; anything
    # else is a bug, answered with a 500 and re-raised so it is logged with its traceback.
    handlers = {VoiceqError: handle_error, HTTPException: handle_error, Exception: handle_error}
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=[Middleware(BodyLimit)])
    app.state.backend = backend
    app.state.keyring = Keyring.from_settings(backend.settings)
    return app
