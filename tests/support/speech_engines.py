"""A stand-in engine whose passes cost what a model's would grow with: a fixed part plus a
part per character of text in the pass (so a pass holding a long text's chunks takes longer
than one holding a sentence). For the streaming benchmark and the light client's test."""

from __future__ import annotations

import time
from typing import Any, Sequence

from tests.support.engines import ToneEngine
from voiceq.engine import Synthesis, SynthesisRequest


class PacedToneEngine(ToneEngine):
    def __init__(self, *, pass_s: float = 0.3, char_s: float = 0.004) -> None:
        super().__init__()
        self.pass_s = pass_s
        self.char_s = char_s

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Synthesis | BaseException]:
        time.sleep(self.pass_s + self.char_s * sum(len(r.text) for r in requests))
        return super().synthesize(requests)


def paced_tone_engine_factory(settings: Any) -> PacedToneEngine:
    return PacedToneEngine()
