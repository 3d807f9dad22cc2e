"""A Ray cluster on this machine whose GPU workers are "droplets" of the fake DigitalOcean API.

`local_cluster` starts the fake DO API, registers the head droplet (as `ray up` would have made
it) and a foreign droplet, and starts a Ray head (``ray start --head --autoscaling-config``,
autoscaler v2) whose provider is `droplets.provider.DigitalOceanNodeProvider` pointed at the
fake. When the provider creates a droplet, the fake "boots" it by running the launcher from the
droplet's own cloud-init user data: a local ``ray start`` worker with the node type's resources
and the environment the user data writes. Destroying the droplet stops that worker.

`RayDriver` is a driver process connected to that cluster (see `ray_driver`): tests talk to it
over a pipe instead of calling `ray.init` themselves, because the pytest process may already
hold the session-wide local Ray of `tests/conftest.py` (one process, one Ray connection), and a
second connection would either fail or silently reuse the wrong cluster.

Every process started here runs in its own session and is stopped by process group; nothing
else on the machine is touched. Ports are picked free (several Ray clusters may share it).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from droplets.tags import cluster_tag, encode_node_tags
from tests.fakes.digitalocean import TOKEN, FakeDigitalOcean

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
CLUSTER = "voiceq-e2e"
TOKEN_ENV = "VOICEQ_E2E_DO_TOKEN"
HEAD_TYPE = "head_cpu"
WORKER_TYPE = "gpu_mi300x"
WORKER_SIZE = "gpu-mi300x1-192gb"
# A second, smaller GPU size (NVIDIA, CUDA): the fleet the queue policy chooses from.
SMALL_TYPE = "gpu_rtx4000"
SMALL_SIZE = "gpu-4000adax1-20gb"
# What the droplet's metadata service answers, for the variables the user data reads from it.
PRIVATE_IP = "127.0.0.1"


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


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    if proc.stdin is not None:
        # A piped driver ends on end of input; give it a moment to disconnect cleanly.
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader: a zombie still counts as a member of its group
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            continue
        break
    proc.wait(timeout=5)


class ProcessGroups:
    """Processes started in their own sessions, stopped by process group.

    Once `stop_all` has begun nothing more starts: a droplet that "boots" in the fake's hook
    thread while the test is being torn down must not leave a Ray worker behind.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[Any]] = {}
        self._closed = False

    def start(self, key: str, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        with open(log, "ab") as out:
            self._start(key, argv, env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def start_piped(self, key: str, argv: list[str], env: Mapping[str, str],
                    stderr: IO[bytes]) -> subprocess.Popen[str]:
        """A process the caller talks to over stdin/stdout (text, line by line)."""
        return self._start(key, argv, env, stdout=subprocess.PIPE, stderr=stderr,
                           stdin=subprocess.PIPE, text=True, bufsize=1)

    def _start(self, key: str, argv: list[str], env: Mapping[str, str], **popen: Any) -> subprocess.Popen[Any]:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"not starting {key}: the cluster is being stopped")
            proc = subprocess.Popen(argv, env=dict(env), start_new_session=True, cwd=REPO, **popen)
            self._procs[key] = proc
            return proc

    def alive(self, key: str) -> bool:
        with self._lock:
            proc = self._procs.get(key)
        return proc is not None and proc.poll() is None

    def stop(self, key: str) -> None:
        with self._lock:
            proc = self._procs.pop(key, None)
        if proc is not None:
            _stop_group(proc)

    def stop_all(self) -> None:
        with self._lock:
            self._closed = True
            keys = list(self._procs)
        # Newest first: drivers and droplets before the head they are connected to.
        for key in reversed(keys):
            started = time.monotonic()
            self.stop(key)
            print(f"[cluster] stopped {key} in {time.monotonic() - started:.1f} s", flush=True)


def heredoc(script: str, marker: str) -> str:
    match = re.search(rf"<<'{marker}'\n(.*?)\n{marker}\n", script, re.S)
    assert match, f"user data has no {marker} section"
    return match.group(1)


def boot_command(user_data: str, droplet_id: int) -> tuple[str, dict[str, str]]:
    """What the droplet's systemd unit would run: the launcher from its user data, with the
    environment file cloud-init writes: the static part from the user data's heredoc, then the
    lines it appends from the metadata service (`echo "KEY=$DROPLET_ID"` and the like), with
    this droplet's id and the local address standing in for the metadata answers. Reading
    those lines from the script (not setting the variables here) keeps the test honest: a
    variable the user data stops exporting is missing on the node."""
    env: dict[str, str] = {}
    for line in heredoc(user_data, "VOICEQ_ENV_EOF").splitlines():
        key, _, value = line.partition("=")
        env[key] = json.loads(value)  # KEY="value" with backslash escapes
    metadata = {"DROPLET_ID": str(droplet_id), "PRIVATE_IP": PRIVATE_IP}
    appended = re.search(r"^\{\n(.*?)\n\} >>\S+ray-worker\.env$", user_data, re.S | re.M)
    assert appended, "user data does not append the droplet's identity to the environment file"
    for line in appended.group(1).splitlines():
        match = re.fullmatch(r'\s*echo "(\w+)=\$(\w+)"', line)
        assert match, f"unexpected line in the environment block: {line!r}"
        env[match.group(1)] = metadata[match.group(2)]
    launcher = heredoc(user_data, "VOICEQ_LAUNCHER_EOF")
    # Co-located "droplets" share one machine: keep the worker off default ports.
    launcher = launcher.replace(" --block", " " + " ".join(port_flags()) + " --block")
    return launcher, env


def cluster_config(fake: FakeDigitalOcean, gcs_port: int, *,
                   worker_resources: Mapping[str, float] | None = None,
                   idle_timeout_minutes: float = 0.1) -> dict[str, Any]:
    commands = ("initialization_commands", "setup_commands", "head_setup_commands",
                "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
    return {
        "cluster_name": CLUSTER,
        "max_workers": 1,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_minutes,
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
            "billing": "per_second",
            "prices": {WORKER_SIZE: 1.99, SMALL_SIZE: 0.76},
        },
        "auth": {"ssh_user": "root"},
        "head_node_type": HEAD_TYPE,
        "available_node_types": {
            HEAD_TYPE: {
                "resources": {"CPU": 1},
                "node_config": {"size": "s-4vcpu-8gb", "image": "ubuntu-24-04-x64"},
                "min_workers": 0,
                "max_workers": 0,
            },
            WORKER_TYPE: {
                "resources": dict(worker_resources or {"CPU": 1, "GPU": 1, f"voiceq_node_{WORKER_TYPE}": 1}),
                "labels": {"accelerator": "mi300x"},
                "node_config": {
                    "size": WORKER_SIZE,
                    "image": "gpu-amd-base",
                    "gpu_runtime": "rocm",
                    "ray_executable": RAY,
                    "environment": {"CHATTERBOX_MODE": "remote"},
                    "jobs_per_s": 2.7,
                },
                "min_workers": 0,
                "max_workers": 1,
            },
            SMALL_TYPE: {
                "resources": {"CPU": 1, "GPU": 1, f"voiceq_node_{SMALL_TYPE}": 1},
                "labels": {"accelerator": "rtx4000ada"},
                "node_config": {
                    "size": SMALL_SIZE,
                    "image": "gpu-h100x1-base",
                    "gpu_runtime": "cuda",
                    "ray_executable": RAY,
                    "environment": {"CHATTERBOX_MODE": "remote"},
                    "jobs_per_s": 0.7,
                },
                "min_workers": 0,
                "max_workers": 1,
            },
        },
        "file_mounts": {},
        "cluster_synced_files": [],
        **{key: [] for key in commands},
    }


def base_env() -> dict[str, str]:
    """This process's environment for a child that belongs to the test cluster only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return f"\n--- {path.name} (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class LocalCluster:
    fake: FakeDigitalOcean
    processes: ProcessGroups
    temp_dir: Path
    gcs_port: int
    head_id: int
    foreign_id: int
    head_env: dict[str, str]
    booted: list[int] = field(default_factory=list)
    boot_errors: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def config_path(self) -> Path:
        """The cluster config the head runs with (also the app's VOICEQ_FLEET_CONFIG)."""
        return self.temp_dir / "cluster.yaml"

    @property
    def tag(self) -> str:
        return cluster_tag(CLUSTER)

    def worker_ids(self) -> set[int]:
        """Droplets the provider created (not the head, not the foreign one)."""
        return self.fake.created_ids() - {self.head_id}

    def session_logs(self) -> Path:
        return self.temp_dir / "session_latest" / "logs"

    def diagnostics(self) -> str:
        logs = self.session_logs()
        parts = [log_tail(logs / "monitor.log")]
        parts += [log_tail(p) for p in sorted((logs / "serve").glob("controller_*.log"))]
        parts += [log_tail(p, 15) for p in sorted(self.temp_dir.glob("droplet-*.log"))]
        if self.boot_errors:
            parts.append("\nboot errors:\n" + "\n".join(self.boot_errors))
        return "".join(parts)

    def wait_for(self, condition: Callable[[], Any], timeout_s: float, what: str,
                 interval_s: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}{self.diagnostics()}")
            time.sleep(interval_s)


@contextmanager
def local_cluster(temp_dir: Path, *, head_env: Mapping[str, str] | None = None,
                  worker_resources: Mapping[str, float] | None = None,
                  idle_timeout_minutes: float = 0.1) -> Iterator[LocalCluster]:
    """The fake DO API and a Ray head whose autoscaler uses our provider against it; on exit
    every process started for it (head, "droplets", drivers) is stopped, then the fake."""
    gcs_port, client_port, autoscaler_metrics_port = free_ports(3)
    processes = ProcessGroups()
    with FakeDigitalOcean(active_after_s=0.5) as fake:
        try:
            foreign = fake.add_foreign_droplet("someone-elses-gpu", size=WORKER_SIZE)
            # The head droplet, as `ray up` would have created and tagged it.
            head_id = fake.add_droplet(
                f"{CLUSTER}-head", size="s-4vcpu-8gb",
                tags=(cluster_tag(CLUSTER), *encode_node_tags({
                    "ray-node-type": "head", "ray-user-node-type": HEAD_TYPE,
                    "ray-node-name": f"ray-{CLUSTER}-head", "ray-node-status": "up-to-date",
                    "ray-cluster-name": CLUSTER})),
            )
            env = {
                **base_env(),
                TOKEN_ENV: TOKEN,
                "RAY_enable_autoscaler_v2": "1",
                "RAY_CLOUD_INSTANCE_ID": str(head_id),
                "RAY_NODE_TYPE_NAME": HEAD_TYPE,
                "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                # The autoscaler's Prometheus port (default 44217) may be another cluster's.
                "AUTOSCALER_METRIC_PORT": str(autoscaler_metrics_port),
                **(head_env or {}),
            }
            cluster = LocalCluster(fake, processes, temp_dir, gcs_port, head_id, foreign, env)

            def on_boot(droplet: dict[str, Any], user_data: str | None) -> None:
                if droplet["id"] in (head_id, foreign):
                    return
                try:
                    assert user_data is not None, "a droplet created without user data"
                    launcher, droplet_env = boot_command(user_data, droplet["id"])
                    cluster.booted.append(droplet["id"])
                    processes.start(f"droplet-{droplet['id']}", ["bash", "-c", launcher],
                                    {**base_env(), **droplet_env}, temp_dir / f"droplet-{droplet['id']}.log")
                except Exception as err:  # the hook runs in the fake's thread: report it to the test
                    cluster.boot_errors.append(f"droplet {droplet['id']}: {type(err).__name__}: {err}")

            def on_destroy(droplet: dict[str, Any]) -> None:
                # Destroying a droplet takes its processes with it.
                processes.stop(f"droplet-{droplet['id']}")

            fake.on_boot = on_boot
            fake.on_destroy = on_destroy

            config_path = temp_dir / "cluster.yaml"
            config_path.write_text(yaml.safe_dump(cluster_config(
                fake, gcs_port, worker_resources=worker_resources, idle_timeout_minutes=idle_timeout_minutes)))
            processes.start("head", [
                RAY, "start", "--head", "--block", f"--port={gcs_port}",
                f"--node-ip-address={PRIVATE_IP}", f"--ray-client-server-port={client_port}",
                f"--temp-dir={temp_dir}", "--num-cpus=1", "--num-gpus=0",
                "--include-dashboard=false", f"--autoscaling-config={config_path}",
                *port_flags(),
            ], env, temp_dir / "head.log")
            yield cluster
        finally:
            fake.on_boot = None
            processes.stop_all()


PREFIX = "@@voiceq-driver@@ "


class RayDriver:
    """Client of a `tests.droplets.ray_driver` process connected to the cluster.

    Each call writes one JSON request line and waits for the one reply line (marked with
    PREFIX: Ray may print to stdout too)."""

    def __init__(self, cluster: LocalCluster, *, http_port: int, env: Mapping[str, str] | None = None,
                 connect_timeout_s: float = 120.0) -> None:
        with open(cluster.temp_dir / "driver.log", "ab") as log:  # the child keeps its own handle
            self._proc = cluster.processes.start_piped(
                "driver", [sys.executable, "-m", "tests.droplets.ray_driver", cluster.address, str(http_port)],
                {**cluster.head_env, **(env or {})}, log)
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="ray-driver-reader", daemon=True).start()
        self.call("ping", timeout_s=connect_timeout_s)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        with self._proc.stdout:  # closed here, at the end of output, not under this thread's feet
            for line in self._proc.stdout:
                if line.startswith(PREFIX):
                    self._replies.put(line[len(PREFIX):])
        self._replies.put(None)

    def call(self, command: str, *, timeout_s: float = 60.0, **args: Any) -> dict[str, Any]:
        with self._lock:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"command": command, **args}) + "\n")
            self._proc.stdin.flush()
            try:
                line = self._replies.get(timeout=timeout_s)
            except queue.Empty:
                raise TimeoutError(f"the driver did not answer {command!r} in {timeout_s:g} s") from None
        if line is None:
            raise RuntimeError(f"the driver exited (code {self._proc.poll()}); see driver.log")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"the driver failed {command!r}:\n{reply['error']}")
        return reply
