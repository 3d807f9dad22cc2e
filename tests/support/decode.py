"""Decode what the speech routes send, in any of the six formats, to count its samples."""

from __future__ import annotations

import io

import av
import numpy as np

# FFmpeg demuxer per response format (pcm is bare s16le at 24 kHz, mono).
DEMUXERS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav", "pcm": "s16le"}


def decode_any(data: bytes, fmt: str, *, sample_rate: int = 24_000) -> tuple[np.ndarray, int]:
    """(mono float32 samples at `sample_rate`, that rate) of a file in `fmt`, decoded by FFmpeg."""
    options = {"sample_rate": str(sample_rate), "ch_layout": "mono"} if fmt == "pcm" else {}
    with av.open(io.BytesIO(data), mode="r", format=DEMUXERS[fmt], options=options) as container:
        stream = container.streams.audio[0]
        # Opus decodes at 48 kHz whatever it was made from: resample to compare lengths.
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        parts = [out.to_ndarray().reshape(-1) for frame in container.decode(stream) for out in resampler.resample(frame)]
        parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), sample_rate
