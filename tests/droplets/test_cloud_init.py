"""The first-boot script that makes a droplet a Ray worker of the cluster."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess

import pytest
from ray.scripts.scripts import start as ray_start_command

from droplets.cloud_init import (
    ENV_FILE,
    WorkerBootstrap,
    ray_start_argv,
    render_user_data,
    worker_environment,
)

MI300X = WorkerBootstrap(
    cluster_name="voiceq",
    node_type="gpu_worker",
    head_address="10.116.0.2:6379",
    resources={"CPU": 20, "GPU": 1, "memory": 200 * 2**30, "voiceq_gpu": 1},
    labels={"accelerator": "mi300x"},
    gpu_runtime="rocm",
    setup_commands=("python3 -m venv /opt/voiceq/venv", "/opt/voiceq/venv/bin/pip install ray"),
    environment={"VOICEQ_JOB_STORE": "convex"},
    ray_executable="/opt/voiceq/venv/bin/ray",
)


def _heredoc(script: str, marker: str) -> str:
    match = re.search(rf"<<'{marker}'\n(.*?)\n{marker}\n", script, re.S)
    assert match, f"no {marker} heredoc"
    return match.group(1)


def test_the_script_is_valid_bash() -> None:
    script = render_user_data(MI300X)
    assert script.startswith("#!/bin/bash\n")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-s", "bash", "-"], input=script, text=True, check=True)


def test_ray_start_flags_are_accepted_by_the_installed_ray() -> None:
    argv = ray_start_argv(MI300X, node_ip="10.116.0.7")
    assert argv[0] == "start"
    context = ray_start_command.make_context("start", argv[1:])
    params = context.params
    assert params["address"] == "10.116.0.2:6379"
    assert params["node_ip_address"] == "10.116.0.7"
    assert params["num_cpus"] == 20
    assert params["num_gpus"] == 1
    assert params["memory"] == 200 * 2**30
    assert json.loads(params["resources"]) == {"voiceq_gpu": 1}
    assert params["labels"] == "accelerator=mi300x"
    assert params["block"] is True


def test_the_launcher_runs_ray_start_with_the_node_types_resources() -> None:
    script = render_user_data(MI300X)
    launcher = _heredoc(script, "VOICEQ_LAUNCHER_EOF")
    exec_line = [line for line in launcher.splitlines() if line.startswith("exec ")][0]
    words = shlex.split(exec_line.replace('"$VOICEQ_PRIVATE_IP"', "10.116.0.9"))
    assert words[1] == "/opt/voiceq/venv/bin/ray"
    assert words[2:] == ray_start_argv(MI300X)[:-1] + ["--node-ip-address=10.116.0.9", "--block"]
    subprocess.run(["bash", "-n"], input=launcher, text=True, check=True)


def test_instance_id_and_node_type_reach_the_worker_environment() -> None:
    script = render_user_data(MI300X)
    # The droplet id is only known at boot: it comes from the metadata service.
    assert 'DROPLET_ID="$(fetch id)"' in script
    assert 'echo "RAY_CLOUD_INSTANCE_ID=$DROPLET_ID"' in script
    assert 'echo "VOICEQ_DROPLET_ID=$DROPLET_ID"' in script
    static_env = _heredoc(script, "VOICEQ_ENV_EOF")
    assert 'RAY_NODE_TYPE_NAME="gpu_worker"' in static_env
    assert 'MIOPEN_LOG_LEVEL="1"' in static_env
    assert 'VOICEQ_JOB_STORE="convex"' in static_env
    unit = _heredoc(script, "VOICEQ_UNIT_EOF")
    assert f"EnvironmentFile={ENV_FILE}" in unit
    assert "Restart=on-failure" in unit
    assert "systemctl enable --now voiceq-ray-worker.service" in script

    env = worker_environment(MI300X, "400000123")
    assert env["RAY_CLOUD_INSTANCE_ID"] == env["VOICEQ_DROPLET_ID"] == "400000123"
    assert env["RAY_NODE_TYPE_NAME"] == "gpu_worker"
    assert env["MIOPEN_LOG_LEVEL"] == "1"


def test_rocm_and_cuda_setup_paths() -> None:
    rocm = render_user_data(MI300X)
    assert "rocm-smi" in rocm and "/opt/rocm" in rocm
    assert rocm.index("rocm-smi") < rocm.index("python3 -m venv")  # check, then set up
    cuda = render_user_data(
        WorkerBootstrap("voiceq", "h100", "10.0.0.2:6379", {"GPU": 1}, gpu_runtime="cuda")
    )
    assert "nvidia-smi" in cuda and "rocm" not in cuda.lower()
    assert "MIOPEN_LOG_LEVEL" not in cuda


def test_without_cloud_init_start_only_the_setup_runs() -> None:
    script = render_user_data(
        WorkerBootstrap("voiceq", "gpu_worker", "", {"GPU": 1}, gpu_runtime="rocm",
                        start_ray=False, setup_commands=("echo setup",))
    )
    assert "echo setup" in script
    assert "ray start" not in script and "systemctl" not in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_bad_bootstraps_are_refused() -> None:
    with pytest.raises(ValueError):
        WorkerBootstrap("voiceq", "w", "", {})
    with pytest.raises(ValueError):
        WorkerBootstrap("voiceq", "w", "10.0.0.2:6379", gpu_runtime="tpu")
    with pytest.raises(ValueError):
        WorkerBootstrap("voiceq", "w", "10.0.0.2:6379", labels={"a": "b,c"})
    with pytest.raises(ValueError):
        WorkerBootstrap("voiceq", "w", "10.0.0.2:6379", environment={"BAD-NAME": "x"})


def test_requirements_are_pinned_to_the_heads_versions_and_leave_the_gpu_build_alone() -> None:
    from droplets.requirements import pinned_requirements

    installed = {"ray": "2.55.1", "boto3": "1.44.8", "torch": "2.6.0+cpu"}.get
    assert pinned_requirements(
        ["ray[serve]==2.55.1", "boto3>=1.34", "torch==2.6.0", "pytest>=8; extra == \"test\"", "newlib>=1"],
        installed,
    ) == ("ray[serve]==2.55.1", "boto3==1.44.8", "newlib>=1")
