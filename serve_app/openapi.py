"""The API described for machines: an OpenAPI 3.1 document built from the app's own routes.

Every route the app serves is in it: those described here in full, and any other (a route
added without a description) from its handler's docstring, so the document never silently
misses a route. Pure: routes in, a dict out; `/openapi.json` serves it.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Iterable

from starlette.routing import BaseRoute, Route

from voiceq.audio_encode import FORMATS, FORMAT_NAMES

from .responses import API_PREFIX

_JSON = "application/json"
_PARAM_RE = re.compile(r"{([a-zA-Z_]+)(?::[a-z]+)?}")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _errors(*statuses: int, openai: bool = False) -> dict[str, Any]:
    schema = _ref("OpenAIError" if openai else "Error")
    words = {400: "Bad input, naming the field", 401: "API key missing or wrong", 403: "Not allowed for this key",
             404: "No such job or voice for this key", 409: "Not in a state that allows it",
             410: "The result is no longer kept", 413: "Too large", 415: "Not an accepted media type",
             422: "Well-formed but refused", 429: "A per-user or per-key quota is reached (Retry-After)",
             503: "A store or the inference service is unavailable (Retry-After)", 504: "Processing timeout"}
    return {str(s): _json(schema, words.get(s, "Error")) for s in statuses}


_STR = {"type": "string"}
_NUM = {"type": "number"}
_INT = {"type": "integer"}
_OBJ = {"type": "object", "additionalProperties": True}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["success", "error"], "properties": {
        "success": {"type": "boolean", "const": False}, "error": _STR, "field": _STR,
        "code": {**_STR, "description": "stable machine-readable code, e.g. invalid_input, voice_not_found"}}},
    "OpenAIError": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "code"], "properties": {
            "message": _STR, "type": _STR, "param": {"type": ["string", "null"]}, "code": _STR}}}},
    "CloneForm": {"type": "object", "required": ["user_id", "voice_name"], "properties": {
        "audio_file": {"type": "string", "format": "binary", "description": "1-60 s of mp3, wav, ogg/opus, flac, m4a/aac or webm"},
        "voice_id": {**_STR, "description": "reuse a voice cloned before, instead of audio_file"},
        "user_id": _STR, "voice_name": _STR, "sample_text": _STR,
        "model": {**_STR, "enum": ["chatterbox", "chatterbox-turbo", "chatterbox-multilingual"]},
        "language": _STR, "exaggeration": _NUM, "cfg_weight": _NUM, "temperature": _NUM, "seed": _INT,
        "priority": _INT, "callback_url": {**_STR, "format": "uri"},
        "response_format": {**_STR, "enum": list(FORMAT_NAMES), "default": "mp3"},
        "consent_subject": _STR, "consent_at": _STR, "consent_reference": _STR}},
    "ConvertForm": {"type": "object", "required": ["source_audio", "user_id"], "properties": {
        "source_audio": {"type": "string", "format": "binary"}, "audio_file": {"type": "string", "format": "binary"},
        "voice_id": _STR, "user_id": _STR, "voice_name": _STR, "model": _STR, "seed": _INT, "priority": _INT}},
    "CloneQueued": {"type": "object", "properties": {"success": {"type": "boolean"}, "jobId": _STR,
                                                     "status": _STR, "message": _STR, "statusUrl": _STR}},
    "CloneCompleted": {"type": "object", "properties": {
        "success": {"type": "boolean"}, "jobId": _STR, "voice_id": _STR, "voice_name": _STR,
        "sample_audio": {**_STR, "description": "data:audio/mp3;base64,... (or the asked format's media type)"},
        "processingTime": _NUM, "message": _STR, "statusUrl": _STR, "resultUrl": _STR}},
    "JobStatus": {"type": "object", "required": ["jobId", "status"], "properties": {
        "jobId": _STR, "userId": _STR,
        "status": {**_STR, "enum": ["pending", "processing", "completed", "failed", "cancelled"]},
        "voiceName": _STR, "voiceId": {"type": ["string", "null"]}, "processingTime": {"type": ["number", "null"]},
        "createdAt": _NUM, "completedAt": {"type": ["number", "null"]}, "attempts": _INT,
        "workerInfo": {"type": ["object", "null"]}, "resultUrl": _STR, "audioSeconds": {"type": ["number", "null"]},
        "error": _STR, "model": _STR, "kind": _STR,
        "queuePosition": {**_INT, "description": "pending only: jobs of its model claimed before it (0: next)"},
        "estimatedWaitS": {"type": ["number", "null"], "description": "pending only: (queuePosition + 1) x recent "
                           "GPU seconds per job; null until a job of the model completed"}}},
    "JobList": {"type": "object", "properties": {"userId": _STR, "jobs": {"type": "array", "items": _OBJ}}},
    "Stats": {"type": "object", "properties": {"total": _INT, "byStatus": _OBJ, "gpuSeconds": _NUM,
                                               "gpuHours": _NUM, "estimatedCost": _NUM, "byModel": _OBJ}},
    "Voice": {"type": "object", "properties": {"voiceId": _STR, "userId": _STR, "name": _STR, "createdAt": _NUM,
                                               "updatedAt": _NUM, "jobId": _STR, "models": {"type": "array", "items": _STR},
                                               "consent": {"type": ["object", "null"]}}},
    "VoiceList": {"type": "object", "properties": {"userId": _STR, "voices": {"type": "array", "items": _ref("Voice")}}},
    "Erasure": {"type": "object", "properties": {"success": {"type": "boolean"}, "userId": _STR, "status": _STR,
                                                 "voices": _INT, "jobs": _INT, "blobs": _INT}},
    "Watermark": {"type": "object", "properties": {"watermarked": {"type": "boolean"}, "confidence": _NUM,
                                                   "detector": _STR}},
    "SpeechRequest": {"type": "object", "required": ["model", "input", "voice"], "properties": {
        "model": {**_STR, "description": "tts-1, tts-1-hd, gpt-4o-mini-tts (this server's default model) or a Chatterbox model"},
        "input": {**_STR, "maxLength": 4096},
        "voice": {**_STR, "description": "a voice id from your voice library (GET /v1/audio/voices)"},
        "response_format": {**_STR, "enum": list(FORMAT_NAMES), "default": "mp3"},
        "speed": {**_NUM, "minimum": 0.25, "maximum": 4.0, "default": 1.0},
        "stream_format": {**_STR, "enum": ["audio"]},
        "language": _STR, "exaggeration": _NUM, "cfg_weight": _NUM, "temperature": _NUM, "seed": _INT}},
    "ModelList": {"type": "object", "properties": {"object": _STR, "data": {"type": "array", "items": {
        "type": "object", "properties": {"id": _STR, "object": _STR, "created": _INT, "owned_by": _STR}}}}},
    "Health": _OBJ,
}


def _query(name: str, description: str, *, required: bool = False, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema or _STR}


_USER_Q = _query("user_id", "whose jobs or voices", required=True)
_LIMIT_Q = _query("limit", "at most this many", schema=_INT)
_FORM = "multipart/form-data"
_AUDIO = {"description": "the audio", "content": {f.media_type: {"schema": {"type": "string", "format": "binary"}}
                                                  for f in FORMATS.values()}}

# (method, path) -> operation, for every route the app is built with.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", f"{API_PREFIX}/clone"): {
        "summary": "Clone a voice from a sample (or reuse one) and speak sample_text in it",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": _STR}],
        "requestBody": {"required": True, "content": {_FORM: {"schema": _ref("CloneForm")}}},
        "responses": {"200": _json(_ref("CloneCompleted"), "development: done at once"),
                      "202": _json(_ref("CloneQueued"), "production: queued"),
                      **_errors(400, 401, 403, 404, 413, 415, 422, 429, 503, 504)}},
    ("POST", f"{API_PREFIX}/convert"): {
        "summary": "Voice conversion: source_audio spoken in another voice",
        "requestBody": {"required": True, "content": {_FORM: {"schema": _ref("ConvertForm")}}},
        "responses": {"202": _json(_ref("CloneQueued"), "queued"), **_errors(400, 401, 404, 413, 415, 429, 503)}},
    ("GET", f"{API_PREFIX}/jobs"): {
        "summary": "A user's jobs, newest first",
        "parameters": [_USER_Q, _query("status", "only jobs in this status"), _LIMIT_Q],
        "responses": {"200": _json(_ref("JobList"), "the jobs"), **_errors(400, 401)}},
    ("GET", f"{API_PREFIX}/stats"): {
        "summary": "Totals by status, GPU time and estimated cost", "parameters": [_query("user_id", "one user only")],
        "responses": {"200": _json(_ref("Stats"), "the totals"), **_errors(400, 401)}},
    ("GET", f"{API_PREFIX}/jobs/{{job_id}}/status"): {
        "summary": "A job's status", "responses": {"200": _json(_ref("JobStatus"), "the job"), **_errors(400, 401, 404)}},
    ("GET", f"{API_PREFIX}/jobs/{{job_id}}/audio"): {
        "summary": "A finished job's audio (or a redirect to a presigned storage URL)",
        "responses": {"200": _AUDIO, "307": {"description": "redirect to the stored result"},
                      **_errors(401, 404, 409, 410)}},
    ("POST", f"{API_PREFIX}/jobs/{{job_id}}/cancel"): {
        "summary": "Cancel a pending or running job",
        "responses": {"200": _json(_ref("JobStatus"), "the cancelled job"), **_errors(401, 404, 409)}},
    ("POST", f"{API_PREFIX}/jobs/{{job_id}}/retry"): {
        "summary": "Put a failed job back in the queue (admin keys)",
        "responses": {"200": _json(_ref("JobStatus"), "the requeued job"), **_errors(401, 403, 404, 409)}},
    ("DELETE", f"{API_PREFIX}/jobs/{{job_id}}"): {
        "summary": "Cancel a pending or running job",
        "responses": {"200": _json(_ref("JobStatus"), "the cancelled job"), **_errors(401, 404, 409)}},
    ("GET", "/health"): {"summary": "Liveness", "security": [],
                         "responses": {"200": _json(_ref("Health"), "alive")}},
    ("GET", "/ready"): {"summary": "Readiness: job store, storage, inference, queue", "security": [],
                        "responses": {"200": _json(_ref("Health"), "ready"), "503": _json(_ref("Health"), "not ready")}},
    ("GET", f"{API_PREFIX}/voices"): {
        "summary": "A user's voices, newest first", "parameters": [_USER_Q, _LIMIT_Q],
        "responses": {"200": _json(_ref("VoiceList"), "the voices"), **_errors(400, 401)}},
    ("GET", f"{API_PREFIX}/voices/{{voice_id}}"): {
        "summary": "One voice", "responses": {"200": _json(_ref("Voice"), "the voice"), **_errors(400, 401, 404)}},
    ("PATCH", f"{API_PREFIX}/voices/{{voice_id}}"): {
        "summary": "Rename a voice",
        "requestBody": {"required": True, "content": {_JSON: {"schema": {
            "type": "object", "required": ["name"], "properties": {"name": _STR}}}}},
        "responses": {"200": _json(_ref("Voice"), "the renamed voice"), **_errors(400, 401, 404, 415)}},
    ("DELETE", f"{API_PREFIX}/voices/{{voice_id}}"): {
        "summary": "Delete a voice and its files",
        "responses": {"200": _json(_OBJ, "deleted"), **_errors(400, 401, 404)}},
    ("DELETE", f"{API_PREFIX}/users/{{user_id}}"): {
        "summary": "Erase a user's voices, uploads, results and personal fields",
        "responses": {"200": _json(_ref("Erasure"), "erased"), **_errors(400, 401)}},
    ("POST", f"{API_PREFIX}/watermark/detect"): {
        "summary": "Does this audio carry the Perth watermark?",
        "requestBody": {"required": True, "content": {_FORM: {"schema": {
            "type": "object", "required": ["audio_file"],
            "properties": {"audio_file": {"type": "string", "format": "binary"}}}}}},
        "responses": {"200": _json(_ref("Watermark"), "the detector's answer"), **_errors(400, 401, 413, 415)}},
    ("POST", "/v1/audio/speech"): {
        "summary": "OpenAI-compatible text to speech in a voice of your library, streamed as it is made",
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref("SpeechRequest")}}},
        "responses": {"200": _AUDIO, **_errors(400, 401, 404, 415, 429, 500, 503, 504, openai=True)}},
    ("GET", "/v1/audio/voices"): {
        "summary": "Your voices for a user (OpenAI-style list)", "parameters": [_USER_Q, _LIMIT_Q],
        "responses": {"200": _json(_OBJ, "the voices"), **_errors(400, 401, openai=True)}},
    ("GET", "/v1/models"): {
        "summary": "The models this server speaks with (OpenAI-style list)",
        "responses": {"200": _json(_ref("ModelList"), "the models"), **_errors(401, openai=True)}},
    ("GET", "/openapi.json"): {"summary": "This document", "security": [],
                               "responses": {"200": _json(_OBJ, "the OpenAPI document")}},
}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": _STR} for name in _PARAM_RE.findall(path)]


def _fallback(route: Route) -> dict[str, Any]:
    doc = inspect.getdoc(route.endpoint) or route.name or route.path
    return {"summary": doc.splitlines()[0], "responses": {"200": {"description": "OK"}, **_errors(400, 401)}}


def operations(routes: Iterable[BaseRoute]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) for every method of every route, described or not."""
    out = []
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            op = OPERATIONS.get((method, route.path)) or _fallback(route)
            out.append((method, route.path, op))
    return out


def openapi_document(routes: Iterable[BaseRoute], *, version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, op in operations(routes):
        entry = paths.setdefault(_PARAM_RE.sub(r"{\1}", path), {})
        params = _path_parameters(path)
        operation = {**op, "operationId": f"{method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', path).strip('_')}"}
        if params:
            operation["parameters"] = params + list(op.get("parameters", []))
        entry[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "voiceq", "version": version,
                 "description": "Voice-cloning job queue: Chatterbox TTS on Ray Serve; OpenAI-compatible speech."},
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }
