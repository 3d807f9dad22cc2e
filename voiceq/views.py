"""The public view of a job, shared by the status route and webhooks."""

from __future__ import annotations

from typing import Any

from .jobs import Job, JobStatus


def job_view(job: Job, *, result_url: str | None = None) -> dict[str, Any]:
    """What the status route and webhooks show of a job: no storage keys, leases or owners."""
    body: dict[str, Any] = {
        "jobId": job.job_id,
        "userId": job.user_id,
        "status": job.status.value,
        "voiceName": job.voice_name,
        "voiceId": job.voice_id,
        "processingTime": job.processing_time,
        "createdAt": job.created_at,
        "updatedAt": job.updated_at,
        "startedAt": job.started_at,
        "completedAt": job.completed_at,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "priority": job.priority,
        # The Chatterbox family: beside the seed's fields, never instead of them.
        "model": job.model,
        "kind": job.kind,
        **({"language": job.language} if job.language else {}),
        "workerInfo": (
            {
                "environment": job.worker_info.environment,
                "gpuType": job.worker_info.gpu_type,
                **({"dropletId": job.worker_info.droplet_id} if job.worker_info.droplet_id else {}),
            }
            if job.worker_info
            else None
        ),
    }
    if job.status is JobStatus.COMPLETED:
        if result_url:
            body["resultUrl"] = result_url
        body["audioSeconds"] = job.result_seconds
        body["speechTokens"] = job.speech_tokens
    if job.error and job.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING):
        body["error"] = job.error
    if job.status is JobStatus.PENDING and job.attempts:
        body["nextAttemptAt"] = job.next_attempt_at
    return body
