"""The one place where a voiceq `Job` becomes a `voiceCloneJobs` document and back.

Field names follow convex/schema.ts (camelCase); a Python `None` is an absent field, since
Convex's optional fields hold no nulls. Timestamps stay Unix seconds (floats) on both sides.
"""

from __future__ import annotations

from typing import Any, Mapping

from voiceq.jobs import Job, JobResult, JobStatus, WorkerInfo

# Job field -> document field, for every field of the dataclass.
JOB_FIELDS: dict[str, str] = {
    "job_id": "jobId",
    "user_id": "userId",
    "voice_name": "voiceName",
    "sample_text": "sampleText",
    "status": "status",
    "created_at": "createdAt",
    "updated_at": "updatedAt",
    "audio_key": "audioKey",
    "audio_seconds": "audioSeconds",
    "priority": "priority",
    "attempts": "attempts",
    "max_attempts": "maxAttempts",
    "next_attempt_at": "nextAttemptAt",
    "lease_id": "leaseId",
    "lease_expires_at": "leaseExpiresAt",
    "started_at": "startedAt",
    "completed_at": "completedAt",
    "worker_info": "workerInfo",
    "voice_id": "voiceId",
    "voice_key": "voiceKey",
    "result_key": "resultKey",
    "speech_tokens": "speechTokens",
    "result_seconds": "resultSeconds",
    "processing_time": "processingTime",
    "gpu_seconds": "gpuSeconds",
    "error": "error",
    "idempotency_key": "idempotencyKey",
    "owner": "owner",
    "callback_url": "callbackUrl",
    "extra": "extra",
    "last_lease_id": "lastLeaseId",
    "model": "model",
    "language": "language",
    "kind": "kind",
}

WORKER_FIELDS: dict[str, str] = {
    "environment": "environment",
    "gpu_type": "gpuType",
    "worker_id": "workerId",
    "node_id": "nodeId",
    "droplet_id": "dropletId",
}

_INTS = {"priority", "attempts", "max_attempts", "speech_tokens"}
_FLOATS = {
    "created_at", "updated_at", "audio_seconds", "next_attempt_at", "lease_expires_at", "started_at",
    "completed_at", "result_seconds", "processing_time", "gpu_seconds",
}


def worker_to_document(worker: WorkerInfo) -> dict[str, Any]:
    doc = {WORKER_FIELDS[name]: value for name, value in worker.to_dict().items() if value is not None}
    if not doc.get("workerId"):
        doc.pop("workerId", None)
    return doc


def worker_from_document(doc: Mapping[str, Any] | None) -> WorkerInfo | None:
    if not doc:
        return None
    return WorkerInfo(
        environment=str(doc["environment"]),
        gpu_type=str(doc["gpuType"]),
        worker_id=str(doc.get("workerId") or ""),
        node_id=doc.get("nodeId"),
        droplet_id=doc.get("dropletId"),
    )


def job_to_document(job: Job) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for name, key in JOB_FIELDS.items():
        value = getattr(job, name)
        if name == "status":
            value = job.status.value
        elif name == "worker_info":
            value = worker_to_document(job.worker_info) if job.worker_info else None
        elif name == "extra":
            value = dict(job.extra) if job.extra else None
        elif name in _FLOATS and value is not None:
            value = float(value)
        if value is not None:
            doc[key] = value
    return doc


def job_from_document(doc: Mapping[str, Any]) -> Job:
    values: dict[str, Any] = {}
    for name, key in JOB_FIELDS.items():
        if key not in doc or doc[key] is None:
            continue
        value = doc[key]
        if name == "status":
            value = JobStatus(value)
        elif name == "worker_info":
            value = worker_from_document(value)
        elif name == "extra":
            value = dict(value)
        elif name in _INTS:
            value = int(value)
        elif name in _FLOATS:
            value = float(value)
        values[name] = value
    return Job(**values)


def result_to_document(result: JobResult) -> dict[str, Any]:
    return {
        "voiceId": result.voice_id,
        "resultKey": result.result_key,
        "voiceKey": result.voice_key,
        "speechTokens": int(result.speech_tokens),
        "audioSeconds": float(result.audio_seconds),
        "processingTime": float(result.processing_time),
        "gpuSeconds": float(result.gpu_seconds),
    }
