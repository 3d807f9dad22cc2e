"""Requests for the Chatterbox family: which model and language a clone asks for, and the
voice-conversion route's form. Pure functions like `validation.py`: a form in, a choice or a
`Submission` or an `InvalidInput` naming the field out, before anything is stored."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from voiceq.audio import decode_upload
from voiceq.errors import InvalidInput
from voiceq.manager import Submission
from voiceq.models import CHATTERBOX, DEFAULT_MODEL, KIND_CONVERT, MODELS, ModelChoiceError, check_choice
from voiceq.settings import Settings

# Voice conversion is S3Gen with the target voice's reference (upstream's ChatterboxVC loads
# the English model's S3Gen), so it runs on the English model's deployment.
CONVERSION_MODEL = CHATTERBOX
DEFAULT_CONVERSION_NAME = "voice conversion"
# One wording for the server and the onboarding page, which checks it before uploading.
SHORT_REFERENCE = "model {model!r} needs a voice sample longer than {minimum:g} s (this one is {seconds:.1f} s)"


def _field(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a text field, not a file", field=name)
    value = value.strip()
    if len(value) > 64:
        raise InvalidInput(f"{name} is too long", field=name)
    return value or None


def model_choice(form: Mapping[str, Any], params: Mapping[str, Any], settings: Settings) -> tuple[str, str | None]:
    """(model, language) of a clone request; refuses unknown or unserved models, a language
    the model does not speak (or any language for an English-only model) and settings the
    model ignores."""
    model = _field(form, "model") or DEFAULT_MODEL
    language = _field(form, "language")
    if language is not None:
        language = language.lower()
    try:
        check_choice(model, language, params, served=settings.served_models)
    except ModelChoiceError as err:
        raise InvalidInput(err.message, field=err.field) from None
    return model, language


def check_reference(model: str, seconds: float) -> None:
    """Turbo's preparation asserts a reference of more than 5 s: refuse a shorter upload now."""
    minimum = MODELS[model].min_reference_s
    if seconds and seconds <= minimum:
        raise InvalidInput(SHORT_REFERENCE.format(model=model, minimum=minimum, seconds=seconds), field="audio_file")


def conversion_form(form: Mapping[str, Any]) -> dict[str, Any]:
    """The conversion form as the clone path's validation reads it (voice_name optional),
    after refusing the fields a conversion has no use for."""
    for name in ("model", "language", "sample_text", "exaggeration", "cfg_weight", "temperature"):
        if form.get(name) is not None:
            raise InvalidInput(f"voice conversion takes no {name}: it keeps the source's words and delivery",
                               field=name)
    fields = {k: v for k, v in form.items() if k not in ("audio_file", "source_audio")}
    fields.setdefault("voice_name", DEFAULT_CONVERSION_NAME)
    return fields


def build_conversion(source: bytes | None, settings: Settings, *, base: Submission) -> Submission:
    """A conversion job: `source_audio` spoken in the voice that `base` (the clone path's
    validation of the same form: user, target voice_id or audio_file sample, priority,
    callback, seed) names."""
    if source is None:
        raise InvalidInput("source_audio is required: the speech to convert", field="source_audio")
    if CONVERSION_MODEL not in settings.served_models:
        raise InvalidInput(f"voice conversion runs on {CONVERSION_MODEL!r}, which this deployment does not serve",
                           field="source_audio")
    try:
        decode_upload(source, min_s=settings.min_audio_s, max_s=settings.max_audio_s, sample_rate=None)
    except InvalidInput as err:  # the decoder names audio_file; here the culprit is the source
        raise InvalidInput(err.message.replace("audio_file", "source_audio"), field="source_audio",
                           status_code=err.status_code, code=err.code) from None
    return dataclasses.replace(
        base, sample_text="", model=CONVERSION_MODEL, language=None, kind=KIND_CONVERT, source_audio=source,
        params={k: v for k, v in base.params.items() if k == "seed"},
    )
