"""Perth watermark detection: does an audio clip carry the imperceptible watermark that
Chatterbox puts on every clip it makes (and so every clip voiceq returns)?

Resemble AI's `perth.PerthImplicitWatermarker` ships its weights inside the package, so this
runs offline, on the CPU, in well under a second for a short clip. Its decoder gives a score
per clip from 0 (no watermark) to 1; voiceq reports that score as the confidence.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .pcm import Clip

DETECTOR = "perth.PerthImplicitWatermarker"
THRESHOLD = 0.5

_lock = threading.Lock()
_detector: Any = None


@dataclass(frozen=True)
class Detection:
    watermarked: bool
    confidence: float


def _load() -> Any:
    global _detector
    with _lock:
        if _detector is None:
            import perth

            _detector = perth.PerthImplicitWatermarker()
        return _detector


def decide(score: float) -> Detection:
    score = float(np.clip(score, 0.0, 1.0))
    return Detection(watermarked=score >= THRESHOLD, confidence=round(score, 4))


def detect(clip: Clip) -> Detection:
    """Blocking (a model forward pass): call it from a thread in async code."""
    detector = _load()
    with _lock:  # the detector's modules are not safe to run from two threads at once
        score = detector.get_watermark(np.asarray(clip.samples, dtype=np.float32), sample_rate=clip.sample_rate,
                                       round=False)
    return decide(float(np.mean(score)))
