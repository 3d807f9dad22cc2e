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


class _Forward(logging.Handler):
    """Hands records to another logger's handlers, whatever they are at the time: Serve
    replaces its handlers when an app's logging_config changes."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(self.target).handle(record)


def configure(level: int = logging.INFO, *, forward_to: str | None = None) -> None:
    """Make voiceq's own lines visible in a process whose root logger only passes warnings.

    `forward_to` names a logger whose handlers should write voiceq's lines: in a Serve replica
    that is Serve's own ("ray.serve"), so the app's `logging_config` (JSON encoding, request
    ids, log files) applies to them as to Serve's lines. Elsewhere (the CLI, scripts) voiceq
    writes to stderr itself."""
    logger = logging.getLogger("voiceq")
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        if isinstance(handler, _Forward) or getattr(handler, "_voiceq", False):
            logger.removeHandler(handler)
    if forward_to:
        logger.addHandler(_Forward(forward_to))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handler._voiceq = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    # httpx logs every request at INFO (each Convex call, each webhook): too much for a job log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
