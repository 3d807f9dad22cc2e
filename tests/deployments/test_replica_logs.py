"""voiceq's job lines in a replica follow the app's Serve `logging_config`."""

from __future__ import annotations

import json
import logging
import logging.handlers
from pathlib import Path
from typing import Iterator

import pytest

from deployments.replica_logs import SERVE_LOGGER, configure_replica_logging
from voiceq.jobs import new_job, new_job_id
from voiceq.logs import configure, log_job


@pytest.fixture
def serve_logger_state() -> Iterator[None]:
    """Serve's and voiceq's loggers as they were: the test reconfigures both, as a replica does."""
    loggers = [logging.getLogger(SERVE_LOGGER), logging.getLogger("voiceq")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, (handlers, level, propagate) in zip(loggers, saved):
        for handler in lg.handlers:
            if handler not in handlers:
                if isinstance(handler, logging.handlers.MemoryHandler) and handler.target:
                    handler.flush()
                    handler.target.close()  # MemoryHandler.close() drops its target unclosed
                handler.close()
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
    configure()


def test_job_lines_go_through_serves_json_logging_with_request_ids(tmp_path: Path, serve_logger_state: None) -> None:
    from ray.serve._private.logging_utils import configure_component_logger
    from ray.serve.context import _RequestContext, _serve_request_context
    from ray.serve.schema import LoggingConfig

    # What Serve does in a replica of an app deployed with logging_config={"encoding": "JSON"}.
    configure_component_logger(component_name="JobManager", component_id="replica-1",
                               logging_config=LoggingConfig(encoding="JSON", logs_dir=str(tmp_path)),
                               max_bytes=1_000_000, backup_count=1)
    configure_replica_logging()
    token = _serve_request_context.set(_RequestContext(route="/api", request_id="req-42", app_name="voiceq"))
    try:
        job = new_job(job_id=new_job_id(), user_id="u1", voice_name="v", sample_text="hi", audio_key="uploads/x.wav", audio_seconds=2.0,
                      max_attempts=3, now=1.0)
        log_job("submitted", job)
    finally:
        _serve_request_context.reset(token)
    for handler in logging.getLogger(SERVE_LOGGER).handlers:
        handler.flush()

    records = [json.loads(line) for path in tmp_path.glob("*.log") for line in path.read_text().splitlines()]
    lines = [r for r in records if f"job={job.job_id} event=submitted" in r.get("message", "")]
    assert len(lines) == 1, records
    assert lines[0]["request_id"] == "req-42"
    assert lines[0]["levelname"] == "INFO"
