"""After a few jobs, voiceq's metrics are on the Ray node's Prometheus endpoint with sensible
values, under the names the Grafana dashboard queries."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.audio import voice_file
from tests.support.server import VoiceqServer, wait_until
from voiceq.metrics import METRICS

API = "/api/public/voice/onboarding"
pytestmark = pytest.mark.slow


def scrape(port: int) -> dict[str, float]:
    """Sum each series over its labels but `status`/`reason`, keyed by name{selected labels}."""
    out: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        m = re.match(r"^(ray_voiceq_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        key = m.group(1) + "".join(f"[{k}={labels[k]}]" for k in ("status", "le") if k in labels)
        out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def test_custom_metrics_appear_after_a_few_jobs(voiceq_server: VoiceqServer, metrics_port: int) -> None:
    voiceq_server.deploy(voiceq_server.settings_for(environment="development"))
    with voiceq_server.client() as c:
        for i in range(2):
            r = c.post(f"{API}/clone", data={"user_id": "metrics", "voice_name": "m"},
                       files={"audio_file": ("v.wav", voice_file("wav", seconds=1.5, seed=i), "audio/wav")})
            assert r.status_code == 200, r.text

    def exported() -> dict[str, float] | None:
        values = scrape(metrics_port)
        wanted = ["ray_voiceq_jobs_completed_total", "ray_voiceq_job_processing_seconds_count",
                  "ray_voiceq_batch_size_count", "ray_voiceq_jobs[status=completed]", "ray_voiceq_gpu_nodes"]
        # Replicas export on an interval: wait until both jobs' outcomes have gone out.
        # The queue gauge is refreshed every few seconds by the lease reaper.
        ready = all(k in values for k in wanted) and values["ray_voiceq_jobs_completed_total"] >= 2
        ready = ready and values["ray_voiceq_jobs[status=completed]"] >= 2
        return values if ready and values["ray_voiceq_job_processing_seconds_count"] >= 2 else None

    values = wait_until(exported, timeout_s=90, interval_s=2, what="voiceq metrics on the endpoint")
    assert values["ray_voiceq_jobs_completed_total"] >= 2
    assert values["ray_voiceq_jobs_submitted_total"] >= 2
    assert values["ray_voiceq_job_processing_seconds_count"] >= 2
    assert 0 < values["ray_voiceq_job_processing_seconds_sum"] / values["ray_voiceq_job_processing_seconds_count"] < 120
    assert values["ray_voiceq_job_wait_seconds_count"] >= 2
    assert values["ray_voiceq_speech_tokens_total"] >= 2 and values["ray_voiceq_audio_seconds_total"] > 0
    assert values["ray_voiceq_jobs[status=completed]"] >= 2
    assert values["ray_voiceq_gpu_nodes"] == 0  # this test cluster has no GPU
    exported_names = {k.split("[")[0] for k in values}
    for name in METRICS:
        if name not in ("voiceq_job_failures_total", "voiceq_blobs_deleted_total"):  # nothing failed or deleted
            base = f"ray_{name}"
            assert any(n == base or n.startswith(base + "_") for n in exported_names), name
