"""Readiness: what is wrong, in the seed's troubleshooting words, and what to do about it.

`build_report` is pure: the ingress gathers the raw facts (store and storage pings, the
inference deployment's state, queue statistics) and this turns them into checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voiceq.settings import Settings
from voiceq.store import JobStats

CONVEX_NOT_REACHABLE = "Convex not reachable"
STORE_NOT_REACHABLE = "Job store not reachable"
STORAGE_NOT_REACHABLE = "Audio storage not reachable"
CHATTERBOX_NOT_RUNNING = "Chatterbox not running"
JOB_STUCK_IN_PENDING = "Job stuck in pending"
PROCESSING_TIMEOUT = "Processing timeout"


@dataclass(frozen=True)
class EngineState:
    status: str  # Serve's deployment status, or "MISSING"
    running_replicas: int
    message: str = ""


def _check(ok: bool, message: str, action: str, detail: str | None = None) -> dict[str, Any]:
    if ok:
        return {"status": "ok"}
    body = {"status": "error", "message": message, "action": action}
    if detail:
        body["detail"] = detail
    return body


def build_report(
    settings: Settings,
    *,
    pings: dict[str, str],
    engine: EngineState,
    stats: JobStats | None,
    oldest_processing_started_at: float | None,
    now: float,
    stuck_after_s: float = 600.0,
) -> dict[str, Any]:
    convex = settings.job_store_kind == "convex"
    store_ok = pings.get("job_store") == "ok"
    checks: dict[str, dict[str, Any]] = {
        "job_store": _check(
            store_ok,
            CONVEX_NOT_REACHABLE if convex else STORE_NOT_REACHABLE,
            "check CONVEX_URL, CONVEX_DEPLOY_KEY and that the Convex deployment is running"
            if convex else f"check that {settings.sqlite_path} is on a writable disk",
            None if store_ok else pings.get("job_store"),
        ),
        "storage": _check(
            pings.get("storage") == "ok",
            STORAGE_NOT_REACHABLE,
            "check S3_BUCKET, S3_ENDPOINT_URL and the AWS credentials" if settings.s3_bucket
            else f"check that {settings.blob_dir} is on a writable disk",
            None if pings.get("storage") == "ok" else pings.get("storage"),
        ),
    }
    # In production the inference deployment may rightly be scaled to zero while the queue is empty.
    may_be_idle = settings.production and (stats is None or stats.pending == 0)
    engine_ok = engine.running_replicas > 0 or (may_be_idle and engine.status != "UNHEALTHY")
    checks["engine"] = _check(
        engine_ok,
        CHATTERBOX_NOT_RUNNING,
        "check the VoiceCloneInference replicas with `serve status` and their logs; with "
        "CHATTERBOX_MODE=remote a replica needs a GPU node (see the autoscaler's logs)",
        None if engine_ok else f"inference deployment {engine.status}, {engine.running_replicas} running replicas"
        + (f": {engine.message}" if engine.message else ""),
    )
    checks["engine"]["replicas"] = engine.running_replicas
    if stats is not None:
        oldest = stats.oldest_pending_created_at
        waited = now - oldest if oldest is not None else 0.0
        checks["queue"] = _check(
            waited <= stuck_after_s,
            JOB_STUCK_IN_PENDING,
            "check that an inference replica is running and claiming (its logs show event=claimed lines), "
            "and the job store's logs",
            f"oldest pending job has waited {waited:.0f} s",
        )
        checks["queue"].update(pending=stats.pending, processing=stats.processing, oldest_pending_s=round(waited, 1))
    if oldest_processing_started_at is not None:
        running = now - oldest_processing_started_at
        checks["processing"] = _check(
            running <= max(settings.dev_timeout_s, settings.lease_s * 3),
            PROCESSING_TIMEOUT,
            "check the inference replica's GPU memory and logs; raise VOICEQ_DEV_TIMEOUT_S for long texts",
            f"a job has been processing for {running:.0f} s",
        )
    critical = ("job_store", "storage", "engine")
    status = "ok"
    if any(checks[name]["status"] != "ok" for name in critical):
        status = "unavailable"
    elif any(c["status"] != "ok" for c in checks.values()):
        status = "degraded"
    return {"status": status, "environment": settings.environment, "checks": checks}


def terse_report(report: dict[str, Any]) -> dict[str, Any]:
    """What an anonymous caller learns: ready or not, and which checks fail, in the seed's
    words; no actions, details, paths, URLs or queue figures."""
    checks = {
        name: ({"status": "ok"} if check.get("status") == "ok" else {"status": check.get("status"), "message": check.get("message")})
        for name, check in report.get("checks", {}).items()
    }
    return {"status": report.get("status"), "checks": checks}
