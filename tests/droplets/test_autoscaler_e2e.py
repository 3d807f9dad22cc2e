"""Ray's real autoscaler drives our provider; only the DigitalOcean API is a stand-in.

A head node starts with ``--autoscaling-config`` pointing at a cluster config whose provider
is ours and whose API endpoint is the fake. A Ray task asks for the GPU worker type's
resources; autoscaler v2 calls `create_node`; the fake "boots" the droplet by running the
launcher from the droplet's own cloud-init user data (``ray start --address=... --block`` with
RAY_CLOUD_INSTANCE_ID = droplet id); the task runs on that node; after the idle timeout the
autoscaler terminates the node and the fake shows the droplet destroyed.

Every process started here runs in its own session and is stopped by process group; nothing
else on the machine is touched. Ports are picked free (several Ray clusters may share it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from droplets.tags import cluster_tag, encode_node_tags
from tests.fakes.digitalocean import TOKEN, FakeDigitalOcean

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
CLUSTER = "voiceq-e2e"
TOKEN_ENV = "VOICEQ_E2E_DO_TOKEN"
WORKER_TYPE = "gpu_mi300x"


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_flags() -> list[str]:
    """Flags that keep a local Ray node off default ports other clusters may hold."""
    names = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
    return [f"{name}={port}" for name, port in zip(names, free_ports(len(names)), strict=True)]


class ProcessGroups:
    """Processes started in their own sessions, stopped by process group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, key: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO)
        with self._lock:
            self._procs[key] = proc

    def alive(self, key: str) -> bool:
        with self._lock:
            proc = self._procs.get(key)
        return proc is not None and proc.poll() is None

    def stop(self, key: str) -> None:
        with self._lock:
            proc = self._procs.pop(key, None)
        if proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                continue
            break
        proc.wait(timeout=5)

    def stop_all(self) -> None:
        with self._lock:
            keys = list(self._procs)
        for key in keys:
            self.stop(key)


def heredoc(script: str, marker: str) -> str:
    match = re.search(rf"<<'{marker}'\n(.*?)\n{marker}\n", script, re.S)
    assert match, f"user data has no {marker} section"
    return match.group(1)


def boot_command(user_data: str, droplet_id: int) -> tuple[str, dict[str, str]]:
    """What the droplet's systemd unit would run: the launcher from its user data, with the
    environment file cloud-init writes (static part from the user data, the droplet id and
    private IP from the metadata service; locally 127.0.0.1)."""
    env: dict[str, str] = {}
    for line in heredoc(user_data, "VOICEQ_ENV_EOF").splitlines():
        key, _, value = line.partition("=")
        env[key] = json.loads(value)  # KEY="value" with backslash escapes
    env.update(RAY_CLOUD_INSTANCE_ID=str(droplet_id), VOICEQ_DROPLET_ID=str(droplet_id),
               VOICEQ_PRIVATE_IP="127.0.0.1")
    launcher = heredoc(user_data, "VOICEQ_LAUNCHER_EOF")
    # Co-located "droplets" share one machine: keep the worker off default ports.
    launcher = launcher.replace(" --block", " " + " ".join(port_flags()) + " --block")
    return launcher, env


def cluster_config(fake: FakeDigitalOcean, gcs_port: int) -> dict[str, Any]:
    commands = ("initialization_commands", "setup_commands", "head_setup_commands",
                "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
    return {
        "cluster_name": CLUSTER,
        "max_workers": 1,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,
        "provider": {
            "type": "external",
            "module": "droplets.provider.DigitalOceanNodeProvider",
            "region": "atl1",
            "api_endpoint": fake.endpoint,
            "api_token_env": TOKEN_ENV,
            "api_token_file": None,
            "disable_node_updaters": True,
            "head_address": f"127.0.0.1:{gcs_port}",
            "cache_ttl_s": 0.5,
            "active_timeout_s": 120,
        },
        "auth": {"ssh_user": "root"},
        "head_node_type": "head_cpu",
        "available_node_types": {
            "head_cpu": {
                "resources": {"CPU": 1},
                "node_config": {"size": "s-4vcpu-8gb", "image": "ubuntu-24-04-x64"},
                "min_workers": 0,
                "max_workers": 0,
            },
            WORKER_TYPE: {
                "resources": {"CPU": 1, "GPU": 1},
                "labels": {"accelerator": "mi300x"},
                "node_config": {
                    "size": "gpu-mi300x1-192gb",
                    "image": "gpu-amd-base",
                    "gpu_runtime": "rocm",
                    "ray_executable": RAY,
                    "environment": {"CHATTERBOX_MODE": "remote"},
                },
                "min_workers": 0,
                "max_workers": 1,
            },
        },
        "file_mounts": {},
        "cluster_synced_files": [],
        **{key: [] for key in commands},
    }


DRIVER = textwrap.dedent(
    """
    import json, os, sys, ray
    ray.init(address=sys.argv[1], log_to_driver=False)

    @ray.remote(num_gpus=1, num_cpus=1)
    def where():
        return {"droplet": os.environ.get("VOICEQ_DROPLET_ID"),
                "instance": os.environ.get("RAY_CLOUD_INSTANCE_ID"),
                "miopen": os.environ.get("MIOPEN_LOG_LEVEL"),
                "mode": os.environ.get("CHATTERBOX_MODE"),
                "node": ray.get_runtime_context().get_node_id()}

    print("RESULT " + json.dumps(ray.get(where.remote(), timeout=240)), flush=True)
    """
)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str,
             logs: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            detail = ""
            if logs is not None:
                monitor = sorted(logs.glob("session_*/logs/monitor.log"))
                if monitor:
                    detail = "\nmonitor.log tail:\n" + "\n".join(
                        monitor[-1].read_text(errors="replace").splitlines()[-40:])
            pytest.fail(f"timed out waiting for {what}{detail}")
        time.sleep(0.5)


@pytest.fixture
def temp_dir() -> Iterator[Path]:
    # Short: Ray's unix socket paths live under it.
    path = Path(tempfile.mkdtemp(prefix="rq-e2e-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def processes(temp_dir: Path) -> Iterator[ProcessGroups]:
    groups = ProcessGroups()
    yield groups
    groups.stop_all()


def test_the_autoscaler_adds_and_removes_a_gpu_droplet(
    processes: ProcessGroups, temp_dir: Path
) -> None:
    gcs_port, client_port = free_ports(2)
    with FakeDigitalOcean(active_after_s=0.5) as fake:
        foreign = fake.add_foreign_droplet("someone-elses-gpu", size="gpu-mi300x1-192gb")
        # The head droplet, as `ray up` would have created and tagged it.
        head_id = fake.add_droplet(
            f"{CLUSTER}-head", size="s-4vcpu-8gb",
            tags=(cluster_tag(CLUSTER), *encode_node_tags({
                "ray-node-type": "head", "ray-user-node-type": "head_cpu",
                "ray-node-name": f"ray-{CLUSTER}-head", "ray-node-status": "up-to-date",
                "ray-cluster-name": CLUSTER})),
        )
        booted: list[int] = []

        def on_boot(droplet: dict[str, Any], user_data: str | None) -> None:
            if droplet["id"] == head_id or droplet["id"] == foreign:
                return
            assert user_data is not None
            launcher, env = boot_command(user_data, droplet["id"])
            booted.append(droplet["id"])
            processes.start(f"droplet-{droplet['id']}", ["bash", "-c", launcher],
                            {**os.environ, **env}, temp_dir / f"droplet-{droplet['id']}.log")

        def on_destroy(droplet: dict[str, Any]) -> None:
            # Destroying a droplet takes its processes with it.
            processes.stop(f"droplet-{droplet['id']}")

        fake.on_boot = on_boot
        fake.on_destroy = on_destroy

        config_path = temp_dir / "cluster.yaml"
        config_path.write_text(yaml.safe_dump(cluster_config(fake, gcs_port)))
        head_env = {
            **os.environ,
            TOKEN_ENV: TOKEN,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "RAY_enable_autoscaler_v2": "1",
            "RAY_CLOUD_INSTANCE_ID": str(head_id),
            "RAY_NODE_TYPE_NAME": "head_cpu",
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        processes.start("head", [
            RAY, "start", "--head", "--block", f"--port={gcs_port}",
            "--node-ip-address=127.0.0.1", f"--ray-client-server-port={client_port}",
            f"--temp-dir={temp_dir}", "--num-cpus=1", "--num-gpus=0",
            "--include-dashboard=false", f"--autoscaling-config={config_path}",
            *port_flags(),
        ], head_env, temp_dir / "head.log")

        address = f"127.0.0.1:{gcs_port}"
        driver = subprocess.run(
            [sys.executable, "-c", DRIVER, address], env={**head_env}, cwd=REPO,
            capture_output=True, text=True, timeout=300,
        )
        assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
        result = json.loads(driver.stdout.split("RESULT ", 1)[1])

        creates = fake.requests_to("POST /v2/droplets")
        assert len(creates) == 1, "the autoscaler should have asked for exactly one droplet"
        [worker_id] = creates[0].droplet_ids
        assert creates[0].body["size"] == "gpu-mi300x1-192gb"
        assert booted == [worker_id]
        # The task ran on the droplet's Ray node, which carried the droplet's identity.
        assert result["droplet"] == result["instance"] == str(worker_id)
        assert result["miopen"] == "1" and result["mode"] == "remote"

        # Idle for 6 s: the autoscaler hands the droplet back.
        wait_for(lambda: worker_id in fake.destroyed_ids(), 120,
                 "the idle GPU droplet to be destroyed", logs=temp_dir)
        assert not processes.alive(f"droplet-{worker_id}")
        deletes = fake.requests_to("DELETE /v2/droplets/{id}")
        assert {r.droplet_ids for r in deletes} == {(worker_id,)}
        assert processes.alive("head")
        assert fake.droplet(head_id) is not None and fake.droplet(foreign) is not None
        assert not fake.touched_ids() & ({foreign, head_id})
        # Nothing else was created, nothing is left running but the head.
        assert {d["id"] for d in fake.live_droplets(cluster_tag(CLUSTER))} == {head_id}
        processes.stop_all()
