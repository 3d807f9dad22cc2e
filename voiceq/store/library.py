"""The voice library and erasure records: what every job store keeps besides jobs.

SQLite (voiceq/store/sqlite_library.py) and Convex (convex_client/library.py over
convex/voices.ts) implement it. `owner` is always matched exactly (None: keys are off); the
manager decides who may see what (voiceq/voices.py).
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from ..jobs import Job
from ..voices import Erasure, Voice
from .base import JobStats


@runtime_checkable
class VoiceLibrary(Protocol):
    def put_voice(self, voice: Voice) -> Voice:
        """Insert a voice; if one with its id exists, return that one unchanged (safe to repeat)."""
        ...

    def get_voice(self, voice_id: str) -> Voice | None: ...

    def voice_of_job(self, job_id: str) -> Voice | None:
        """The voice cloned from this job's upload, if it still exists."""
        ...

    def list_voices(self, *, user_id: str, owner: str | None, any_owner: bool = False,
                    limit: int = 100) -> list[Voice]:
        """A user's voices under one owner (or under every owner), newest first."""
        ...

    def rename_voice(self, voice_id: str, name: str, *, now: float) -> Voice:
        """Raises `VoiceNotFound`."""
        ...

    def delete_voice(self, voice_id: str) -> bool:
        """Remove the record; False when there was none."""
        ...

    def user_jobs(self, *, user_id: str, owner: str | None, limit: int = 500) -> list[Job]:
        """Every job of a user under one owner, any status (for erasure)."""
        ...

    def scrub_jobs(self, job_ids: Sequence[str], *, now: float) -> int:
        """Replace the personal fields of these jobs (`voices.scrub_job`); how many changed."""
        ...

    def begin_erasure(self, *, owner: str | None, user_id: str, now: float) -> Erasure:
        """Record that this user's erasure is under way (again, if it was done before)."""
        ...

    def finish_erasure(self, *, owner: str | None, user_id: str, now: float, voices: int, jobs: int,
                       blobs: int) -> Erasure: ...

    def unfinished_erasures(self, *, limit: int = 100) -> list[Erasure]: ...

    def sweepable_jobs(self, *, before: float, limit: int = 200) -> list[Job]:
        """Finished jobs created before `before` that still hold a result or an upload and were
        not swept yet."""
        ...

    def mark_swept(self, job_id: str, *, keep_upload: bool, now: float) -> Job: ...

    def count_key_jobs(self, *, owner: str, since: float | None = None) -> int:
        """A key's jobs waiting or running (no `since`), or submitted since `since` (quotas)."""
        ...

    def key_stats(self, *, owner: str, user_id: str | None = None) -> JobStats:
        """`stats` over one key's jobs (or one of its users')."""
        ...
