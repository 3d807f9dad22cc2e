"""Every response format decodes back to the audio that went in, whole or streamed in pieces."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.decode import decode_any
from voiceq.pcm import Clip
from voiceq.audio_encode import FORMAT_NAMES, StreamEncoder, audio_format, encode

RATE = 24_000


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_a_whole_clip_decodes_to_its_length(fmt: str) -> None:
    samples, rate = decode_any(encode(Clip(tone(1.0), RATE), fmt), fmt)
    assert rate == RATE
    # Lossy codecs pad a frame or two at the ends (opus: 312 samples of pre-skip, mp3: the encoder delay).
    assert abs(len(samples) / rate - 1.0) < 0.08, (fmt, len(samples))
    assert float(np.abs(samples).max()) > 0.1


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_pieces_streamed_one_after_another_make_one_file(fmt: str) -> None:
    encoder = StreamEncoder(fmt, RATE)
    pieces = [encoder.feed(tone(0.5, hz)) for hz in (200.0, 300.0, 400.0)]
    pieces.append(encoder.close())
    assert pieces[0], "the first piece's bytes are ready before the last piece is fed"
    samples, _ = decode_any(b"".join(pieces), fmt)
    assert abs(len(samples) / RATE - 1.5) < 0.1, (fmt, len(samples))


def test_an_unknown_format_names_the_choices() -> None:
    with pytest.raises(ValueError, match="mp3, opus, aac, flac, wav, pcm"):
        audio_format("ogg-vorbis")


@pytest.mark.parametrize("speed", [0.25, 0.5, 1.5, 4.0])
def test_speed_stretches_the_audio_by_its_factor(speed: float) -> None:
    from voiceq.audio_tempo import change_speed

    out = change_speed(tone(2.0), RATE, speed)
    assert abs(len(out) / RATE - 2.0 / speed) < 0.1


def test_tempo_stages_stay_within_atempos_range() -> None:
    from voiceq.audio_tempo import tempo_stages

    assert tempo_stages(4.0) == [2.0, 2.0] and tempo_stages(0.25) == [0.5, 0.5] and tempo_stages(1.2) == [1.2]
    with pytest.raises(ValueError, match="between 0.25 and 4"):
        tempo_stages(5.0)
