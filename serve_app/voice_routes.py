"""The voice library's routes: list, read, rename and delete a user's voices, erase a user,
and check audio for voiceq's watermark. JSON in and out, like the seed's routes; another
key's voices and users do not exist for a caller (404).

    GET    {API}/voices?user_id=U[&limit=N]   {"userId", "voices": [voice...]}
    GET    {API}/voices/{voice_id}            voice
    PATCH  {API}/voices/{voice_id}            {"name": "..."} -> voice
    DELETE {API}/voices/{voice_id}            {"success", "voiceId", "deleted"}
    DELETE {API}/users/{user_id}              erasure: {"success", "userId", "status", "voices", "jobs", "blobs", ...}
    POST   {API}/watermark/detect             multipart audio_file -> {"watermarked", "confidence", "detector"}
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voiceq.audio import decode_upload
from voiceq.errors import InvalidInput
from voiceq.settings import Settings
from voiceq.voice_library import Caller
from voiceq.voices import Erasure, Voice, voice_view
from voiceq.watermark import DETECTOR, detect

from .auth import Keyring, Principal, owner_of
from .responses import API_PREFIX
from .validation import check_limit, check_user_id, read_upload
from .voice_validation import check_voice_id, check_voice_name

# Watermark checks take clips as short as this (the detector needs a few frames).
_MIN_DETECT_S = 0.5


class VoiceBackend(Protocol):
    settings: Settings

    async def list_voices(self, user_id: str, *, caller: Caller, limit: int) -> list[Voice]: ...

    async def get_voice(self, voice_id: str, *, caller: Caller) -> Voice: ...

    async def rename_voice(self, voice_id: str, name: str, *, caller: Caller) -> Voice: ...

    async def delete_voice(self, voice_id: str, *, caller: Caller) -> Voice: ...

    async def erase_user(self, user_id: str, *, caller: Caller) -> Erasure: ...


def _backend(request: Request) -> VoiceBackend:
    return request.app.state.backend


def _caller(request: Request) -> Caller:
    keyring: Keyring = request.app.state.keyring
    principal: Principal = keyring.authenticate(request.headers.get("authorization"))
    return Caller(owner=owner_of(principal), admin=principal.admin)


async def list_voices(request: Request) -> Response:
    caller = _caller(request)
    user_id = request.query_params.get("user_id") or request.query_params.get("userId")
    if not user_id:
        raise InvalidInput("user_id query parameter is required", field="user_id")
    voices = await _backend(request).list_voices(check_user_id(user_id), caller=caller, limit=check_limit(request.query_params.get("limit"), default=100, maximum=1000))
    return JSONResponse({"userId": user_id, "voices": [voice_view(v) for v in voices]})


async def get_voice(request: Request) -> Response:
    caller = _caller(request)
    voice = await _backend(request).get_voice(check_voice_id(request.path_params["voice_id"]), caller=caller)
    return JSONResponse(voice_view(voice))


async def _name_from(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise InvalidInput("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidInput('expected a JSON object like {"name": "New name"}')
        return body.get("name")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        async with request.form(max_files=0, max_fields=8) as form:
            return form.get("name")
    raise InvalidInput('expected a JSON body like {"name": "New name"}', status_code=415)


async def rename_voice(request: Request) -> Response:
    caller = _caller(request)
    backend = _backend(request)
    voice_id = check_voice_id(request.path_params["voice_id"])
    name = check_voice_name(await _name_from(request), backend.settings)
    return JSONResponse(voice_view(await backend.rename_voice(voice_id, name, caller=caller)))


async def delete_voice(request: Request) -> Response:
    caller = _caller(request)
    voice = await _backend(request).delete_voice(check_voice_id(request.path_params["voice_id"]), caller=caller)
    return JSONResponse({"success": True, "voiceId": voice.voice_id, "deleted": True})


async def erase_user(request: Request) -> Response:
    caller = _caller(request)
    user_id = check_user_id(request.path_params["user_id"])
    erasure = await _backend(request).erase_user(user_id, caller=caller)
    return JSONResponse({
        "success": True,
        "userId": user_id,
        "status": erasure.status,
        "voices": erasure.voices,
        "jobs": erasure.jobs,
        "blobs": erasure.blobs,
        "startedAt": erasure.started_at,
        "finishedAt": erasure.finished_at,
    })


async def detect_watermark(request: Request) -> Response:
    _caller(request)
    settings = _backend(request).settings
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput("expected a multipart/form-data body with audio_file", status_code=415)
    async with request.form(max_files=1, max_fields=4) as form:
        upload = form.get("audio_file")
        if upload is None or isinstance(upload, str):
            raise InvalidInput("audio_file is required (a file upload)", field="audio_file")
        data = await read_upload(upload, settings)
    clip = await asyncio.to_thread(decode_upload, data, min_s=_MIN_DETECT_S, max_s=settings.max_audio_s)
    found = await asyncio.to_thread(detect, clip)
    return JSONResponse({"watermarked": found.watermarked, "confidence": found.confidence, "detector": DETECTOR})


def voice_routes() -> list[Route]:
    return [
        Route(f"{API_PREFIX}/voices", list_voices, methods=["GET"]),
        Route(f"{API_PREFIX}/voices/{{voice_id}}", get_voice, methods=["GET"]),
        Route(f"{API_PREFIX}/voices/{{voice_id}}", rename_voice, methods=["PATCH"]),
        Route(f"{API_PREFIX}/voices/{{voice_id}}", delete_voice, methods=["DELETE"]),
        Route(f"{API_PREFIX}/users/{{user_id}}", erase_user, methods=["DELETE"]),
        Route(f"{API_PREFIX}/watermark/detect", detect_watermark, methods=["POST"]),
    ]
