"""Hostile files with audio names: only audio containers reach FFmpeg, each with its own demuxer,
so nothing that opens sockets, follows playlists or reads other files is ever probed; and
headers that claim absurd channel counts or sample rates are refused before decoding."""

from __future__ import annotations

import struct
import time
import zipfile
import io

import pytest

from tests.support.audio import voice_file
from voiceq.audio import decode_upload
from voiceq.audio_formats import sniff_demuxer
from voiceq.errors import InvalidInput

BOUNDS = dict(min_s=1.0, max_s=60.0)


def wav_header(channels: int, rate: int, *, bits: int = 8, frames: int = 4000) -> bytes:
    block = channels * bits // 8
    data_len = frames * block
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_len, b"WAVE", b"fmt ", 16, 1, channels, rate,
                       (rate * block) & 0xFFFFFFFF, block, bits, b"data", data_len) + bytes(min(data_len, 64_000))


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("voice.wav", voice_file("wav", seconds=2.0))
    return buf.getvalue()


HOSTILE = {
    # ~100 bytes that make FFmpeg open UDP ports and wait for RTP packets.
    "sdp": b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n",
    "hls playlist": b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://169.254.169.254/latest/meta-data\n#EXT-X-ENDLIST\n",
    "m3u playlist": b"#EXTM3U\n#EXTINF:-1,x\nfile:///etc/passwd\n",
    "ffconcat": b"ffconcat version 1.0\nfile '/etc/passwd'\n",
    "concat url": b"file 'http://127.0.0.1:9/x.wav'\n",
    "pls playlist": b"[playlist]\nFile1=http://127.0.0.1/x.mp3\nNumberOfEntries=1\n",
    "rtsp url text": b"rtsp://127.0.0.1:554/stream",
    "zip archive": zip_bytes(),
    "gzip": b"\x1f\x8b\x08\x00" + bytes(200),
    "png image": b"\x89PNG\r\n\x1a\n" + bytes(400),
    "jpeg image": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(400),
    "gif image": b"GIF89a" + bytes(400),
    "pdf": b"%PDF-1.7\n" + bytes(400),
    "avi in riff": b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(400),
    "html": b"<html><body>not audio</body></html>" * 5,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_non_audio_containers_never_reach_ffmpeg(name: str) -> None:
    assert sniff_demuxer(HOSTILE[name]) is None
    started = time.monotonic()
    with pytest.raises(InvalidInput) as err:
        decode_upload(HOSTILE[name], **BOUNDS)
    assert err.value.status_code == 415 and "not an accepted format" in err.value.message
    assert time.monotonic() - started < 1.0  # refused from its first bytes, nothing waited on


@pytest.mark.parametrize("channels,rate,words", [
    (65_535, 8_000, "channels"),
    (64, 24_000, "declares 64 channels"),
    (1, 4_000_000_000, "sample rate"),
    (1, 1, "sample rate"),
])
def test_absurd_channel_counts_and_sample_rates_are_refused(channels: int, rate: int, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        decode_upload(wav_header(channels, rate), **BOUNDS)
    # Refused by our bounds, or by FFmpeg's own header checks: either way before any decoding.
    assert err.value.status_code == 415
    assert words in err.value.message or "could not be decoded" in err.value.message


@pytest.mark.parametrize("ext", ["wav", "mp3", "flac", "m4a", "webm", "ogg"])
def test_each_accepted_format_is_recognised(ext: str) -> None:
    assert sniff_demuxer(voice_file(ext, seconds=1.0, sample_rate=48_000 if ext in ("webm", "ogg") else 24_000))


def test_decoding_has_a_deadline() -> None:
    with pytest.raises(InvalidInput) as err:
        decode_upload(voice_file("flac", seconds=20.0), deadline_s=0.0, **BOUNDS)
    assert err.value.status_code == 422 and "to decode" in err.value.message
