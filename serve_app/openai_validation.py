"""What an OpenAI-style speech request may say, checked before anything is stored. Pure.

    {"model": "tts-1", "input": "Hello.", "voice": "voice_0123456789abcdef",
     "response_format": "mp3", "speed": 1.0}

`voice` is a voice id from the caller's voice library. OpenAI's model names (tts-1, tts-1-hd,
gpt-4o-mini-tts) mean this server's default model; the Chatterbox family's own names pick a
member. Extensions beyond OpenAI's fields: `language` (multilingual model), and the clone
route's generation settings (`exaggeration`, `cfg_weight`, `temperature`, `seed`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any, Mapping

from voiceq.audio_encode import DEFAULT_FORMAT, FORMAT_NAMES
from voiceq.audio_tempo import MAX_SPEED, MIN_SPEED
from voiceq.errors import InvalidInput
from voiceq.jobs import is_voice_id
from voiceq.models import MODELS, ModelChoiceError, check_choice
from voiceq.settings import Settings

from .validation import GENERATION_FIELDS, generation_params

# OpenAI's limit on `input`.
MAX_INPUT_CHARS = 4096
OPENAI_MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
KNOWN_FIELDS = frozenset({"model", "input", "voice", "response_format", "speed", "language", "instructions",
                          "stream_format", *GENERATION_FIELDS})


@dataclass(frozen=True)
class SpeechAsk:
    model: str
    text: str
    voice_id: str
    response_format: str = DEFAULT_FORMAT
    speed: float = 1.0
    language: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def served_model_ids(settings: Settings) -> list[str]:
    """What `/v1/models` lists: the served family members, then OpenAI's names for the default."""
    return [*settings.served_models, *OPENAI_MODEL_ALIASES]


def _string(body: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", field=name)
    return value


def _model(raw: str, language: str | None, params: Mapping[str, Any], settings: Settings) -> str:
    model = settings.served_models[0] if raw in OPENAI_MODEL_ALIASES else raw
    if model not in MODELS and model not in settings.served_models:
        raise InvalidInput(f"unknown model {raw!r}: choose one of {', '.join(served_model_ids(settings))}",
                           field="model")
    try:
        check_choice(model, language, params, served=settings.served_models)
    except ModelChoiceError as err:
        raise InvalidInput(err.message, field=err.field) from None
    return model


def parse_speech(body: Any, settings: Settings) -> SpeechAsk:
    """The request, or `InvalidInput` naming the first problem."""
    if not isinstance(body, dict):
        raise InvalidInput('expected a JSON object like {"model": "tts-1", "input": "...", "voice": "voice_..."}')
    unknown = sorted(k for k in body if k not in KNOWN_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", field=unknown[0])
    text = (_string(body, "input", required=True) or "").strip()
    if not text or not any(ch.isalnum() for ch in text):
        raise InvalidInput("input has no words to speak", field="input")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidInput(f"input is too long: {len(text)} characters, at most {MAX_INPUT_CHARS}", field="input")
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") and ch not in "\n\t\r":
            raise InvalidInput("input contains a control or invalid character", field="input")
    voice = _string(body, "voice", required=True) or ""
    if not is_voice_id(voice):
        raise InvalidInput("voice must be a voice id from your voice library (voice_ followed by 16 hex digits); "
                           "GET /v1/audio/voices lists them", field="voice")
    fmt = _string(body, "response_format", required=False) or DEFAULT_FORMAT
    if fmt not in FORMAT_NAMES:
        raise InvalidInput(f"response_format must be one of {', '.join(FORMAT_NAMES)}", field="response_format")
    if _string(body, "stream_format", required=False) not in (None, "audio"):
        raise InvalidInput("stream_format: only 'audio' is offered (audio bytes as they are made)",
                           field="stream_format")
    if body.get("instructions") is not None:
        raise InvalidInput("instructions are not supported by the Chatterbox models", field="instructions")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidInput(f"speed must be a number from {MIN_SPEED:g} to {MAX_SPEED:g}", field="speed")
    language = _string(body, "language", required=False)
    language = language.lower() if language else None
    # The clone route's checks of the generation settings, on their text form.
    settings_given = {k: str(body[k]) for k in GENERATION_FIELDS if body.get(k) is not None}
    for name in settings_given:
        if isinstance(body[name], bool) or not isinstance(body[name], (int, float)):
            raise InvalidInput(f"{name} must be a number", field=name)
    params = generation_params(settings_given)
    model = _model(_string(body, "model", required=True) or "", language, params, settings)
    return SpeechAsk(model=model, text=text, voice_id=voice, response_format=fmt, speed=float(speed),
                     language=language, params=params)
