"""Uploads people make decode to the model's format; everything else is refused by name."""

from __future__ import annotations

import pytest

from tests.support.audio import decode_mp3, voice_file, voice_like
from voiceq.audio import decode_upload, to_mp3
from voiceq.pcm import Clip, from_wav, to_wav
from voiceq.errors import InvalidInput

BOUNDS = dict(min_s=1.0, max_s=60.0)


@pytest.mark.parametrize("ext,rate", [("wav", 16_000), ("wav", 44_100), ("mp3", 44_100), ("mp3", 22_050),
                                      ("flac", 48_000), ("m4a", 44_100), ("webm", 48_000), ("ogg", 16_000)])
@pytest.mark.parametrize("channels", [1, 2])
def test_common_formats_rates_and_channel_counts_decode_to_24khz_mono(ext: str, rate: int, channels: int) -> None:
    clip = decode_upload(voice_file(ext, seconds=2.0, sample_rate=rate, channels=channels), **BOUNDS)
    assert clip.sample_rate == 24_000 and clip.samples.ndim == 1
    assert clip.seconds == pytest.approx(2.0, abs=0.1)
    assert 0.05 < float(abs(clip.samples).max()) <= 1.0


@pytest.mark.parametrize("data,status,words", [
    (b"", 400, "empty"),
    (b"this is plainly text, not audio" * 10, 415, "could not be decoded"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), 415, ""),
    (voice_file("mp3", seconds=3.0)[:150], 415, ""),
])
def test_undecodable_uploads_are_refused(data: bytes, status: int, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        decode_upload(data, **BOUNDS)
    assert err.value.status_code == status and err.value.field == "audio_file"
    assert words in err.value.message


def test_too_short_too_long_and_silent_clips_are_refused() -> None:
    with pytest.raises(InvalidInput, match="too short") as short:
        decode_upload(voice_file("wav", seconds=0.4), **BOUNDS)
    assert short.value.status_code == 422
    with pytest.raises(InvalidInput, match="longer than the 5 s limit") as long:
        decode_upload(voice_file("wav", seconds=6.0), min_s=1.0, max_s=5.0)
    assert long.value.status_code == 413
    silence = to_wav(Clip(voice_like(2.0) * 0.0, 24_000))
    with pytest.raises(InvalidInput, match="silent"):
        decode_upload(silence, **BOUNDS)


def test_wav_round_trip_and_mp3_output_is_playable() -> None:
    clip = Clip(voice_like(1.5), 24_000)
    back = from_wav(to_wav(clip))
    assert back.sample_rate == 24_000 and abs(len(back.samples) - len(clip.samples)) == 0
    assert float(abs(back.samples - clip.samples).max()) < 1e-3
    samples, rate = decode_mp3(to_mp3(clip))
    assert rate == 24_000 and len(samples) / rate == pytest.approx(1.5, abs=0.1)


@pytest.mark.parametrize("rate", [16_000, 24_000])
def test_a_mono_16bit_wav_decodes_to_exactly_its_samples(rate: int) -> None:
    import io
    import wave

    import numpy as np

    data = voice_file("wav", seconds=1.5, sample_rate=rate)
    with wave.open(io.BytesIO(data)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    clip = decode_upload(data, min_s=1.0, max_s=60.0, sample_rate=None)
    assert clip.sample_rate == rate and clip.samples.dtype == np.float32
    assert np.array_equal(clip.samples, pcm.astype(np.float32) / 32768.0)
    # At another rate than the file's, the resampler makes the model's rate.
    assert decode_upload(data, min_s=1.0, max_s=60.0).sample_rate == 24_000
