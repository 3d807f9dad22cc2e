"""Ctrl-C on `serve run` stops the app in seconds, even with a batch in flight; the job it
held stays in the store for its lease to return to the queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.audio import voice_file
from tests.support.server import free_port, wait_until
from voiceq.store.sqlite import SQLiteJobStore

REPO = Path(__file__).resolve().parents[2]
SERVE = Path(sys.executable).with_name("serve")
API = "/api/public/voice/onboarding"

pytestmark = pytest.mark.slow


def test_ctrl_c_stops_serve_run_within_seconds_with_a_batch_in_flight(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{"name": "voiceq", "route_prefix": "/", "import_path": "tests.support.apps:stuck_engine_app",
                          "args": {"environment": "development", "data_dir": str(data_dir),
                                   "inference_num_cpus": "0.5"}}],
    }))
    # RAY_ADDRESS=local: a Ray instance of its own, as on a developer's machine, whatever else runs here.
    env = dict(os.environ, RAY_ADDRESS="local", PYTHONPATH=str(REPO), TQDM_DISABLE="1")
    log = (tmp_path / "serve.log").open("w")
    # A terminal's Ctrl-C signals the foreground process group, with SIGINT's default action.
    process = subprocess.Popen([str(SERVE), "run", str(config)], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url), timeout_s=240, what="serve run to answer /ready")
        audio = voice_file("wav", seconds=1.5)
        # Development mode: this request waits for a batch that will not finish on its own.
        threading.Thread(target=_submit, args=(url, audio), daemon=True).start()
        store = SQLiteJobStore(data_dir / "jobs.sqlite3")
        wait_until(lambda: store.stats().processing == 1, timeout_s=60, what="the job to be in the engine")

        started = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
        stopped_s = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    assert stopped_s < 20, f"serve run took {stopped_s:.1f} s to stop after Ctrl-C"
    jobs = store.list_jobs(limit=10)
    assert [j.status.value for j in jobs] == ["processing"]  # kept, for its lease to requeue it


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _submit(url: str, audio: bytes) -> None:
    try:
        httpx.post(f"{url}{API}/clone", data={"user_id": "u1", "voice_name": "v"},
                   files={"audio_file": ("v.wav", audio, "audio/wav")}, timeout=600)
    except httpx.HTTPError:
        pass  # the app stops under it
