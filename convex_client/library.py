"""The voice library and erasure records in Convex: `voiceq.store.library.VoiceLibrary` over
the internal functions in convex/voices.ts (`ConvexJobStore` mixes this in)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from voiceq.errors import JobNotFound, VoiceNotFound
from voiceq.jobs import Job, JobStatus
from voiceq.store.base import JobStats
from voiceq.voices import Consent, Erasure, Voice, erased_user_id

from .calls import ConvexCalls
from .documents import job_from_document

MODULE = "voices"
SCRUB_BATCH = 100  # jobs per scrub mutation (Convex writes at most 16,000 documents per call)


def voice_to_document(voice: Voice) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "voiceId": voice.voice_id,
        "userId": voice.user_id,
        "name": voice.name,
        "createdAt": float(voice.created_at),
        "updatedAt": float(voice.updated_at),
        "jobId": voice.job_id,
        "referenceKey": voice.reference_key,
        "models": list(voice.models),
    }
    if voice.owner is not None:
        doc["owner"] = voice.owner
    if voice.consent is not None:
        doc["consent"] = {"subject": voice.consent.subject, "consentedAt": float(voice.consent.consented_at),
                          "reference": voice.consent.reference}
    return doc


def voice_from_document(doc: Mapping[str, Any]) -> Voice:
    consent = doc.get("consent")
    return Voice(
        voice_id=str(doc["voiceId"]),
        owner=doc.get("owner"),
        user_id=str(doc["userId"]),
        name=str(doc["name"]),
        created_at=float(doc["createdAt"]),
        updated_at=float(doc["updatedAt"]),
        job_id=str(doc["jobId"]),
        reference_key=str(doc["referenceKey"]),
        models=tuple(doc.get("models") or ()),
        consent=Consent(subject=consent["subject"], consented_at=float(consent["consentedAt"]),
                        reference=consent["reference"]) if consent else None,
    )


def erasure_from_document(doc: Mapping[str, Any]) -> Erasure:
    finished = doc.get("finishedAt")
    return Erasure(owner=doc["owner"] or None, user_id=str(doc["userId"]), status=str(doc["status"]),
                   started_at=float(doc["startedAt"]), finished_at=float(finished) if finished is not None else None,
                   voices=int(doc["voices"]), jobs=int(doc["jobs"]), blobs=int(doc["blobs"]))


def _owner_args(owner: str | None) -> dict[str, Any]:
    return {} if owner is None else {"owner": owner}


class ConvexLibrary(ConvexCalls):
    """The voice library's functions (convex/voices.ts), mixed into `ConvexJobStore`."""

    _sweep_since: float = 0.0

    # --- voices -------------------------------------------------------------------------

    def put_voice(self, voice: Voice) -> Voice:
        return voice_from_document(self._call("mutation", "putVoice", {"voice": voice_to_document(voice)},
                                             idempotent=True, module=MODULE))

    def get_voice(self, voice_id: str) -> Voice | None:
        doc = self._call("query", "getVoice", {"voiceId": voice_id}, module=MODULE)
        return voice_from_document(doc) if doc is not None else None

    def voice_of_job(self, job_id: str) -> Voice | None:
        doc = self._call("query", "voiceOfJob", {"jobId": job_id}, module=MODULE)
        return voice_from_document(doc) if doc is not None else None

    def list_voices(self, *, user_id: str, owner: str | None, any_owner: bool = False,
                    limit: int = 100) -> list[Voice]:
        args = {"userId": user_id, "anyOwner": any_owner, "limit": int(limit), **_owner_args(owner)}
        return [voice_from_document(d) for d in self._call("query", "listVoices", args, module=MODULE)]

    def rename_voice(self, voice_id: str, name: str, *, now: float) -> Voice:
        doc = self._call("mutation", "renameVoice", {"voiceId": voice_id, "name": name, "now": float(now)},
                        idempotent=True, module=MODULE)
        if doc is None:
            raise VoiceNotFound(voice_id)
        return voice_from_document(doc)

    def delete_voice(self, voice_id: str) -> bool:
        return bool(self._call("mutation", "deleteVoice", {"voiceId": voice_id}, idempotent=True, module=MODULE))

    # --- erasure ------------------------------------------------------------------------

    def user_jobs(self, *, user_id: str, owner: str | None, limit: int = 500) -> list[Job]:
        args = {"userId": user_id, "limit": int(limit), **_owner_args(owner)}
        return [job_from_document(d) for d in self._call("query", "userJobs", args, module=MODULE)]

    def scrub_jobs(self, job_ids: Sequence[str], *, now: float) -> int:
        # The pseudonym depends on each job's owner and user: group by them.
        jobs = [j for j in (self.get(i) for i in job_ids) if j is not None]  # type: ignore[attr-defined]
        groups: dict[str, list[str]] = {}
        for job in jobs:
            groups.setdefault(erased_user_id(job.owner, job.user_id), []).append(job.job_id)
        changed = 0
        for pseudonym, ids in groups.items():
            for i in range(0, len(ids), SCRUB_BATCH):
                changed += int(self._call("mutation", "scrubJobs", {
                    "jobIds": ids[i:i + SCRUB_BATCH], "erasedUserId": pseudonym, "now": float(now)},
                    idempotent=True, module=MODULE))
        return changed

    def begin_erasure(self, *, owner: str | None, user_id: str, now: float) -> Erasure:
        doc = self._call("mutation", "beginErasure", {"owner": owner or "", "userId": user_id, "now": float(now)},
                        idempotent=True, module=MODULE)
        return erasure_from_document(doc)

    def finish_erasure(self, *, owner: str | None, user_id: str, now: float, voices: int, jobs: int,
                       blobs: int) -> Erasure:
        doc = self._call("mutation", "finishErasure", {
            "owner": owner or "", "userId": user_id, "now": float(now), "voices": voices, "jobs": jobs,
            "blobs": blobs}, idempotent=True, module=MODULE)
        return erasure_from_document(doc)

    def unfinished_erasures(self, *, limit: int = 100) -> list[Erasure]:
        return [erasure_from_document(d) for d in self._call("query", "unfinishedErasures", {"limit": int(limit)}, module=MODULE)]

    # --- retention ----------------------------------------------------------------------

    def sweepable_jobs(self, *, before: float, limit: int = 200) -> list[Job]:
        """Reads the jobs table forward in chunks. Once a whole pass found nothing, the next
        passes start at the oldest job that was still active (it may finish later), or near
        `before`: swept jobs are not read again and again. A new process starts from the top."""
        cursor, first_active = self._sweep_since, None
        while True:
            reply = self._call("query", "sweepableJobs",
                              {"before": float(before), "since": float(cursor), "limit": int(limit)}, module=MODULE)
            if first_active is None and reply.get("firstActive") is not None:
                first_active = float(reply["firstActive"])
            jobs = [job_from_document(d) for d in reply["jobs"]]
            if jobs:
                return jobs
            if reply["next"] is None:
                self._sweep_since = first_active if first_active is not None else max(self._sweep_since,
                                                                                       float(before) - 1.0)
                return []
            cursor = float(reply["next"])

    def mark_swept(self, job_id: str, *, keep_upload: bool, now: float) -> Job:
        doc = self._call("mutation", "markSwept", {"jobId": job_id, "keepUpload": keep_upload, "now": float(now)},
                        idempotent=True, module=MODULE)
        if doc is None:
            raise JobNotFound(job_id)
        return job_from_document(doc)

    # --- per-key quotas and stats (convex/keyQuotas.ts) -----------------------------------

    def count_key_jobs(self, *, owner: str, since: float | None = None) -> int:
        args: dict[str, Any] = {"owner": owner}
        if since is not None:
            args["since"] = float(since)
        return int(self._quota("countKeyJobs", args))

    def key_stats(self, *, owner: str, user_id: str | None = None) -> JobStats:
        s = self._quota("keyStats", {"owner": owner, **({} if user_id is None else {"userId": user_id})})
        by_status = {st.value: int(s["byStatus"].get(st.value, 0)) for st in JobStatus}
        avg, oldest = s.get("avgProcessingTime"), s.get("oldestPendingCreatedAt")
        return JobStats(
            total=int(s["total"]), by_status=by_status,
            avg_processing_time=float(avg) if avg is not None else None,
            total_processing_time=float(s.get("totalProcessingTime") or 0.0),
            oldest_pending_created_at=float(oldest) if oldest is not None else None,
            audio_seconds_generated=float(s.get("audioSecondsGenerated") or 0.0),
            total_gpu_seconds=float(s.get("totalGpuSeconds") or 0.0), user_id=user_id,
        )

    def _quota(self, name: str, args: Mapping[str, Any]) -> Any:
        return self._call("query", name, args, module="keyQuotas")
