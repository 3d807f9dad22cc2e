"""Validation of what clients send. Pure functions: a form in, a `Submission` or `InvalidInput` out.

Everything is checked before anything is stored, and every refusal names the field and
the problem.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
from typing import Any, Mapping

from voiceq.audio import decode_upload
from voiceq.audio_encode import DEFAULT_FORMAT, FORMAT_NAMES
from voiceq.errors import InvalidInput
from voiceq.jobs import is_job_id, is_voice_id
from voiceq.manager import Submission
from voiceq.quotas import UNLIMITED, KeyLimits, check_priority
from voiceq.settings import Settings
from voiceq.webhooks import check_callback_url

from voiceq.models import DEFAULT_MODEL

from .family import check_reference, model_choice
from .voice_validation import parse_consent

DEFAULT_SAMPLE_TEXT = "Hello, this is my cloned voice."
MAX_USER_ID_CHARS = 128
_USER_ID_RE = re.compile(r"^[A-Za-z0-9_.@:+\-]+$")
_IDEMPOTENCY_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")

# Refusals the onboarding page foresees before uploading, in one wording (serve_app/page.py
# serves them to it as templates).
REQUIRED = "{name} is required"
TOO_MANY_CHARS = "{name} is too long: {length} characters, at most {max_chars}"
TOO_LARGE = "{field} is too large: {size} bytes, at most {max_bytes}"

# name: (low, high, type)
GENERATION_FIELDS: dict[str, tuple[float, float, type]] = {
    "exaggeration": (0.0, 2.0, float),
    "cfg_weight": (0.0, 1.0, float),
    "temperature": (0.05, 2.0, float),
    "seed": (0, 2**31 - 1, int),
}


def _text_field(form: Mapping[str, Any], name: str, *, required: bool, max_chars: int,
                allow_newlines: bool = False) -> str | None:
    value = form.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(REQUIRED.format(name=name), field=name)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a text field, not a file", field=name)
    value = value.strip()
    if len(value) > max_chars:
        raise InvalidInput(TOO_MANY_CHARS.format(name=name, length=len(value), max_chars=max_chars), field=name)
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") and not (allow_newlines and ch in "\n\t"):
            raise InvalidInput(f"{name} contains a control or invalid character", field=name)
    return value


def check_response_format(value: str | None) -> str:
    """The audio format a result is made in; MP3 (the seed's) when none is asked for."""
    if value is None:
        return DEFAULT_FORMAT
    if value not in FORMAT_NAMES:
        raise InvalidInput(f"response_format must be one of {', '.join(FORMAT_NAMES)}", field="response_format")
    return value


def check_job_id(job_id: str) -> str:
    if not is_job_id(job_id):
        raise InvalidInput("malformed job id: expected a UUID like 123e4567-e89b-42d3-a456-426614174000",
                           field="job_id")
    return job_id


def check_limit(raw: str | None, *, default: int, maximum: int) -> int:
    """A listing's `limit` query parameter."""
    try:
        limit = int(raw) if raw is not None else default
    except ValueError:
        raise InvalidInput("limit must be an integer", field="limit") from None
    if not 1 <= limit <= maximum:
        raise InvalidInput(f"limit must be between 1 and {maximum}", field="limit")
    return limit


def check_user_id(user_id: str) -> str:
    if len(user_id) > MAX_USER_ID_CHARS or not _USER_ID_RE.match(user_id):
        raise InvalidInput(
            "user_id may only hold letters, digits and . _ @ : + - (at most 128 characters)", field="user_id"
        )
    return user_id


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not _IDEMPOTENCY_RE.match(key):
        raise InvalidInput("Idempotency-Key must be 1-128 characters of letters, digits and . _ : -",
                           field="Idempotency-Key")
    return key


def generation_params(form: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, (low, high, kind) in GENERATION_FIELDS.items():
        raw = _text_field(form, name, required=False, max_chars=32)
        if raw is None:
            continue
        try:
            value = kind(raw)
        except ValueError:
            raise InvalidInput(f"{name} must be {'an integer' if kind is int else 'a number'}", field=name) from None
        if value != value or not (low <= value <= high):  # NaN fails the first test
            raise InvalidInput(f"{name} must be between {low:g} and {high:g}", field=name)
        params[name] = value
    return params


async def read_upload(upload: Any, settings: Settings, field: str = "audio_file") -> bytes:
    """Read an UploadFile, refusing it once it passes the byte limit."""
    if not hasattr(upload, "read"):
        raise InvalidInput(f"{field} must be a file upload (multipart/form-data)", field=field)
    size = getattr(upload, "size", None)
    if size is not None and size > settings.max_upload_bytes:
        raise InvalidInput(
            TOO_LARGE.format(field=field, size=size, max_bytes=settings.max_upload_bytes), field=field,
            status_code=413,
        )
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise InvalidInput(f"{field} is too large: at most {settings.max_upload_bytes} bytes",
                           field=field, status_code=413)
    return data


def request_fingerprint(*, audio: bytes | None, **fields: Any) -> str:
    """What a request asked for, as one digest: the same Idempotency-Key with another digest is
    another request (422), not a retry."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    digest.update(hashlib.sha256(audio).digest() if audio is not None else b"no audio")
    return digest.hexdigest()


def build_submission(
    form: Mapping[str, Any],
    audio: bytes | None,
    settings: Settings,
    *,
    owner: str | None = None,
    idempotency_key: str | None = None,
    admin: bool = False,
    now: float | None = None,
    limits: KeyLimits = UNLIMITED,
) -> Submission:
    """Validate every field and check the audio by decoding it; raises `InvalidInput` on the
    first problem. The audio is kept as it came (the worker decodes it for the model)."""
    user_id = check_user_id(_text_field(form, "user_id", required=True, max_chars=MAX_USER_ID_CHARS) or "")
    voice_name = _text_field(form, "voice_name", required=True, max_chars=settings.max_name_chars) or ""
    sample_text = _text_field(form, "sample_text", required=False, max_chars=settings.max_text_chars,
                              allow_newlines=True) or DEFAULT_SAMPLE_TEXT
    if not any(ch.isalnum() for ch in sample_text):
        raise InvalidInput("sample_text has no words to speak", field="sample_text")
    voice_id = _text_field(form, "voice_id", required=False, max_chars=64)
    if voice_id is not None and not is_voice_id(voice_id):
        raise InvalidInput("malformed voice_id: expected voice_ followed by 16 hex digits", field="voice_id")
    if voice_id is not None and audio is not None:
        raise InvalidInput("send either audio_file or voice_id, not both", field="audio_file")
    if voice_id is None and audio is None:
        raise InvalidInput("audio_file is required (or voice_id of a voice cloned before)", field="audio_file")
    params = generation_params(form)
    response_format = check_response_format(_text_field(form, "response_format", required=False, max_chars=16))
    model, language = model_choice(form, params, settings)
    consent = parse_consent(form, settings, cloning=voice_id is None, now=time.time() if now is None else now)
    priority_raw = _text_field(form, "priority", required=False, max_chars=8)
    priority = 0
    if priority_raw is not None:
        try:
            priority = int(priority_raw)
        except ValueError:
            raise InvalidInput("priority must be an integer from -10 to 10", field="priority") from None
        if not -10 <= priority <= 10:
            raise InvalidInput("priority must be an integer from -10 to 10", field="priority")
        check_priority(priority, limits)
    callback_url = _text_field(form, "callback_url", required=False, max_chars=2048)
    if callback_url is not None:
        if not re.match(r"^https?://[^\s/$.?#][^\s]*$", callback_url):
            raise InvalidInput("callback_url must be an http(s) URL", field="callback_url")
        if not settings.webhook_secret:
            raise InvalidInput("callback_url is not available: this server has no VOICEQ_WEBHOOK_SECRET to sign with",
                               field="callback_url")
        check_callback_url(callback_url, allow_private=settings.webhook_allow_private)

    seconds = 0.0
    if audio is not None:
        clip = decode_upload(audio, min_s=settings.min_audio_s, max_s=settings.max_audio_s, sample_rate=None)
        seconds = round(clip.seconds, 3)
        check_reference(model, seconds)
    key = check_idempotency_key(idempotency_key)
    # The family's choice is part of the request: the same key with another model is another request.
    family = {"model": model, **({"language": language} if language else {})} if model != DEFAULT_MODEL else {}
    if response_format != DEFAULT_FORMAT:
        family["response_format"] = response_format
    fingerprint = request_fingerprint(
        user_id=user_id, voice_name=voice_name, sample_text=sample_text, voice_id=voice_id,
        params={**params, **family}, priority=priority, callback_url=callback_url, audio=audio,
    ) if key is not None else None
    return Submission(
        request_hash=fingerprint,
        user_id=user_id,
        voice_name=voice_name,
        sample_text=sample_text,
        audio=audio,
        audio_seconds=seconds,
        voice_id=voice_id,
        priority=priority,
        idempotency_key=key,
        owner=owner,
        callback_url=callback_url,
        params=params,
        model=model,
        language=language,
        admin=admin,
        consent=consent,
        limits=limits,
        response_format=response_format,
    )
