"""Stand-in engines for tests and the load test: same interface as ChatterboxEngine, a tone
instead of a model. Used where a test is about the queue, not the model; every end-to-end
test of the model path keeps the real engine."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from voiceq.audio import Clip
from voiceq.engine import EngineInfo, Synthesis, SynthesisRequest


@dataclass
class ToneVoice:
    pitch_hz: float


class ToneEngine:
    """Speaks every text as a tone whose pitch is the voice's; costs `batch_s + row_s * n` per batch.
    Texts containing `fail_marker` fail (alone), to exercise per-row failure."""

    def __init__(self, *, batch_s: float = 0.0, row_s: float = 0.0, fail_marker: str = "<<fail>>") -> None:
        self.batch_s = batch_s
        self.row_s = row_s
        self.fail_marker = fail_marker
        self.info = EngineInfo(name="tone", device="cpu", gpu_type="cpu", description="test tone engine")
        self.batches: list[list[str]] = []
        self.prepared = 0

    def prepare_voice(self, clip: Clip) -> ToneVoice:
        self.prepared += 1
        spectrum = np.abs(np.fft.rfft(clip.samples[: clip.sample_rate]))
        peak = float(np.argmax(spectrum[1:]) + 1) * clip.sample_rate / min(len(clip.samples), clip.sample_rate)
        return ToneVoice(pitch_hz=max(60.0, min(peak, 1000.0)))

    def voice_to_bytes(self, voice: ToneVoice) -> bytes:
        return f"{voice.pitch_hz:.3f}".encode()

    def voice_from_bytes(self, data: bytes) -> ToneVoice:
        return ToneVoice(pitch_hz=float(data.decode()))

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Synthesis | BaseException]:
        self.batches.append([r.key for r in requests])
        time.sleep(self.batch_s + self.row_s * len(requests))
        out: list[Synthesis | BaseException] = []
        for req in requests:
            if self.fail_marker in req.text:
                out.append(RuntimeError("tone engine was asked to fail"))
                continue
            seconds = 0.05 * max(1, len(req.text.split()))
            t = np.arange(int(24_000 * seconds)) / 24_000
            samples = (0.2 * np.sin(2 * np.pi * req.voice.pitch_hz * t)).astype(np.float32)
            out.append(Synthesis(samples, 24_000, speech_tokens=int(seconds * 25)))
        return out


def tone_engine_factory(settings: Any) -> ToneEngine:
    """For `compose(settings, engine_factory=...)`: Ray imports it by module path on the replica."""
    return ToneEngine(batch_s=0.05, row_s=0.01)


def stuck_tone_engine_factory(settings: Any) -> ToneEngine:
    """An engine whose every batch outlasts any shutdown grace: a batch is always in flight."""
    return ToneEngine(batch_s=300.0)
