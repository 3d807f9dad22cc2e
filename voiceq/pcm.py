"""Audio as the model sees it: mono float32 samples in memory, and 16-bit WAV bytes.

The standard library and numpy alone: the engine and everything that only moves samples
around import this, not FFmpeg (`voiceq.audio`), so the engine runs where PyAV is not
installed (a bare GPU machine running the benchmarks).
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clip:
    samples: np.ndarray  # (n,) float32 in [-1, 1], mono
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def to_wav(clip: Clip) -> bytes:
    pcm = (np.clip(clip.samples, -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(clip.sample_rate)
        out.writeframes(pcm.tobytes())
    return buf.getvalue()


def from_wav(data: bytes) -> Clip:
    with wave.open(io.BytesIO(data), "rb") as src:
        if src.getsampwidth() != 2:
            raise ValueError("expected 16-bit PCM WAV")
        pcm = np.frombuffer(src.readframes(src.getnframes()), dtype="<i2")
        if src.getnchannels() > 1:
            pcm = pcm.reshape(-1, src.getnchannels()).mean(axis=1)
        return Clip((pcm.astype(np.float32) / 32767.0), src.getframerate())
