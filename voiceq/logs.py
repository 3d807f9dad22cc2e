"""One grammar for job log lines, so operators can grep and parse them:

    job=<id> event=<event> user=<user> attempt=<n>/<max> [key=value ...]

Events: submitted, claimed, completed, retry, failed, expired, cancelled, requeued, stale,
swept (retention removed the job's audio), erased. Lines about a voice or a whole user use
the same key=value grammar after `event=` (`event_line`): voice_deleted, erasure_started,
erasure_done, sweep.
Values never include secrets, audio or free text from users beyond their ids.
"""

from __future__ import annotations

import logging
from typing import Any

from .jobs import Job

log = logging.getLogger("voiceq.jobs")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def job_line(event: str, job: Job, **fields: Any) -> str:
    parts = [f"job={job.job_id}", f"event={event}", f"user={_fmt(job.user_id)}",
             f"attempt={job.attempts}/{job.max_attempts}"]
    parts += [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)


def event_line(event: str, **fields: Any) -> str:
    return " ".join([f"event={event}"] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None])


def log_event(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    log.log(level, event_line(event, **fields))


def log_job(event: str, job: Job, *, level: int = logging.INFO, **fields: Any) -> None:
    log.log(level, job_line(event, job, **fields))


def configure(level: int = logging.INFO) -> None:
    """Make voiceq's own lines visible in a process (a Serve replica) whose root logger only
    passes warnings."""
    logger = logging.getLogger("voiceq")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    # httpx logs every request at INFO (each Convex call, each webhook): too much for a job log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
