"""OpenAI-compatible routes, for clients and tools built on the OpenAI SDK.

    POST /v1/audio/speech   {"model", "input", "voice", "response_format", "speed"} -> audio bytes, streamed
    GET  /v1/audio/voices?user_id=U                  the caller's voices for that user
    GET  /v1/models                                  the models this server speaks with

Same keys (`Authorization: Bearer`) and the same queue as the rest of the API: a speech
request is made of ordinary jobs (serve_app.speech_stream). Errors come in OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, with the status and message the rest of
the API would give and its stable `code`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from voiceq.audio_encode import audio_format
from voiceq.engine.text import stream_chunks
from voiceq.errors import (IdempotencyKeyReused, InvalidInput, InvalidTransition, JobFailed, JobNotFound, QueueFull, ServiceUnavailable,
                           StorageUnavailable, StoreUnavailable, VoiceNotFound)
from voiceq.manager import Submission
from voiceq.voice_library import Caller
from voiceq.voices import voice_view

from .auth import Forbidden, Keyring, Principal, Unauthorized, owner_of
from .speech_stream import SpeechPlan, SpeechStream, new_request_id
from .openai_validation import SpeechAsk, parse_speech, served_model_ids
from .validation import check_limit, check_user_id

log = logging.getLogger("voiceq.openai")

Handler = Callable[[Request], Awaitable[Response]]

# OpenAI's error `type` by status class.
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
          415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}


def error_code(exc: BaseException, status: int) -> str:
    """The stable error code (the API's shared vocabulary) for an exception and its status."""
    if isinstance(exc, IdempotencyKeyReused):
        return "idempotency_key_reused"
    if isinstance(exc, InvalidInput):
        return {413: "payload_too_large", 415: "unsupported_media_type"}.get(status, "invalid_input")
    if isinstance(exc, QueueFull):
        return "rate_limited" if status == 429 else "queue_full"
    by_type: list[tuple[type[BaseException], str]] = [
        (VoiceNotFound, "voice_not_found"), (JobNotFound, "job_not_found"), (Unauthorized, "unauthorized"),
        (Forbidden, "forbidden"), (InvalidTransition, "invalid_transition"), (StoreUnavailable, "store_unavailable"),
        (StorageUnavailable, "storage_unavailable"), (ServiceUnavailable, "service_unavailable"),
    ]
    for kind, code in by_type:
        if isinstance(exc, kind):
            return code
    return {404: "not_found", 405: "method_not_allowed", 504: "timeout"}.get(status, "internal_error")


def openai_error_body(message: str, *, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


async def _as_openai_error(request: Request, exc: Exception, handle_error: ErrorHandler) -> Response:
    """The API's answer to `exc` (status, message, headers; from the app's one error handler),
    reshaped the OpenAI way."""
    if isinstance(exc, JobFailed):
        body = openai_error_body(f"speech could not be made: {exc.message}", status=500, code="internal_error")
        return JSONResponse(body, status_code=500)
    if isinstance(exc, asyncio.TimeoutError):
        return JSONResponse(openai_error_body(f"Processing timeout: {exc}", status=504, code="timeout"),
                            status_code=504)
    seed = await handle_error(request, exc)
    parsed = json.loads(bytes(seed.body or b"{}"))
    headers = {k: v for k, v in seed.headers.items() if k.lower() in ("retry-after", "www-authenticate")}
    code = parsed.get("code") or error_code(exc, seed.status_code)
    body = openai_error_body(str(parsed.get("error", "error")), status=seed.status_code, code=code,
                             param=parsed.get("field"))
    return JSONResponse(body, status_code=seed.status_code, headers=headers)


def openai_errors(handler: Handler, handle_error: ErrorHandler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:  # every failure answers in OpenAI's shape
            return await _as_openai_error(request, exc, handle_error)

    return wrapped


def _principal(request: Request) -> Principal:
    keyring: Keyring = request.app.state.keyring
    return keyring.authenticate(request.headers.get("authorization"))


async def _json_body(request: Request) -> Any:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise InvalidInput("expected a JSON body (Content-Type: application/json)", status_code=415)
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise InvalidInput("the body is not valid JSON") from None


def plan_speech(ask: SpeechAsk, *, user_id: str, voice_name: str, principal: Principal,
                request_id: str) -> SpeechPlan:
    """One submission per chunk of the text, in the voice's user's name (a voice belongs to a
    key and a user; the chunks are that user's jobs)."""
    chunks = stream_chunks(ask.text)
    parts = tuple(
        Submission(user_id=user_id, voice_name=voice_name, sample_text=chunk, voice_id=ask.voice_id,
                   owner=owner_of(principal), admin=principal.admin, limits=principal.limits,
                   params=dict(ask.params), model=ask.model, language=ask.language,
                   # Lossless between worker and ingress: the ingress encodes the whole stream once.
                   response_format="wav",
                   speech={"request": request_id, "part": i, "parts": len(chunks)})
        for i, chunk in enumerate(chunks)
    )
    return SpeechPlan(request_id=request_id, parts=parts, response_format=ask.response_format, speed=ask.speed)


async def speech(request: Request) -> Response:
    """Text to speech in a voice of the caller's library; the audio is streamed as it is made."""
    backend = request.app.state.backend
    principal = _principal(request)
    ask = parse_speech(await _json_body(request), backend.settings)
    # Another key's voice does not exist for this caller: 404 before anything is stored.
    voice = await backend.get_voice(ask.voice_id, caller=Caller(owner=owner_of(principal), admin=principal.admin))
    plan = plan_speech(ask, user_id=voice.user_id, voice_name=voice.name, principal=principal,
                       request_id=new_request_id())
    stream = SpeechStream(backend, plan)
    first = await stream.start()
    fmt = audio_format(ask.response_format)
    return StreamingResponse(stream.audio(), media_type=fmt.media_type, headers={
        "X-Request-Id": plan.request_id,
        "X-Voiceq-First-Job": first.job_id,
        "X-Voiceq-Chunks": str(len(plan.parts)),
        "Content-Disposition": f'inline; filename="speech.{fmt.extension}"',
    })


async def voices(request: Request) -> Response:
    """The caller's voices for `user_id` (voices belong to a key and a user)."""
    backend = request.app.state.backend
    principal = _principal(request)
    user_id = request.query_params.get("user_id") or request.query_params.get("userId")
    if not user_id:
        raise InvalidInput("user_id query parameter is required (voices belong to a user)", field="user_id")
    listed = await backend.list_voices(check_user_id(user_id), caller=Caller(owner_of(principal), principal.admin),
                                       limit=check_limit(request.query_params.get("limit"), default=100, maximum=1000))
    return JSONResponse({"object": "list", "userId": user_id,
                         "voices": [{"id": v.voice_id, "object": "voice", **voice_view(v)} for v in listed]})


async def models(request: Request) -> Response:
    _principal(request)
    return JSONResponse({"object": "list", "data": [
        {"id": name, "object": "model", "created": 0, "owned_by": "voiceq"}
        for name in served_model_ids(request.app.state.backend.settings)
    ]})


def openai_routes(handle_error: ErrorHandler) -> list[Route]:
    """The routes; `handle_error` is the app's own (serve_app.http), whose answers they reshape."""
    return [
        Route("/v1/audio/speech", openai_errors(speech, handle_error), methods=["POST"]),
        Route("/v1/audio/voices", openai_errors(voices, handle_error), methods=["GET"]),
        Route("/v1/models", openai_errors(models, handle_error), methods=["GET"]),
    ]
