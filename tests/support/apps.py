"""Serve application builders for tests that start the app the way developers do, with
`serve run CONFIG.yaml`: the real app, a stand-in engine chosen by import path."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from serve_app.builder import compose
from tests.support.engines import stuck_tone_engine_factory
from voiceq.settings import Settings


def stuck_engine_app(args: dict[str, Any]) -> Application:
    return compose(Settings.from_env(**(args or {})), engine_factory=stuck_tone_engine_factory)
