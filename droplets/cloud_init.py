"""User data that turns a fresh droplet into a Ray worker of our cluster.

The autoscaler runs with ``disable_node_updaters: true``: nobody SSHes into workers. The
droplet bootstraps itself at first boot (cloud-init runs the script as root):

1. asks the droplet metadata service for its own id and private IP (the id is not known when
   the user data is written, since DigitalOcean assigns it on create);
2. writes ``/etc/voiceq/ray-worker.env`` with ``RAY_CLOUD_INSTANCE_ID`` and
   ``VOICEQ_DROPLET_ID`` (= the droplet id, which is the Ray autoscaler's node id, so autoscaler
   v2 can match the Ray node to the droplet), ``RAY_NODE_TYPE_NAME`` and, for AMD GPUs,
   ``MIOPEN_LOG_LEVEL=1`` (MIOpen is very chatty otherwise);
3. checks the GPU runtime (ROCm on MI300X droplets from the ``gpu-amd-base`` image, CUDA on
   NVIDIA ones), runs the node type's setup commands (Python env, ROCm build of torch...) and
   installs the head's third-party requirements at the head's versions
   (``droplets.requirements``); voiceq's own code arrives later, with the Serve application
   (``deployments.ship``), so a worker cannot run other code than the head's;
4. installs a systemd unit that runs ``ray start --address=<head private IP>:<port> --block``
   with the node type's resources and restarts it if it dies.

`ray_start_argv` and `worker_environment` are also what a local stand-in uses to "boot" a
droplet, so the tested command is the shipped command.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

METADATA_URL = "http://169.254.169.254/metadata/v1"
ENV_FILE = "/etc/voiceq/ray-worker.env"
LAUNCHER = "/usr/local/bin/voiceq-ray-worker"
UNIT_NAME = "voiceq-ray-worker.service"
LOG_FILE = "/var/log/voiceq-bootstrap.log"

GPU_RUNTIMES = ("rocm", "cuda", "none")

# Ray resources that `ray start` takes as dedicated flags rather than in --resources.
_FLAG_RESOURCES = {
    "CPU": "--num-cpus",
    "GPU": "--num-gpus",
    "memory": "--memory",
    "object_store_memory": "--object-store-memory",
}


@dataclass(frozen=True)
class WorkerBootstrap:
    """Everything a worker droplet needs to join the cluster."""

    cluster_name: str
    node_type: str
    head_address: str
    resources: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    gpu_runtime: str = "none"
    setup_commands: tuple[str, ...] = ()
    # pip requirement strings installed after the setup commands (the head's, pinned).
    python_requirements: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    ray_executable: str = "ray"
    start_ray: bool = True
    metadata_url: str = METADATA_URL

    def __post_init__(self) -> None:
        if self.gpu_runtime not in GPU_RUNTIMES:
            raise ValueError(f"gpu_runtime must be one of {GPU_RUNTIMES}, got {self.gpu_runtime!r}")
        if self.start_ray and not self.head_address:
            raise ValueError("a worker that starts Ray needs the head's address")
        for key in self.environment:
            if not key.replace("_", "").isalnum() or key[0].isdigit():
                raise ValueError(f"invalid environment variable name {key!r}")
        for key, value in self.labels.items():
            if "," in key or "=" in key or "," in value or "=" in value:
                raise ValueError(f"Ray label {key}={value} must not contain ',' or '='")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def ray_start_argv(bootstrap: WorkerBootstrap, node_ip: str | None = None) -> list[str]:
    """The ``ray start`` command line (without the executable) for this worker."""
    argv = ["start", f"--address={bootstrap.head_address}"]
    if node_ip:
        argv.append(f"--node-ip-address={node_ip}")
    custom: dict[str, float] = {}
    for name, amount in sorted(bootstrap.resources.items()):
        flag = _FLAG_RESOURCES.get(name)
        if flag is None:
            custom[name] = amount
        else:
            argv.append(f"{flag}={_number(amount)}")
    if custom:
        argv.append("--resources=" + json.dumps(custom, sort_keys=True, separators=(",", ":")))
    if bootstrap.labels:
        argv.append(
            "--labels=" + ",".join(f"{k}={v}" for k, v in sorted(bootstrap.labels.items()))
        )
    argv.append("--block")
    return argv


def worker_environment(bootstrap: WorkerBootstrap, droplet_id: str) -> dict[str, str]:
    """Environment of the Ray worker process on the droplet with id `droplet_id`."""
    env = dict(bootstrap.environment)
    env.update(
        {
            "RAY_CLOUD_INSTANCE_ID": droplet_id,
            "RAY_NODE_TYPE_NAME": bootstrap.node_type,
            "VOICEQ_DROPLET_ID": droplet_id,
            "VOICEQ_RAY_CLUSTER": bootstrap.cluster_name,
        }
    )
    if bootstrap.gpu_runtime == "rocm":
        env["MIOPEN_LOG_LEVEL"] = "1"
        env.setdefault("ROCM_PATH", "/opt/rocm")
    return env


def _static_env_lines(bootstrap: WorkerBootstrap) -> list[str]:
    # Everything but the droplet id, which only the metadata service knows at boot.
    env = worker_environment(bootstrap, droplet_id="")
    for key in ("RAY_CLOUD_INSTANCE_ID", "VOICEQ_DROPLET_ID"):
        env.pop(key)
    # systemd EnvironmentFile values: double quotes, backslash-escaped.
    return [
        f'{key}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for key, value in sorted(env.items())
    ]


def _gpu_check(runtime: str) -> list[str]:
    if runtime == "rocm":
        return [
            "# ROCm: the gpu-amd-base image ships the amdgpu driver and ROCm under /opt/rocm.",
            'if [ ! -x /opt/rocm/bin/rocm-smi ] && ! command -v rocm-smi >/dev/null; then',
            '  echo "ROCm not found: AMD GPU workers need a ROCm image such as gpu-amd-base" >&2',
            "  exit 1",
            "fi",
            'export PATH="/opt/rocm/bin:$PATH" ROCM_PATH=/opt/rocm MIOPEN_LOG_LEVEL=1',
            "rocm-smi --showproductname || true",
            "# Ray and torch see the GPUs through the render nodes.",
            "ls -l /dev/kfd /dev/dri/renderD* || true",
        ]
    if runtime == "cuda":
        return [
            "# CUDA: NVIDIA GPU images ship the driver.",
            'if ! command -v nvidia-smi >/dev/null; then',
            '  echo "nvidia-smi not found: NVIDIA GPU workers need a GPU image" >&2',
            "  exit 1",
            "fi",
            "nvidia-smi -L || true",
        ]
    return []


def _python(bootstrap: WorkerBootstrap) -> str:
    """The Python of the environment Ray runs from (the venv of `ray_executable`)."""
    ray = bootstrap.ray_executable
    return ray.rsplit("/", 1)[0] + "/python" if "/" in ray else "python3"


def _requirements(bootstrap: WorkerBootstrap) -> list[str]:
    if not bootstrap.python_requirements:
        return []
    install = [_python(bootstrap), "-m", "pip", "install", "--no-cache-dir", *bootstrap.python_requirements]
    return [
        "# The head's third-party requirements at the head's versions; voiceq's own code comes",
        "# with the Serve application's working_dir (python -m deployments.ship).",
        " ".join(shlex.quote(arg) for arg in install),
    ]


def _torch_check(bootstrap: WorkerBootstrap) -> list[str]:
    """After setup: the torch the node type installed must be the GPU's build (ROCm for AMD,
    CUDA for NVIDIA) and see the GPU; a mismatch fails the boot instead of running on the CPU."""
    if bootstrap.gpu_runtime == "none":
        return []
    python = _python(bootstrap)
    want, other = ("hip", "cuda") if bootstrap.gpu_runtime == "rocm" else ("cuda", "hip")
    code = (
        "import torch; "
        f"assert torch.version.{want}, 'torch ' + torch.__version__ + ' is not a {bootstrap.gpu_runtime.upper()} build'; "
        f"assert not torch.version.{other}, 'torch is a {other} build'; "
        "assert torch.cuda.is_available(), 'torch sees no GPU'; "
        "print(torch.__version__, torch.cuda.get_device_name(0))"
    )
    return [f"# The torch build must match the GPU ({bootstrap.gpu_runtime}).", f"{shlex.quote(python)} -c {shlex.quote(code)}"]


def render_user_data(bootstrap: WorkerBootstrap) -> str:
    """The cloud-init user data (a bash script) for a worker droplet."""
    q = shlex.quote
    metadata = bootstrap.metadata_url.rstrip("/")
    lines = [
        "#!/bin/bash",
        f"# Ray worker bootstrap: cluster {bootstrap.cluster_name}, "
        f"node type {bootstrap.node_type}.",
        "# Generated by droplets.cloud_init; runs once, as root, at first boot.",
        "set -euo pipefail",
        f"exec >>{LOG_FILE} 2>&1",
        'echo "voiceq bootstrap started $(date -u +%Y-%m-%dT%H:%M:%SZ)"',
        f"METADATA={q(metadata)}",
        'fetch() { curl -fsS --retry 20 --retry-delay 3 --retry-connrefused "$METADATA/$1"; }',
        'DROPLET_ID="$(fetch id)"',
        'PRIVATE_IP="$(fetch interfaces/private/0/ipv4/address)"',
        # The environment file holds the node's settings (store URLs, keys passed through
        # node_config.environment): root only, from the moment it exists.
        "install -d -m 0700 /etc/voiceq",
        f"install -m 0600 /dev/null {ENV_FILE}",
        f"cat >{ENV_FILE} <<'VOICEQ_ENV_EOF'",
        *_static_env_lines(bootstrap),
        "VOICEQ_ENV_EOF",
        "{",
        '  echo "RAY_CLOUD_INSTANCE_ID=$DROPLET_ID"',
        '  echo "VOICEQ_DROPLET_ID=$DROPLET_ID"',
        '  echo "VOICEQ_PRIVATE_IP=$PRIVATE_IP"',
        f"}} >>{ENV_FILE}",
        f"chmod 0600 {ENV_FILE}",
        *_gpu_check(bootstrap.gpu_runtime),
    ]
    if bootstrap.setup_commands or bootstrap.python_requirements:
        if bootstrap.setup_commands:
            lines.append("# Node type setup commands.")
            lines.extend(bootstrap.setup_commands)
        lines.extend(_requirements(bootstrap))
        lines.extend(_torch_check(bootstrap))
    if bootstrap.start_ray:
        argv = ray_start_argv(bootstrap)
        path_prefix = "/opt/rocm/bin:" if bootstrap.gpu_runtime == "rocm" else ""
        assert argv[-1] == "--block"
        start = " ".join(q(arg) for arg in [bootstrap.ray_executable, *argv[:-1]])
        lines += [
            f"cat >{LAUNCHER} <<'VOICEQ_LAUNCHER_EOF'",
            "#!/bin/bash",
            "set -euo pipefail",
            f'export PATH="{path_prefix}/usr/local/bin:/usr/bin:/bin:$PATH"',
            f'exec {start} --node-ip-address="$VOICEQ_PRIVATE_IP" --block',
            "VOICEQ_LAUNCHER_EOF",
            f"chmod 0755 {LAUNCHER}",
            f"cat >/etc/systemd/system/{UNIT_NAME} <<'VOICEQ_UNIT_EOF'",
            "[Unit]",
            f"Description=Ray worker of cluster {bootstrap.cluster_name} ({bootstrap.node_type})",
            "After=network-online.target",
            "Wants=network-online.target",
            "[Service]",
            "Type=simple",
            f"EnvironmentFile={ENV_FILE}",
            f"ExecStart={LAUNCHER}",
            f"ExecStop={q(bootstrap.ray_executable)} stop",
            "Restart=on-failure",
            "RestartSec=10",
            "LimitNOFILE=65536",
            "[Install]",
            "WantedBy=multi-user.target",
            "VOICEQ_UNIT_EOF",
            "systemctl daemon-reload",
            f"systemctl enable --now {UNIT_NAME}",
        ]
    lines.append('echo "voiceq bootstrap finished $(date -u +%Y-%m-%dT%H:%M:%SZ)"')
    return "\n".join(lines) + "\n"
