"""Consent attestations, voice names and ids as clients send them: pure checks."""

from __future__ import annotations

import pytest

from serve_app.voice_validation import check_voice_id, check_voice_name, parse_consent
from voiceq.errors import InvalidInput
from voiceq.settings import Settings
from voiceq.voices import Consent

NOW = 1_800_000_000.0
OFF, REQUIRED = Settings(), Settings(require_consent=True)
FULL = {"consent_subject": "Ada L.", "consent_at": "2026-11-01T10:00:00Z", "consent_reference": "crm/consent/9"}


def test_consent_is_optional_by_default_and_read_whole_when_given() -> None:
    assert parse_consent({}, OFF, cloning=True, now=NOW) is None
    assert parse_consent(FULL, OFF, cloning=True, now=NOW) == Consent("Ada L.", 1_793_527_200.0, "crm/consent/9")
    assert parse_consent({**FULL, "consent_at": "1793527200"}, OFF, cloning=True, now=NOW).consented_at == 1_793_527_200.0


def test_required_consent_names_the_missing_field() -> None:
    with pytest.raises(InvalidInput) as missing:
        parse_consent({}, REQUIRED, cloning=True, now=NOW)
    assert (missing.value.field, missing.value.status_code) == ("consent_subject", 422)
    assert parse_consent({}, REQUIRED, cloning=False, now=NOW) is None  # reusing a consented voice
    assert parse_consent(FULL, REQUIRED, cloning=True, now=NOW) is not None


@pytest.mark.parametrize("change, field", [
    ({"consent_reference": ""}, "consent_reference"),
    ({"consent_at": None}, "consent_at"),
    ({"consent_at": "yesterday"}, "consent_at"),
    ({"consent_at": "2026-11-01T10:00:00"}, "consent_at"),  # no zone
    ({"consent_at": str(NOW + 3600)}, "consent_at"),  # in the future
    ({"consent_subject": "x" * 600}, "consent_subject"),
    ({"consent_subject": "bad\x00name"}, "consent_subject"),
])
def test_a_partial_or_malformed_attestation_is_refused(change: dict, field: str) -> None:
    form = {k: v for k, v in {**FULL, **change}.items() if v is not None}
    with pytest.raises(InvalidInput) as refused:
        parse_consent(form, OFF, cloning=True, now=NOW)
    assert refused.value.field == field


def test_voice_names_and_ids() -> None:
    assert check_voice_name("  Narrator ", OFF) == "Narrator"
    for bad in (None, "", "x" * 101, 3):
        with pytest.raises(InvalidInput):
            check_voice_name(bad, OFF)
    assert check_voice_id("voice_0123456789abcdef") == "voice_0123456789abcdef"
    with pytest.raises(InvalidInput) as refused:
        check_voice_id("voice_../../etc")
    assert refused.value.field == "voice_id"


def test_a_clone_request_without_consent_is_refused_when_it_is_required() -> None:
    from serve_app.validation import build_submission
    from tests.support.audio import voice_file

    form = {"user_id": "u1", "voice_name": "V"}
    with pytest.raises(InvalidInput) as refused:
        build_submission(form, voice_file("wav", seconds=1.5), REQUIRED)
    assert refused.value.field == "consent_subject" and refused.value.status_code == 422
    sub = build_submission({**form, **FULL}, voice_file("wav", seconds=1.5), REQUIRED, now=NOW)
    assert sub.consent == Consent("Ada L.", 1_793_527_200.0, "crm/consent/9")
    assert build_submission(form, voice_file("wav", seconds=1.5), OFF).consent is None  # the seed's curl
