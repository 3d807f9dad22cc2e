"""Fixtures for the engine tests: a CPU engine on the suite's random-weight checkpoint
(tests/conftest.py) and a few prepared voices of different reference lengths."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.support.audio import voice_like


@pytest.fixture(scope="session")
def engine(checkpoint_dir: Path):
    from voiceq.engine.chatterbox import ChatterboxEngine

    return ChatterboxEngine.load(checkpoint_dir, device="cpu")


@pytest.fixture(scope="session")
def voices(engine) -> list:
    """Three voices; their references (1.5, 2, 2.5 s) give T3 prompts and S3Gen prompts of
    different lengths, and short ones keep S3Gen cheap."""
    from voiceq.pcm import Clip

    with warnings.catch_warnings():
        # prepare_conditionals reads the clip with librosa, whose audioread backend imports
        # the stdlib's aifc/sunau (deprecated in 3.11) on first use.
        warnings.filterwarnings("ignore", message="'(aifc|sunau|audioop)' is deprecated", category=DeprecationWarning)
        return [
            engine.prepare_voice(Clip(voice_like(seconds, seed=i, pitch_hz=100.0 + 40 * i), 24_000))
            for i, seconds in enumerate([1.5, 2.0, 2.5])
        ]


@pytest.fixture(scope="session")
def turbo_engine(turbo_checkpoint_dir: Path):
    from voiceq.engine.family import TurboEngine

    return TurboEngine.load(turbo_checkpoint_dir, device="cpu")


@pytest.fixture(scope="session")
def multilingual_engine(multilingual_checkpoint_dir: Path):
    from voiceq.engine.family import MultilingualEngine

    return MultilingualEngine.load(multilingual_checkpoint_dir, device="cpu")
