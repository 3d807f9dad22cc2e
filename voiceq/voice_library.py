"""The voice library, erasure and retention: the bookkeeping of users' voices and audio.

`JobManager` mixes this in, so the bookkeeping deployment remains the only code that changes
records. Every read and change takes the caller (`Caller`: the API key's name, whether it is
an admin key): another key's voices do not exist for it (`VoiceNotFound`, a 404), exactly like
a voice that never existed.

Storage is cleaned before records: a record that outlives its blobs is found again and
finished by the next attempt, while blobs that outlived their record could never be found.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from .errors import InvalidTransition, JobNotFound, StaleLease, VoiceNotFound
from .jobs import Job, JobResult
from .logs import log_event, log_job
from .storage import results_prefix, voice_prefix
from .voices import Erasure, Voice, may_use, new_voice

if TYPE_CHECKING:
    from .metrics import Metrics
    from .settings import Settings
    from .storage import BlobStorage

log = logging.getLogger("voiceq.voices")
T = TypeVar("T")
DAY_S = 86_400.0


@dataclass(frozen=True)
class Caller:
    """Who is asking: the API key's name (None when keys are off) and whether it is an admin key."""

    owner: str | None
    admin: bool = False


def _upload_prefix(key: str) -> str | None:
    """`uploads/<job_id>.wav` -> `uploads/<job_id>` (prefix deletes count what they removed)."""
    return key.rsplit(".", 1)[0] if key else None


class VoiceLibraryManager:
    store: Any  # JobStore + VoiceLibrary
    storage: BlobStorage
    settings: Settings
    clock: Callable[[], float]
    metrics: Metrics

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # --- voices as jobs make and use them -------------------------------------------------

    async def check_voice(self, voice_id: str, *, caller: Caller, user_id: str) -> Voice | None:
        """The voice a submission reuses, if this caller may speak with it; else VoiceNotFound.
        Admin keys may use any voice, including ones cloned before voices had records."""
        voice = await self._call(self.store.get_voice, voice_id)
        if voice is not None and may_use(voice, owner=caller.owner, user_id=user_id, admin=caller.admin):
            return voice
        if voice is None and caller.admin:
            from .storage import voice_key

            if await self._call(self.storage.exists, voice_key(voice_id)):
                return None
        raise VoiceNotFound(voice_id)

    async def record_new_voice(self, job_id: str, result: JobResult) -> Voice | None:
        """Before a clone job is completed: record the voice its upload became, owned by the
        job's key and user. Safe to repeat (the record is keyed by the voice id)."""
        job = await self._call(self.store.get, job_id)
        if job is None or not job.audio_key or job.voice_id is not None:
            return None  # a reuse of an existing voice, or not a job we know
        voice = new_voice(job, voice_id=result.voice_id, models=result.models, now=self.clock())
        return await self._call(self.store.put_voice, voice)

    async def forget_voice_record(self, voice: Voice | None) -> None:
        """A late worker's result was discarded (its blobs too): so is the voice it recorded."""
        if voice is not None:
            try:
                await self._call(self.store.delete_voice, voice.voice_id)
            except Exception:
                log.warning("could not remove the record of discarded voice %s", voice.voice_id)

    # --- the library ----------------------------------------------------------------------

    async def list_voices(self, user_id: str, *, caller: Caller, limit: int = 100) -> list[Voice]:
        return await self._call(self.store.list_voices, user_id=user_id, owner=caller.owner,
                                any_owner=caller.admin, limit=limit)

    async def get_voice(self, voice_id: str, *, caller: Caller) -> Voice:
        voice = await self._call(self.store.get_voice, voice_id)
        if voice is None or not may_use(voice, owner=caller.owner, user_id=None, admin=caller.admin):
            raise VoiceNotFound(voice_id)
        return voice

    async def rename_voice(self, voice_id: str, name: str, *, caller: Caller) -> Voice:
        await self.get_voice(voice_id, caller=caller)
        return await self._call(self.store.rename_voice, voice_id, name, now=self.clock())

    async def delete_voice(self, voice_id: str, *, caller: Caller) -> Voice:
        """Remove the voice's prepared conditionals (every model's), its reference upload, then
        its record: reusing it answers 404 from then on."""
        voice = await self.get_voice(voice_id, caller=caller)
        await self._delete_voice(voice, reason="voice_deleted")
        log_event("voice_deleted", voice=voice_id, user=voice.user_id, job=voice.job_id)
        return voice

    async def _delete_voice(self, voice: Voice, *, reason: str) -> int:
        removed = await self._call(self.storage.delete_prefix, voice_prefix(voice.voice_id))
        self.metrics.blobs_deleted(reason, "voice", removed)
        upload = _upload_prefix(voice.reference_key)
        if upload:
            n = await self._call(self.storage.delete_prefix, upload)
            self.metrics.blobs_deleted(reason, "upload", n)
            removed += n
        await self._call(self.store.delete_voice, voice.voice_id)
        return removed

    # --- erasure --------------------------------------------------------------------------

    async def erase_user(self, user_id: str, *, caller: Caller) -> Erasure:
        """Remove every voice, upload and result of a user under the caller's key and the
        personal fields of their job records. Recorded first, so that an erasure cut short
        by a restart is finished by `resume_erasures`; repeating it is harmless."""
        await self._call(self.store.begin_erasure, owner=caller.owner, user_id=user_id, now=self.clock())
        log_event("erasure_started", user=user_id, key=caller.owner)
        return await self._erase(caller.owner, user_id)

    async def _erase(self, owner: str | None, user_id: str) -> Erasure:
        voices = jobs = blobs = 0
        while batch := await self._call(self.store.list_voices, user_id=user_id, owner=owner, limit=200):
            for voice in batch:
                blobs += await self._delete_voice(voice, reason="erasure")
                voices += 1
        while batch := await self._call(self.store.user_jobs, user_id=user_id, owner=owner, limit=200):
            for job in batch:
                blobs += await self._erase_job_audio(job)
            changed = await self._call(self.store.scrub_jobs, [j.job_id for j in batch], now=self.clock())
            for job in batch:
                log_job("erased", job)
            jobs += changed
            if not changed:
                break
        erasure = await self._call(self.store.finish_erasure, owner=owner, user_id=user_id, now=self.clock(),
                                   voices=voices, jobs=jobs, blobs=blobs)
        log_event("erasure_done", user=user_id, key=owner, voices=voices, jobs=jobs, blobs=blobs)
        return erasure

    async def _erase_job_audio(self, job: Job) -> int:
        if not job.status.terminal:
            # A worker still holding it finds its lease gone, and discards what it made.
            try:
                await self._call(self.store.cancel, job.job_id, now=self.clock())
            except (InvalidTransition, JobNotFound, StaleLease):
                pass
        removed = await self._call(self.storage.delete_prefix, results_prefix(job.job_id))
        self.metrics.blobs_deleted("erasure", "result", removed)
        upload = _upload_prefix(job.audio_key)
        if upload:
            n = await self._call(self.storage.delete_prefix, upload)
            self.metrics.blobs_deleted("erasure", "upload", n)
            removed += n
        return removed

    async def resume_erasures(self) -> int:
        """Finish erasures that a restart cut short."""
        pending = await self._call(self.store.unfinished_erasures)
        for erasure in pending:
            log_event("erasure_resumed", user=erasure.user_id, key=erasure.owner)
            await self._erase(erasure.owner, erasure.user_id)
        return len(pending)

    # --- retention ------------------------------------------------------------------------

    async def sweep(self) -> dict[str, int]:
        """Remove the uploads and results of jobs older than VOICEQ_RETENTION_DAYS. A voice's
        reference upload stays as long as the voice does."""
        counts = {"jobs": 0, "uploads": 0, "results": 0}
        if self.settings.retention_days <= 0:
            return counts
        now = self.clock()
        before = now - self.settings.retention_days * DAY_S
        while jobs := await self._call(self.store.sweepable_jobs, before=before, limit=200):
            for job in jobs:
                keep_upload = await self._call(self.store.voice_of_job, job.job_id) is not None
                results = await self._call(self.storage.delete_prefix, results_prefix(job.job_id))
                upload = _upload_prefix(job.audio_key)
                uploads = 0 if keep_upload or not upload else await self._call(self.storage.delete_prefix, upload)
                await self._call(self.store.mark_swept, job.job_id, keep_upload=keep_upload, now=now)
                self.metrics.blobs_deleted("retention", "result", results)
                self.metrics.blobs_deleted("retention", "upload", uploads)
                log_job("swept", job, results=results, uploads=uploads, kept_voice_upload=keep_upload or None)
                counts["jobs"] += 1
                counts["uploads"] += uploads
                counts["results"] += results
        log_event("sweep", retention_days=float(self.settings.retention_days), before=before, **counts)
        return counts

    async def housekeeping_forever(self) -> None:
        """Finish erasures a restart cut short (at start), then sweep on the retention interval."""
        while True:
            try:
                await self.resume_erasures()
                await self.sweep()
            except Exception:
                log.exception("erasure or retention sweep failed; trying again at the next interval")
            await asyncio.sleep(max(1.0, self.settings.retention_sweep_interval_s))
