"""The engine interface: the only code that touches a model.

An engine turns an uploaded clip into a reusable voice, and texts spoken in voices into
waveforms, many at a time. `synthesize` returns one outcome per request, in order; a request
that fails comes back as its exception so the rest of the batch still completes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..pcm import Clip


@dataclass(frozen=True)
class GenerationParams:
    exaggeration: float = 0.5
    cfg_weight: float = 0.5
    temperature: float = 0.8
    repetition_penalty: float = 1.2
    min_p: float = 0.05
    top_p: float = 1.0
    max_speech_tokens: int | None = None
    seed: int | None = None
    top_k: int = 0  # 0: off; Turbo's default (voiceq.models) is 1000


@dataclass(frozen=True)
class SynthesisRequest:
    key: str
    voice: Any  # what the engine's prepare_voice / load_voice returned
    text: str
    params: GenerationParams = field(default_factory=GenerationParams)
    language: str | None = None  # ISO 639-1, the multilingual model only


@dataclass(frozen=True)
class ConversionRequest:
    """Voice conversion: say what `source` says, in `voice`."""

    key: str
    voice: Any
    source: Clip
    seed: int | None = None


@dataclass(frozen=True)
class Synthesis:
    samples: np.ndarray  # (n,) float32 mono
    sample_rate: int
    speech_tokens: int

    @property
    def clip(self) -> Clip:
        return Clip(self.samples, self.sample_rate)

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class EngineInfo:
    name: str
    device: str
    gpu_type: str  # "cuda", "rocm" or "cpu", reported in each job's workerInfo
    description: str = ""
    max_speech_tokens: int | None = None


@runtime_checkable
class Engine(Protocol):
    info: EngineInfo

    def prepare_voice(self, clip: Clip) -> Any: ...

    def voice_to_bytes(self, voice: Any) -> bytes: ...

    def voice_from_bytes(self, data: bytes) -> Any: ...

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Synthesis | BaseException]: ...
