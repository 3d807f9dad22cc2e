"""Speech made faster or slower without changing its pitch (OpenAI's `speed`, 0.25-4.0).

Chatterbox has no speed control of its own, so the finished audio is time-stretched with
FFmpeg's `atempo` filter (through PyAV), which takes factors of 0.5-2.0 per stage: other
factors are a chain of stages.
"""

from __future__ import annotations

import av
import av.filter
import numpy as np

MIN_SPEED = 0.25
MAX_SPEED = 4.0


def tempo_stages(speed: float) -> list[float]:
    """`speed` as factors within atempo's 0.5-2.0 whose product is `speed`."""
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be between {MIN_SPEED:g} and {MAX_SPEED:g}")
    stages: list[float] = []
    while speed > 2.0:
        stages.append(2.0)
        speed /= 2.0
    while speed < 0.5:
        stages.append(0.5)
        speed /= 0.5
    return stages + [speed]


def change_speed(samples: np.ndarray, sample_rate: int, speed: float) -> np.ndarray:
    """The samples ((n,) float32 mono) spoken `speed` times as fast, at the same pitch and rate."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if speed == 1.0 or not len(samples):
        return samples
    graph = av.filter.Graph()
    chain = [graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono")]
    chain += [graph.add("atempo", f"{factor:.6f}") for factor in tempo_stages(speed)]
    chain.append(graph.add("aformat", f"sample_fmts=flt:channel_layouts=mono:sample_rates={sample_rate}"))
    chain.append(graph.add("abuffersink"))
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = 0
    graph.push(frame)
    graph.push(None)
    out: list[np.ndarray] = []
    while True:
        try:
            out.append(graph.pull().to_ndarray().reshape(-1))
        except (av.error.BlockingIOError, av.error.EOFError):
            break
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
