"""What voiceq measures, exported through `ray.util.metrics` to the Ray dashboard.

Ray prefixes every name with `ray_` on its metrics endpoint (e.g. `ray_voiceq_jobs`), which is
what `cluster_configs/grafana/voiceq.json` queries. The bookkeeping deployment records queue
and job outcomes; the inference deployment records batches and what they generated.
"""

from __future__ import annotations

import re
import threading
from typing import Mapping

# name -> (kind, description, tag keys)
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "voiceq_jobs": ("gauge", "Jobs in the store by status (queue depth is status=pending)", ("status",)),
    "voiceq_oldest_pending_seconds": ("gauge", "Age of the oldest pending job", ()),
    "voiceq_jobs_submitted_total": ("counter", "Jobs accepted by the API", ("environment",)),
    "voiceq_jobs_completed_total": ("counter", "Jobs completed", ("gpu_type",)),
    "voiceq_job_failures_total": ("counter", "Failed attempts by reason (retried or final)", ("reason", "final")),
    "voiceq_job_wait_seconds": ("histogram", "From submission to claim by a worker", ()),
    "voiceq_job_processing_seconds": ("histogram", "From claim to completion", ()),
    "voiceq_batch_size": ("histogram", "Jobs per engine batch", ()),
    # Ray rebuilds histogram sums from bucket midpoints: an exact mean batch size needs this.
    "voiceq_batched_jobs_total": ("counter", "Jobs run through engine batches (mean batch size = this / batch_size_count)", ()),
    "voiceq_speech_tokens_total": ("counter", "Speech tokens generated", ()),
    "voiceq_audio_seconds_total": ("counter", "Seconds of audio generated", ()),
    "voiceq_gpu_nodes": ("gauge", "GPU worker nodes in the Ray cluster", ()),
    "voiceq_gpu_cost_dollars": ("gauge", "Cost so far of the GPU nodes alive now, at the configured hourly price", ()),
    "voiceq_blobs_deleted_total": ("counter", "Users' audio removed from storage (kind: upload, result, voice) by "
                                   "retention, voice deletion or erasure (reason)", ("reason", "kind")),
}

_BOUNDARIES = {
    "voiceq_job_wait_seconds": [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800],
    "voiceq_job_processing_seconds": [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
    "voiceq_batch_size": [1, 2, 4, 8, 16, 32, 64],
}


class Metrics:
    """Records to Ray's metrics when `enabled`; otherwise only keeps the last values in memory
    (tests read those)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._ray: dict[str, object] = {}
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def _metric(self, name: str) -> object:
        metric = self._ray.get(name)
        if metric is None:
            from ray.util import metrics as ray_metrics

            kind, description, tags = METRICS[name]
            if kind == "counter":
                metric = ray_metrics.Counter(name, description=description, tag_keys=tags)
            elif kind == "gauge":
                metric = ray_metrics.Gauge(name, description=description, tag_keys=tags)
            else:
                metric = ray_metrics.Histogram(name, description=description, boundaries=_BOUNDARIES[name],
                                               tag_keys=tags)
            self._ray[name] = metric
        return metric

    def _record(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        tags = {k: str(v) for k, v in (tags or {}).items()}
        kind = METRICS[name][0]
        key = (name, tuple(sorted(tags.items())))
        with self._lock:
            if kind == "counter":
                self.values[key] = self.values.get(key, 0.0) + value
            else:
                self.values[key] = value
            if not self.enabled:
                return
            metric = self._metric(name)
        if kind == "counter":
            metric.inc(value, tags=tags or None)  # type: ignore[attr-defined]
        elif kind == "gauge":
            metric.set(value, tags=tags or None)  # type: ignore[attr-defined]
        else:
            metric.observe(value, tags=tags or None)  # type: ignore[attr-defined]

    # --- what voiceq records -------------------------------------------------------------

    def submitted(self, environment: str) -> None:
        self._record("voiceq_jobs_submitted_total", 1, {"environment": environment})

    def claimed(self, wait_s: float) -> None:
        self._record("voiceq_job_wait_seconds", max(0.0, wait_s))

    def completed(self, *, processing_s: float, speech_tokens: int, audio_s: float, gpu_type: str) -> None:
        self._record("voiceq_jobs_completed_total", 1, {"gpu_type": gpu_type})
        self._record("voiceq_job_processing_seconds", processing_s)
        self._record("voiceq_speech_tokens_total", speech_tokens)
        self._record("voiceq_audio_seconds_total", audio_s)

    def failed(self, reason: str, *, final: bool) -> None:
        self._record("voiceq_job_failures_total", 1, {"reason": reason, "final": "true" if final else "false"})

    def batch(self, size: int) -> None:
        self._record("voiceq_batch_size", size)
        self._record("voiceq_batched_jobs_total", size)

    def queue(self, by_status: Mapping[str, int], oldest_pending_s: float) -> None:
        for status, count in by_status.items():
            self._record("voiceq_jobs", count, {"status": status})
        self._record("voiceq_oldest_pending_seconds", oldest_pending_s)

    def gpu_fleet(self, nodes: int, cost_dollars: float) -> None:
        self._record("voiceq_gpu_nodes", nodes)
        self._record("voiceq_gpu_cost_dollars", cost_dollars)

    def blobs_deleted(self, reason: str, kind: str, count: int) -> None:
        if count:
            self._record("voiceq_blobs_deleted_total", count, {"reason": reason, "kind": kind})

    def value(self, name: str, **tags: str) -> float | None:
        return self.values.get((name, tuple(sorted(tags.items()))))


def failure_reason(error: str) -> str:
    """A short, bounded label for a failure message (metric tags must not carry free text):
    the part before the first colon, e.g. "storage unavailable: ..." -> storage_unavailable,
    "RuntimeError: ..." -> runtimeerror."""
    head = error.split(":", 1)[0].strip().lower().replace(" ", "_")
    return head[:40] if re.fullmatch(r"[a-z_]+", head) else "other"
