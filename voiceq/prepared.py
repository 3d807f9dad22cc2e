"""A job on its way through the engine: what it needs before (`Prepared`) and what it left in
storage after (`Produced`). Shared by the worker's pass-by-pass path and its continuous runs."""

from __future__ import annotations

from dataclasses import dataclass

from .engine import SynthesisRequest
from .engine.base import ConversionRequest
from .jobs import Job


@dataclass(frozen=True)
class Produced:
    """What the engine made for one job, already in storage, waiting to be recorded."""

    voice_id: str
    voice_key: str
    result_key: str
    speech_tokens: int
    audio_seconds: float
    new_voice: bool
    # blobs this job created for its voice (a new voice's reference, a model's conditionals):
    # removed again if its result is discarded
    voice_blobs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """A claimed job ready for the engine: its voice and request, built off the engine's thread."""

    job: Job
    voice_id: str
    created: list[str]  # blobs created for its voice (removed again if the job fails)
    request: SynthesisRequest | None = None
    conversion: ConversionRequest | None = None
