"""Stand-in engines for tests and the load test: same interface as ChatterboxEngine, a tone
instead of a model. Used where a test is about the queue, not the model; every end-to-end
test of the model path keeps the real engine."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from voiceq.pcm import Clip
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


class StreamingToneEngine(ToneEngine):
    """A tone engine with the real engine's continuous interface (`run_session`,
    `request_cost`): a fixed number of slots, each request holding one slot for one `step_s`
    step per word, so long and short jobs finish at different times and late ones can join.
    Records, per request, the steps it waited and the keys already decoding when it joined."""

    def __init__(self, *, slots: int = 4, step_s: float = 0.01, **kw: Any) -> None:
        super().__init__(**kw)
        self.slots = slots
        self.step_s = step_s
        self.sessions = 0
        self.joined: dict[str, set[str]] = {}  # key -> keys decoding when it was admitted

    def request_cost(self, req: SynthesisRequest) -> Any:
        from voiceq.engine.chatterbox import RequestCost

        words = max(1, len(req.text.split()))
        return RequestCost(chunks=1, model_rows=1, max_speech_tokens=words, expected_speech_tokens=words)

    def run_session(self, feed: Any, emit: Any) -> None:
        self.sessions += 1
        running: dict[str, tuple[SynthesisRequest, int]] = {}  # key -> (request, steps left)
        while True:
            idle = not running
            for req in feed(self.slots - len(running), idle):
                self.joined[req.key] = set(running)
                running[req.key] = (req, max(1, len(req.text.split())))
            if not running:
                if idle:
                    return
                continue
            time.sleep(self.step_s)
            for key, (req, left) in list(running.items()):
                if left > 1:
                    running[key] = (req, left - 1)
                    continue
                del running[key]
                emit(key, self.synthesize([req])[0])
