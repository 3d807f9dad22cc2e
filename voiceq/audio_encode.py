"""Audio out in the formats clients ask for: mp3, opus, aac, flac, wav and raw pcm.

The same six as OpenAI's speech API. A clip can be encoded whole (`encode`), or a stream of
clips as they are made (`StreamEncoder`): each `feed` returns the bytes ready so far, so a
response can send them at once; the concatenation of everything returned is one valid file.
mp3, aac (ADTS), opus (Ogg) and flac are encoded by FFmpeg through PyAV, writing to a sink
that cannot seek (FFmpeg then leaves headers as first written, which every decoder accepts);
wav is written by hand with the "unknown length" sizes streaming servers use, pcm is bare
16-bit little-endian samples at the clip's rate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from .pcm import Clip, to_wav


@dataclass(frozen=True)
class AudioFormat:
    name: str
    media_type: str
    extension: str
    codec: str | None = None  # FFmpeg encoder; None: written here
    container: str | None = None
    bit_rate: int | None = None


FORMATS: dict[str, AudioFormat] = {
    "mp3": AudioFormat("mp3", "audio/mpeg", "mp3", "libmp3lame", "mp3", 64_000),
    "opus": AudioFormat("opus", "audio/ogg", "opus", "libopus", "ogg", 32_000),
    "aac": AudioFormat("aac", "audio/aac", "aac", "aac", "adts", 64_000),
    "flac": AudioFormat("flac", "audio/flac", "flac", "flac", "flac"),
    "wav": AudioFormat("wav", "audio/wav", "wav"),
    "pcm": AudioFormat("pcm", "audio/pcm", "pcm"),
}
DEFAULT_FORMAT = "mp3"
FORMAT_NAMES = tuple(FORMATS)


def audio_format(name: str) -> AudioFormat:
    """The format called `name`; ValueError naming the choices otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unsupported audio format {name!r}: choose one of {', '.join(FORMATS)}") from None


def result_format(job: Any) -> AudioFormat:
    """The format a job's result is stored in: `response_format` in its record, else MP3."""
    return audio_format(str(job.extra.get("response_format") or DEFAULT_FORMAT))


def _pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "until the end of the stream" (0xFFFFFFFF)."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", unknown))


class _Sink:
    """A write-only file for FFmpeg: collects what the muxer writes until it is taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class StreamEncoder:
    """Encodes clips of one sample rate, one after another, into one file in `fmt`."""

    def __init__(self, fmt: str | AudioFormat, sample_rate: int) -> None:
        self.format = fmt if isinstance(fmt, AudioFormat) else audio_format(fmt)
        self.sample_rate = sample_rate
        self._started = False
        self._closed = False
        self._sink = _Sink()
        self._container = None
        self._stream = None
        if self.format.codec is not None:
            self._container = av.open(self._sink, mode="w", format=self.format.container)
            self._stream = self._container.add_stream(self.format.codec, rate=sample_rate, layout="mono")
            if self.format.bit_rate:
                self._stream.bit_rate = self.format.bit_rate

    def feed(self, samples: np.ndarray) -> bytes:
        """Encode these samples ((n,) float32 mono); the bytes ready so far (may be empty)."""
        if self._closed:
            raise RuntimeError("the encoder is closed")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._container is None:
            head = b""
            if not self._started and self.format.name == "wav":
                head = streaming_wav_header(self.sample_rate)
            self._started = True
            return head + _pcm16(samples)
        self._started = True
        if len(samples):
            frame = av.AudioFrame.from_ndarray(np.clip(samples, -1.0, 1.0).reshape(1, -1), format="flt",
                                               layout="mono")
            frame.sample_rate = self.sample_rate
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._sink.take()

    def close(self) -> bytes:
        """Flush the encoder; the last bytes of the file."""
        if self._closed:
            return b""
        self._closed = True
        if self._container is None:
            return b"" if self._started or self.format.name != "wav" else streaming_wav_header(self.sample_rate)
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()


def encode(clip: Clip, fmt: str | AudioFormat) -> bytes:
    """The whole clip as one file in `fmt` (wav with its real sizes)."""
    spec = fmt if isinstance(fmt, AudioFormat) else audio_format(fmt)
    if spec.name == "wav":
        return to_wav(clip)
    encoder = StreamEncoder(spec, clip.sample_rate)
    return encoder.feed(clip.samples) + encoder.close()
