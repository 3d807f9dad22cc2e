"""The JSON shapes of the seed's API, built from job records. Pure functions."""

from __future__ import annotations

import base64
from typing import Any

from voiceq.audio_encode import result_format
from voiceq.jobs import Job, JobStatus
from voiceq.queue_wait import QueuePlace
from voiceq.store import JobStats
from voiceq.views import job_view

API_PREFIX = "/api/public/voice/onboarding"


# Every clip Chatterbox makes carries Resemble AI's imperceptible Perth watermark; the detect
# route tells whether a clip does.
WATERMARK = {"watermarked": True, "watermark": {"type": "perth", "detectUrl": f"{API_PREFIX}/watermark/detect"}}


def status_url(job_id: str) -> str:
    return f"{API_PREFIX}/jobs/{job_id}/status"


def audio_route(job_id: str) -> str:
    return f"{API_PREFIX}/jobs/{job_id}/audio"


def clone_queued(job: Job) -> dict[str, Any]:
    return {
        "success": True,
        "jobId": job.job_id,
        "status": "queued",
        "message": "Voice cloning job queued for processing",
        "statusUrl": status_url(job.job_id),
    }


def clone_completed(job: Job, audio: bytes) -> dict[str, Any]:
    fmt = result_format(job)
    # The seed's data URI says audio/mp3; other formats carry their own media type.
    media = "audio/mp3" if fmt.name == "mp3" else fmt.media_type
    return {
        "success": True,
        "jobId": job.job_id,
        "voice_id": job.voice_id,
        "voice_name": job.voice_name,
        "sample_audio": f"data:{media};base64," + base64.b64encode(audio).decode("ascii"),
        "processingTime": job.processing_time,
        "message": "Voice cloning completed successfully",
        "statusUrl": status_url(job.job_id),
        "resultUrl": audio_route(job.job_id),
        **WATERMARK,
    }


def clone_failed(job: Job) -> dict[str, Any]:
    return {
        "success": False,
        "jobId": job.job_id,
        "status": job.status.value,
        "error": job.error or "voice cloning failed",
        "code": "job_failed",
        "message": "Voice cloning failed",
        "statusUrl": status_url(job.job_id),
    }


def job_status(job: Job, *, result_url: str | None = None, queue: QueuePlace | None = None) -> dict[str, Any]:
    body = job_view(job, result_url=result_url or audio_route(job.job_id))
    if queue is not None and job.status is JobStatus.PENDING:
        # Beside the seed's fields: 0 is next; the wait is null until there is a measure.
        body["queuePosition"] = queue.position
        body["estimatedWaitS"] = queue.estimated_wait_s
    if job.status is JobStatus.COMPLETED:
        body.update(WATERMARK)
    return body


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "jobId": job.job_id,
        "status": job.status.value,
        "voiceName": job.voice_name,
        "voiceId": job.voice_id,
        "createdAt": job.created_at,
        "completedAt": job.completed_at,
        "processingTime": job.processing_time,
        "statusUrl": status_url(job.job_id),
    }


def stats_body(stats: JobStats, *, gpu_hourly_price: float) -> dict[str, Any]:
    # GPU time is each job's share of its engine pass, not its processing time: a batch of 8
    # in one 10 s pass costs 10 GPU seconds, though each of its jobs took 10 s.
    gpu_hours = stats.total_gpu_seconds / 3600.0
    return {
        "userId": stats.user_id,
        "total": stats.total,
        "byStatus": stats.by_status,
        "pending": stats.pending,
        "processing": stats.processing,
        "completed": stats.by_status.get("completed", 0),
        "failed": stats.by_status.get("failed", 0),
        "avgProcessingTime": stats.avg_processing_time,
        "gpuSeconds": stats.total_gpu_seconds,
        "gpuHours": gpu_hours,
        "gpuHourlyPrice": gpu_hourly_price,
        "estimatedCost": round(gpu_hours * gpu_hourly_price, 6),
        "audioSecondsGenerated": stats.audio_seconds_generated,
        # Per model: counts, audio made, GPU time and its cost, and the cost of a second of audio.
        "byModel": {
            model: {
                **{status: int(entry.get(status, 0)) for status in stats.by_status},
                "audioSeconds": entry.get("audio_seconds", 0.0),
                "gpuSeconds": entry.get("gpu_seconds", 0.0),
                "estimatedCost": round(entry.get("gpu_seconds", 0.0) / 3600.0 * gpu_hourly_price, 6),
                "costPerAudioSecond": (
                    round(entry.get("gpu_seconds", 0.0) / 3600.0 * gpu_hourly_price / entry["audio_seconds"], 8)
                    if entry.get("audio_seconds") else None
                ),
            }
            for model, entry in sorted(stats.by_model.items())
        },
    }


def error(message: str, *, code: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """An error body: the seed's shape plus `code`, the stable name clients match on (the
    message is for people and may be reworded)."""
    body: dict[str, Any] = {"success": False, "error": message, "code": code}
    if field:
        body["field"] = field
    body.update(extra)
    return body
