"""Shipping the head's code with the app: `python -m deployments.ship` on a real Ray cluster."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deployments.ship import EXCLUDES, ShipError, main, parse_env, with_code
from tests.droplets.cluster import RAY, REPO, ProcessGroups, base_env, free_ports, log_tail, port_flags
from tests.support.server import wait_until

PRODUCTION = yaml.safe_load((REPO / "cluster_configs" / "production.yaml").read_text())


def test_every_application_runs_from_the_shipped_checkout() -> None:
    shipped = with_code(PRODUCTION, REPO, {"CHATTERBOX_MODE": "remote"})
    (app,) = shipped["applications"]
    assert app["runtime_env"]["working_dir"] == str(REPO)
    assert app["runtime_env"]["env_vars"] == {"CHATTERBOX_MODE": "remote"}
    assert set(EXCLUDES) <= set(app["runtime_env"]["excludes"])
    assert app["import_path"] == "serve_app:build_app"
    assert "runtime_env" not in PRODUCTION["applications"][0], "the input config is left as it was"


def test_an_application_with_remote_code_keeps_it() -> None:
    config = {"applications": [{"import_path": "x:app", "runtime_env": {"working_dir": "s3://b/code.zip"}}]}
    assert with_code(config, REPO, {})["applications"][0]["runtime_env"]["working_dir"] == "s3://b/code.zip"


@pytest.mark.parametrize("pair", ["NOEQUALS", "=value", "1ABC=x", "A-B=x"])
def test_a_malformed_env_setting_is_refused(pair: str) -> None:
    with pytest.raises(ShipError, match="NAME=VALUE"):
        parse_env([pair])


def test_a_config_without_applications_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "empty.yaml"
    config.write_text("proxy_location: HeadOnly\n")
    assert main([str(config), "--address", "http://127.0.0.1:9"]) == 2
    assert "no applications" in capsys.readouterr().err


@pytest.fixture
def ray_head() -> Iterator[dict[str, Any]]:
    """A Ray head with its dashboard, in its own process group (never `ray stop`: other
    clusters may run on this machine)."""
    gcs_port, dashboard_port, http_port, client_port = free_ports(4)
    # Short: Ray's socket paths live under the temp dir and must stay under 107 characters.
    temp_dir = Path(tempfile.mkdtemp(prefix="vq-ship-", dir="/tmp"))
    processes = ProcessGroups()
    env = {k: v for k, v in base_env().items() if k != "PYTHONPATH"}
    processes.start("head", [
        RAY, "start", "--head", "--block", f"--port={gcs_port}", "--node-ip-address=127.0.0.1",
        f"--ray-client-server-port={client_port}", f"--temp-dir={temp_dir}", "--num-cpus=3", "--num-gpus=0",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
        *port_flags(),
    ], env, temp_dir / "head.log")
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    try:
        wait_until(lambda: _answers(f"{dashboard}/api/version"), timeout_s=120,
                   what=f"the dashboard; head log:\n{log_tail(temp_dir / 'head.log')}")
        yield {"dashboard": dashboard, "http_port": http_port, "temp_dir": temp_dir}
    finally:
        processes.stop_all()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_replicas_run_the_code_the_head_shipped(ray_head: dict[str, Any], tmp_path: Path) -> None:
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    config = {**PRODUCTION, "http_options": {"host": "127.0.0.1", "port": ray_head["http_port"]}}
    config_path = tmp_path / "production.yaml"
    config_path.write_text(yaml.safe_dump(config))
    settings = [f"VOICEQ_DATA_DIR={tmp_path / 'data'}", "VOICEQ_AUTH=off",
                # Inference stays at zero replicas: no model to load for this test.
                "VOICEQ_SCALE_MIN_JOBS_TO_START=100000000"]
    argv = [str(config_path), "--working-dir", str(REPO), "--address", ray_head["dashboard"]]
    for setting in settings:
        argv += ["--env", setting]
    assert main(argv) == 0

    url = f"http://127.0.0.1:{ray_head['http_port']}"
    wait_until(lambda: _answers(f"{url}/ready"), timeout_s=240, what="the shipped app to answer /ready")

    details = ServeSubmissionClient(ray_head["dashboard"]).get_serve_details()
    app = details["applications"]["voiceq"]
    working_dir = app["deployed_app_config"]["runtime_env"]["working_dir"]
    assert working_dir.startswith("gcs://_ray_pkg_") and working_dir.endswith(".zip")
    pids = [replica["pid"] for deployment in app["deployments"].values() for replica in deployment["replicas"]]
    assert len(pids) >= 2, "the ingress and the job manager run"
    for pid in pids:
        # Each replica runs inside the unpacked package, which Ray puts first on its path.
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        assert cwd.is_relative_to(ray_head["temp_dir"]) and "working_dir_files" in cwd.parts, cwd
        assert (cwd / "voiceq" / "__init__.py").read_bytes() == (REPO / "voiceq" / "__init__.py").read_bytes()
        assert (cwd / "serve_app").is_dir() and not (cwd / "tests").exists() and not (cwd / ".git").exists()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert any(entry.startswith(b"PYTHONPATH=" + str(cwd).encode()) for entry in environ)

    # Shipping the same tree again is a no-op: the package name is its content hash.
    assert main(argv) == 0
    again = ServeSubmissionClient(ray_head["dashboard"]).get_serve_details()["applications"]["voiceq"]
    assert again["deployed_app_config"]["runtime_env"]["working_dir"] == working_dir
