"""The blob storage interface. A local folder (embedded default) and S3 (production) implement it.

Keys are made by voiceq from ids it generated (`uploads/<job_id>.wav`), never from user
input; `check_key` still refuses anything that is not of that shape, as a second fence.
"""

from __future__ import annotations

import re
from typing import BinaryIO, Protocol, runtime_checkable

_KEY_RE = re.compile(r"^[a-z]+(/[A-Za-z0-9_-]+)+\.[a-z0-9]+$")


def check_key(key: str) -> str:
    if not _KEY_RE.match(key) or ".." in key:
        raise ValueError(f"invalid blob key {key!r}")
    return key


_PREFIX_RE = re.compile(r"^[a-z]+/[A-Za-z0-9_-]+$")


def check_prefix(prefix: str) -> str:
    """A prefix names one thing's blobs (`voices/<voice_id>`, `results/<job_id>`): never a
    whole folder, so a bug cannot empty the bucket."""
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"invalid blob prefix {prefix!r}")
    return prefix


def upload_key(job_id: str) -> str:
    return check_key(f"uploads/{job_id}.wav")


def result_key(job_id: str, lease_id: str, extension: str = "mp3") -> str:
    # One key per attempt: a late worker whose lease was taken over writes beside the
    # winner's result, never over it.
    return check_key(f"results/{job_id}-{lease_id}.{extension}")


def voice_key(voice_id: str) -> str:
    return check_key(f"voices/{voice_id}.pt")


def voice_prefix(voice_id: str) -> str:
    """Every blob of a voice (its conditionals, one per model) starts with this."""
    return check_prefix(f"voices/{voice_id}")


def results_prefix(job_id: str) -> str:
    """Every attempt's result of a job starts with this."""
    return check_prefix(f"results/{job_id}")


# One voice, every model: the reference clip each model prepares its own conditionals from,
# and each model's prepared conditionals (English keeps `voice_key`). All of a voice's blobs
# start with `voices/{voice_id}`, so deleting a voice can delete by that prefix.
def voice_reference_key(voice_id: str) -> str:
    return check_key(f"voices/{voice_id}/reference.wav")


def voice_model_key(voice_id: str, model: str) -> str:
    return voice_key(voice_id) if model == "chatterbox" else check_key(f"voices/{voice_id}/{model}.pt")


def source_key(job_id: str) -> str:
    """A conversion job's source speech."""
    return check_key(f"uploads/{job_id}-source.wav")


@runtime_checkable
class BlobStorage(Protocol):
    """Raises `BlobNotFound` for a missing key and `StorageUnavailable` when the backend fails."""

    def ping(self) -> None: ...

    def put(self, key: str, data: bytes | BinaryIO, *, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list_prefix(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix` (see `check_prefix`), sorted."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key that starts with `prefix`; how many there were. Idempotent."""
        ...

    def presigned_url(self, key: str, *, expires_s: int = 3600) -> str | None:
        """A URL a client can fetch the blob from directly, or None when the backend has none
        (the API then serves the blob itself)."""
        ...
