"""Logging inside a Serve replica: voiceq's lines go through Serve's own logger, so an app's
`logging_config` (JSON encoding, request ids, log level, log files) applies to them too."""

from __future__ import annotations

from voiceq.logs import configure

# Serve's component logger; Ray documents it as the logger for user code in replicas.
SERVE_LOGGER = "ray.serve"


def configure_replica_logging() -> None:
    configure(forward_to=SERVE_LOGGER)
