"""Voices: who a cloned voice belongs to, what it was made from and who consented to it.

A voice belongs to the API key that cloned it (`owner`, None when keys are off: one tenant)
and the `user_id` it was cloned for. To any other key it does not exist. Pure values and
decisions here; the stores keep the records, the manager does the I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from .jobs import Job


@dataclass(frozen=True)
class Consent:
    """An attestation that the person whose voice this is agreed to its cloning."""

    subject: str  # who consented (the speaker), as the client names them
    consented_at: float  # Unix seconds
    reference: str  # where the consent record lives (a document id, a URL)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Consent | None:
        if not data:
            return None
        return cls(subject=str(data["subject"]), consented_at=float(data["consented_at"]),
                   reference=str(data["reference"]))


@dataclass(frozen=True)
class Voice:
    voice_id: str
    owner: str | None
    user_id: str
    name: str
    created_at: float
    updated_at: float
    job_id: str  # the job whose upload it was cloned from
    reference_key: str  # that upload in blob storage, kept with the voice until it is deleted
    models: tuple[str, ...] = ()
    consent: Consent | None = None

    def replace(self, **changes: Any) -> Voice:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["models"] = list(self.models)
        data["consent"] = self.consent.to_dict() if self.consent else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Voice:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["models"] = tuple(values.get("models") or ())
        values["consent"] = Consent.from_dict(values.get("consent"))
        return cls(**values)


@dataclass(frozen=True)
class Erasure:
    """A user's erasure under one key: recorded before anything is deleted, so a restart in
    the middle finishes it."""

    owner: str | None
    user_id: str
    status: str  # "running" | "done"
    started_at: float
    finished_at: float | None = None
    voices: int = 0
    jobs: int = 0
    blobs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status == "done"


def new_voice(job: Job, *, voice_id: str, models: tuple[str, ...], now: float) -> Voice:
    """The voice a clone job's upload became."""
    consent = Consent.from_dict((job.extra or {}).get("consent"))
    return Voice(voice_id=voice_id, owner=job.owner, user_id=job.user_id, name=job.voice_name, created_at=now,
                 updated_at=now, job_id=job.job_id, reference_key=job.audio_key, models=models, consent=consent)


def may_use(voice: Voice, *, owner: str | None, user_id: str | None, admin: bool) -> bool:
    """Whether a caller may see or speak with a voice. Anyone else gets "no such voice"."""
    if admin:
        return True
    return voice.owner == owner and (user_id is None or voice.user_id == user_id)


def erased_user_id(owner: str | None, user_id: str) -> str:
    """What an erased user's job records carry instead of their id: stable (an erasure that is
    repeated finds the same), but not the id."""
    digest = hashlib.sha256(f"{owner or ''}\0{user_id}".encode()).hexdigest()[:16]
    return f"erased-{digest}"


# What an erased job keeps: its id, status, timings, sizes and costs (for accounting); what it
# loses: everything the user said or sent, and every pointer to their audio.
def scrub_job(job: Job, *, now: float) -> Job:
    return job.replace(
        user_id=erased_user_id(job.owner, job.user_id),
        voice_name="",
        sample_text="",
        audio_key="",
        voice_id=None,
        voice_key=None,
        result_key=None,
        idempotency_key=None,
        callback_url=None,
        error=None if job.error is None else "erased",
        extra={"erased_at": now},
        updated_at=now,
    )


def swept_job(job: Job, *, keep_upload: bool, now: float) -> Job:
    """A job whose result (and upload, unless a live voice still uses it) retention removed."""
    extra = dict(job.extra or {})
    extra["swept_at"] = now
    return job.replace(result_key=None, audio_key=job.audio_key if keep_upload else "", extra=extra)


def voice_view(voice: Voice) -> dict[str, Any]:
    """The JSON of a voice in the API: no storage keys, no owner."""
    return {
        "voiceId": voice.voice_id,
        "userId": voice.user_id,
        "name": voice.name,
        "createdAt": voice.created_at,
        "updatedAt": voice.updated_at,
        "jobId": voice.job_id,
        "models": list(voice.models),
        "consent": (
            {"subject": voice.consent.subject, "consentedAt": voice.consent.consented_at,
             "reference": voice.consent.reference}
            if voice.consent else None
        ),
    }
