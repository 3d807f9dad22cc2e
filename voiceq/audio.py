"""Audio in and out: decode whatever people upload, encode what we send back.

Uploads are decoded at the edge to check them (format, duration, silence), so a file that cannot
be decoded is refused before anything is stored, and then stored as they came: the bytes cross
Ray once, at their own size, and are decoded once more where the model needs samples
(`decode_stored`). FFmpeg (through PyAV's wheels) reads mp3, wav, ogg/opus, flac, m4a/aac and
webm at any sample rate and channel count.
"""

from __future__ import annotations

import io
import time

import av
import numpy as np

from .audio_formats import ACCEPTED, MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, sniff_demuxer
from .errors import InvalidInput
from .pcm import Clip

MODEL_SR = 24_000

# Refusals a client can foresee (the onboarding page checks a file's duration before uploading
# it): one wording, filled in here and served to the page as templates (serve_app/page.py).
TOO_LONG = "audio_file is longer than the {max_s:g} s limit"
TOO_SHORT = "audio_file is too short: {seconds:.2f} s of audio, at least {min_s:g} s needed"


def _check_stream(stream: av.audio.stream.AudioStream) -> None:
    channels = stream.codec_context.channels
    rate = stream.codec_context.sample_rate or stream.rate or 0
    if not 1 <= channels <= MAX_CHANNELS:
        declared = f"{channels} channels" if channels else "no usable channel layout"
        raise InvalidInput(f"audio_file declares {declared}; 1 to {MAX_CHANNELS} channels are accepted",
                           field="audio_file", status_code=415)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InvalidInput(f"audio_file has a sample rate of {rate} Hz; accepted: {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz",
                           field="audio_file", status_code=415)


def decode_upload(data: bytes, *, min_s: float, max_s: float, sample_rate: int | None = MODEL_SR,
                  deadline_s: float = 10.0) -> Clip:
    """Decode an uploaded file to mono float32 at `sample_rate` (None: the file's own rate, which
    spares a resampling where only checking is needed), enforcing the duration bounds.

    Only accepted audio containers reach FFmpeg, each with its own demuxer named (nothing else
    is probed: no network protocols, playlists, concat lists or images). Decoding stops as soon
    as the clip is longer than `max_s`, so a long file costs no more than a short one to refuse,
    and gives up after `deadline_s` of work. Blocking: callers on an event loop run it in a thread."""
    if not data:
        raise InvalidInput("audio_file is empty", field="audio_file")
    demuxer = sniff_demuxer(data)
    if demuxer is None:
        raise InvalidInput(f"audio_file could not be decoded as audio: not an accepted format ({ACCEPTED})",
                           field="audio_file", status_code=415)
    deadline = time.monotonic() + deadline_s
    try:
        # FFmpeg's WAV demuxer reads up to 5 MB probing for what its header already says: most
        # of a submission's time on the ingress, for nothing (2 KB: 0.2 ms to open, 32 KB: 1.6 ms).
        options = {"probesize": "2048"} if demuxer == "wav" else {}
        container = av.open(io.BytesIO(data), mode="r", format=demuxer, options=options, timeout=deadline_s)
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as err:
        raise InvalidInput(
            f"audio_file could not be decoded as audio (accepted: {ACCEPTED})",
            field="audio_file",
            status_code=415,
        ) from err
    with container:
        streams = container.streams.audio
        if not streams:
            raise InvalidInput("audio_file contains no audio stream", field="audio_file", status_code=415)
        _check_stream(streams[0])
        sample_rate = sample_rate or streams[0].codec_context.sample_rate or streams[0].rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        n = 0
        limit = int(max_s * sample_rate)
        try:
            for frame in container.decode(streams[0]):
                if time.monotonic() > deadline:
                    raise InvalidInput(f"audio_file took more than {deadline_s:g} s to decode; send a plainer file",
                                       field="audio_file", status_code=422)
                direct = _mono_float(frame, sample_rate)
                for chunk in [direct] if direct is not None else (o.to_ndarray().reshape(-1)
                                                                  for o in resampler.resample(frame)):
                    chunks.append(chunk)
                    n += len(chunk)
                if n > limit:
                    raise InvalidInput(
                        TOO_LONG.format(max_s=max_s), field="audio_file", status_code=413
                    )
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
                n += chunks[-1].shape[0]
        except av.error.FFmpegError as err:
            raise InvalidInput(
                "audio_file is corrupt or truncated and could not be decoded", field="audio_file", status_code=415
            ) from err
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not np.all(np.isfinite(samples)):
        raise InvalidInput("audio_file decodes to invalid samples", field="audio_file", status_code=415)
    clip = Clip(np.clip(samples, -1.0, 1.0), sample_rate)
    if clip.seconds > max_s:
        raise InvalidInput(TOO_LONG.format(max_s=max_s), field="audio_file", status_code=413)
    if clip.seconds < min_s:
        raise InvalidInput(
            TOO_SHORT.format(seconds=clip.seconds, min_s=min_s),
            field="audio_file",
            status_code=422,
        )
    if float(np.max(np.abs(clip.samples))) < 1e-4:
        raise InvalidInput("audio_file is silent: no voice to clone", field="audio_file", status_code=422)
    return clip


def _mono_float(frame: av.AudioFrame, sample_rate: int) -> np.ndarray | None:
    """A mono 16-bit or float frame already at `sample_rate`, as float32 without the resampler
    (bit for bit what it makes: s16 / 32768; half a WAV check's time); None for anything else."""
    if frame.layout.nb_channels != 1 or frame.sample_rate != sample_rate:
        return None
    name = frame.format.name
    if name in ("s16", "s16p"):
        return frame.to_ndarray().reshape(-1).astype(np.float32) / np.float32(32768.0)
    if name in ("flt", "fltp"):
        return frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
    return None


def decode_stored(data: bytes, *, deadline_s: float = 30.0) -> Clip:
    """A stored upload (checked at the edge when it came in) as mono float32 at the model's rate."""
    return decode_upload(data, min_s=0.0, max_s=24 * 3600.0, deadline_s=deadline_s)


def to_mp3(clip: Clip, *, bitrate: int = 64_000) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=clip.sample_rate, layout="mono")
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(
            np.clip(clip.samples, -1.0, 1.0).astype(np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = clip.sample_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()
