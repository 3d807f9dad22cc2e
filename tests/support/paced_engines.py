"""A stand-in engine for the onboarding page's browser tests: the page is under test, not the
model (tests/serve_app/test_api.py runs the real one), but each batch takes long enough that
a person, and the test, can watch the job sit in "processing"."""

from __future__ import annotations

from typing import Any

from tests.support.engines import ToneEngine


def paced_tone_engine_factory(settings: Any) -> ToneEngine:
    """For `compose(settings, engine_factory=...)`: Ray imports it by module path on the replica."""
    return ToneEngine(batch_s=1.5)
