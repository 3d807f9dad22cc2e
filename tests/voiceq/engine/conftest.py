"""Fixtures for the engine tests: the random-weight checkpoint (made once, cached), a CPU
engine on it and a few prepared voices of different reference lengths."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest

from tests.support.audio import voice_like

REPO = Path(__file__).resolve().parents[3]
CHECKPOINT_VERSION = "v1"


@pytest.fixture(scope="session")
def engine_checkpoint_dir() -> Path:
    """The random-weight test checkpoint (~20 s and 1 GB to write), kept in the cache
    between runs; the same folder and marker the suite-wide fixture uses."""
    from voiceq.engine.checkpoint import make_test_checkpoint

    path = Path(os.environ.get("VOICEQ_TEST_CACHE", REPO / ".cache")) / f"test-checkpoint-{CHECKPOINT_VERSION}"
    done = path / ".complete"
    if not done.exists():
        if path.exists():
            shutil.rmtree(path)
        make_test_checkpoint(path)
        done.write_text("ok\n")
    return path


@pytest.fixture(scope="session")
def engine(engine_checkpoint_dir: Path):
    from voiceq.engine.chatterbox import ChatterboxEngine

    return ChatterboxEngine.load(engine_checkpoint_dir, device="cpu")


@pytest.fixture(scope="session")
def voices(engine) -> list:
    """Three voices; their references (1.5, 2, 2.5 s) give T3 prompts and S3Gen prompts of
    different lengths, and short ones keep S3Gen cheap."""
    from voiceq.audio import Clip

    with warnings.catch_warnings():
        # prepare_conditionals reads the clip with librosa, whose audioread backend imports
        # the stdlib's aifc/sunau (deprecated in 3.11) on first use.
        warnings.filterwarnings("ignore", message="'(aifc|sunau|audioop)' is deprecated", category=DeprecationWarning)
        return [
            engine.prepare_voice(Clip(voice_like(seconds, seed=i, pitch_hz=100.0 + 40 * i), 24_000))
            for i, seconds in enumerate([1.5, 2.0, 2.5])
        ]
