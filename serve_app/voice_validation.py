"""Validation of what clients send about voices: consent attestations, voice names and ids.
Pure functions, like serve_app/validation.py: a value in, a value or `InvalidInput` out."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any, Mapping

from voiceq.errors import InvalidInput
from voiceq.jobs import is_voice_id
from voiceq.settings import Settings
from voiceq.voices import Consent

CONSENT_FIELDS = ("consent_subject", "consent_at", "consent_reference")
MAX_CONSENT_CHARS = 512
CONSENT_REQUIRED = ("consent_subject is required: this server clones a voice only with a consent attestation "
                    "(consent_subject, consent_at, consent_reference)")
# Consent given more than this far in the future is a clock or typing error.
_FUTURE_SLACK_S = 300.0


def _clean(value: Any, field: str, max_chars: int) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a text field, not a file", field=field)
    value = value.strip()
    if len(value) > max_chars:
        raise InvalidInput(f"{field} is too long: {len(value)} characters, at most {max_chars}", field=field)
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") for ch in value):
        raise InvalidInput(f"{field} contains a control or invalid character", field=field)
    return value


def parse_time(value: str, field: str) -> float:
    """Unix seconds, or an ISO 8601 time with a zone (2026-11-29T16:00:00Z)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{field} must be Unix seconds or an ISO 8601 time such as 2026-11-29T16:00:00Z",
                           field=field) from None
    if when.tzinfo is None:
        raise InvalidInput(f"{field} needs a time zone (e.g. a trailing Z for UTC)", field=field)
    return when.timestamp()


def parse_consent(form: Mapping[str, Any], settings: Settings, *, cloning: bool, now: float) -> Consent | None:
    """The consent attestation of a clone request: who consented (`consent_subject`), when
    (`consent_at`) and where the record of it is (`consent_reference`). All three or none;
    required for new clones when VOICEQ_REQUIRE_CONSENT is on."""
    values = {name: _clean(form.get(name), name, MAX_CONSENT_CHARS) for name in CONSENT_FIELDS}
    if all(v is None for v in values.values()):
        if settings.require_consent and cloning:
            raise InvalidInput(CONSENT_REQUIRED, field="consent_subject", status_code=422)
        return None
    for name in CONSENT_FIELDS:
        if values[name] is None:
            raise InvalidInput(f"{name} is required with the other consent fields", field=name, status_code=422)
    at = parse_time(values["consent_at"] or "", "consent_at")
    if at != at or at <= 0 or at > now + _FUTURE_SLACK_S:
        raise InvalidInput("consent_at must be a time in the past", field="consent_at", status_code=422)
    return Consent(subject=values["consent_subject"] or "", consented_at=at,
                   reference=values["consent_reference"] or "")


def check_voice_id(voice_id: str) -> str:
    if not is_voice_id(voice_id):
        raise InvalidInput("malformed voice id: expected voice_ followed by 16 hex digits", field="voice_id")
    return voice_id


def check_voice_name(value: Any, settings: Settings) -> str:
    name = _clean(value, "name", settings.max_name_chars)
    if name is None:
        raise InvalidInput("name is required", field="name")
    return name
