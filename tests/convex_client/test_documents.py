from __future__ import annotations

from convex_client.documents import JOB_FIELDS, job_from_document, job_to_document, result_to_document
from voiceq.jobs import Job, JobResult, JobStatus, WorkerInfo, new_job
import dataclasses


def full_job() -> Job:
    return new_job(
        job_id="6f1c1b7e-3f1e-4a7b-9a53-2f4a8d1c0b9e", user_id="u1", voice_name="V", sample_text="hi",
        audio_key="uploads/6f1c1b7e-3f1e-4a7b-9a53-2f4a8d1c0b9e.wav", audio_seconds=3, now=1_700_000_000,
        priority=2, idempotency_key="k", owner="acme", callback_url="https://x.test/cb", extra={"params": {"seed": 4}},
    ).replace(
        status=JobStatus.COMPLETED, attempts=2, lease_id="abc", lease_expires_at=1_700_000_060.5, started_at=1.5,
        completed_at=2.5, worker_info=WorkerInfo("production", "rocm", "w1", "node-1", "droplet-9"),
        voice_id="voice_0123456789abcdef", voice_key="voices/voice_0123456789abcdef.pt", result_key="results/a.mp3",
        speech_tokens=40, result_seconds=1.6, processing_time=3.25, gpu_seconds=0.8125, error="old error",
    )


def test_every_job_field_has_a_document_field() -> None:
    assert set(JOB_FIELDS) == {f.name for f in dataclasses.fields(Job)}


def test_a_full_job_round_trips_with_convex_names_and_types() -> None:
    job = full_job()
    doc = job_to_document(job)
    assert doc["jobId"] == job.job_id and doc["status"] == "completed"
    assert doc["workerInfo"] == {"environment": "production", "gpuType": "rocm", "workerId": "w1", "nodeId": "node-1",
                                 "dropletId": "droplet-9"}
    assert isinstance(doc["createdAt"], float) and isinstance(doc["audioSeconds"], float)
    assert (doc["processingTime"], doc["gpuSeconds"]) == (3.25, 0.8125)
    # Convex numbers are floats: integers may come back as 2.0 and must still be ints.
    back = job_from_document({**doc, "attempts": 2.0, "priority": 2.0, "speechTokens": 40.0, "_id": "x",
                              "_creationTime": 1.0})
    assert back == job and isinstance(back.attempts, int)


def test_none_is_an_absent_field() -> None:
    job = new_job(job_id="j", user_id="u", voice_name="v", sample_text="t", audio_key="", audio_seconds=1.0, now=5.0)
    doc = job_to_document(job)
    assert "leaseId" not in doc and "workerInfo" not in doc and "extra" not in doc and "owner" not in doc
    assert None not in doc.values()
    assert job_from_document(doc) == job


def test_worker_without_id_or_droplet() -> None:
    job = full_job().replace(worker_info=WorkerInfo("development", "cpu"))
    doc = job_to_document(job)
    assert doc["workerInfo"] == {"environment": "development", "gpuType": "cpu"}
    assert job_from_document(doc).worker_info == WorkerInfo("development", "cpu")


def test_result_document() -> None:
    result = JobResult("voice_0123456789abcdef", "results/a.mp3", "voices/v.pt", 12, 0.48, 2.0, gpu_seconds=0.25)
    assert result_to_document(result) == {
        "voiceId": "voice_0123456789abcdef", "resultKey": "results/a.mp3", "voiceKey": "voices/v.pt",
        "speechTokens": 12, "audioSeconds": 0.48, "processingTime": 2.0, "gpuSeconds": 0.25,
    }
