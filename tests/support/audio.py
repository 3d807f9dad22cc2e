"""Voice-like test clips, encoded the way users' files arrive (mp3, wav, flac, m4a, webm...)."""

from __future__ import annotations

import io

import av
import numpy as np


def voice_like(seconds: float = 3.0, sample_rate: int = 24_000, *, seed: int = 0, pitch_hz: float = 140.0) -> np.ndarray:
    """A harmonic tone with a wandering pitch and syllable-like envelope: enough structure for
    the model's reference encoders, no speech needed. (n,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = pitch_hz * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    wave = sum((0.5 / k) * np.sin(k * phase) for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    noise = 0.01 * rng.standard_normal(len(t))
    return (0.3 * wave * envelope + noise).astype(np.float32)


FORMATS = {
    # extension: (container format, codec, sample format)
    "wav": ("wav", "pcm_s16le", "s16"),
    "mp3": ("mp3", "libmp3lame", "fltp"),
    "flac": ("flac", "flac", "s16"),
    "m4a": ("ipod", "aac", "fltp"),
    "webm": ("webm", "libopus", "flt"),
    "ogg": ("ogg", "libopus", "flt"),
}


def encode(samples: np.ndarray, sample_rate: int, ext: str, *, channels: int = 1) -> bytes:
    container_fmt, codec, sample_fmt = FORMATS[ext]
    if codec == "libopus" and sample_rate not in (8000, 12000, 16000, 24000, 48000):
        raise ValueError("opus needs 8/12/16/24/48 kHz")
    layout = "mono" if channels == 1 else "stereo"
    data = np.stack([samples] * channels).astype(np.float32)  # (channels, n)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_fmt) as out:
        stream = out.add_stream(codec, rate=sample_rate, layout=layout)
        planar = sample_fmt.endswith("p")
        if sample_fmt.startswith("s16"):
            arr = (np.clip(data, -1, 1) * 32767).astype(np.int16)
        else:
            arr = data
        frame_data = arr if planar else arr.T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(frame_data), format=sample_fmt, layout=layout)
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def voice_file(ext: str = "wav", seconds: float = 3.0, sample_rate: int = 24_000, *, channels: int = 1,
               seed: int = 0) -> bytes:
    return encode(voice_like(seconds, sample_rate, seed=seed), sample_rate, ext, channels=channels)


def decode_mp3(data: bytes) -> tuple[np.ndarray, int]:
    """Decode MP3 bytes as a player would; raises if it is not playable MP3."""
    with av.open(io.BytesIO(data), format="mp3") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name in ("mp3", "mp3float"), stream.codec_context.name
        chunks = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        return np.concatenate(chunks), stream.rate
