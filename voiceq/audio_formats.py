"""Which uploads FFmpeg may open at all: audio containers recognised by their first bytes.

FFmpeg left to probe a file on its own recognises hundreds of formats, among them ones that
reach out or read elsewhere: SDP files (opens UDP/RTP ports and waits), HLS and other playlists,
the concat demuxer, image sequences. Uploads are sniffed here instead, and FFmpeg is told which
single demuxer to use, so nothing else is ever probed. Pure: bytes in, demuxer name (or None) out.
"""

from __future__ import annotations

# Accepted in the error messages' words.
ACCEPTED = "mp3, wav, ogg/opus, flac, m4a/aac, webm"

# Bounds on what a voice sample can sensibly have: a header claiming more is hostile or broken,
# and decoding it would allocate for every claimed channel.
MAX_CHANNELS = 8
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 192_000


def _mpeg_audio_frame(head: bytes) -> str | None:
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    if head[1] & 0x16 == 0x10:  # MPEG-4/2 ADTS: layer bits 00 (an AAC stream)
        return "aac"
    layer = (head[1] >> 1) & 0x3
    bitrate = head[2] >> 4
    rate = (head[2] >> 2) & 0x3
    if layer == 0 or bitrate == 0xF or rate == 0x3:
        return None
    return "mp3"


# The media type an accepted upload is stored under, by its demuxer.
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg",
               "mp4": "audio/mp4", "matroska": "audio/webm", "aac": "audio/aac"}


def media_type(data: bytes) -> str:
    """The media type of an accepted upload (application/octet-stream for anything else)."""
    return MEDIA_TYPES.get(sniff_demuxer(data) or "", "application/octet-stream")


def sniff_demuxer(data: bytes) -> str | None:
    """The FFmpeg demuxer for an accepted audio container, or None for anything else."""
    head = data[:16]
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: WebM / Matroska
        return "matroska"
    return _mpeg_audio_frame(head)
