"""cluster_configs/digitalocean.yaml passes Ray's own validation and drives our provider."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.providers import _get_node_provider
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig

from droplets.cloud_init import WorkerBootstrap, render_user_data
from droplets.config import NodeSettings, ssh_fingerprint
from droplets.provider import DigitalOceanNodeProvider
from droplets.requirements import worker_requirements

CONFIG = Path(__file__).resolve().parents[2] / "cluster_configs" / "digitalocean.yaml"
COMMAND_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


@pytest.fixture
def raw() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def test_ray_accepts_the_config(raw: dict[str, Any]) -> None:
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    # Autoscaler v2 hashes file_mounts' local paths (on the head: its synced copies); here
    # they would be this whole checkout and a token file that does not exist.
    assert set(prepared["file_mounts"]) == {"~/voiceq", "~/.config/voiceq/do_api_token"}
    prepared["file_mounts"] = {}
    v2 = AutoscalingConfig(prepared)
    assert v2.get_idle_timeout_s() == 60
    assert v2.disable_node_updaters()
    assert v2.get_node_resources("gpu_mi300x") == {"CPU": 20, "GPU": 1, "voiceq_node_gpu_mi300x": 1}
    assert v2.get_node_resources("gpu_rtx4000") == {"CPU": 8, "GPU": 1, "voiceq_node_gpu_rtx4000": 1}
    assert v2.get_node_labels("gpu_mi300x") == {"accelerator": "mi300x"}
    assert v2.get_max_num_worker_nodes() == raw["max_workers"]


def test_everything_an_external_provider_needs_is_spelled_out(raw: dict[str, Any]) -> None:
    for key in COMMAND_KEYS:
        assert isinstance(raw[key], list), key
    # The seed's 5 idle minutes in all: the policy holds an idle replica, then Ray's timeout.
    from voiceq.scaling import ScalingConfig

    assert ScalingConfig().idle_s + raw["idle_timeout_minutes"] * 60 <= 300
    assert raw["max_workers"] >= 1 and raw["upscaling_speed"] > 0
    assert raw["provider"]["type"] == "external"
    assert raw["provider"]["module"] == "droplets.provider.DigitalOceanNodeProvider"
    worker = raw["available_node_types"]["gpu_mi300x"]["node_config"]
    assert (worker["size"], worker["image"], worker["gpu_runtime"]) == (
        "gpu-mi300x1-192gb", "gpu-amd-base", "rocm")
    assert any("rocm" in command for command in worker["setup_commands"])
    start = " ".join(raw["head_start_ray_commands"])
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in start
    assert "python -m deployments.ship cluster_configs/production.yaml" in start


def test_gpu_workers_install_the_heads_requirements_and_never_voiceq_itself(raw: dict[str, Any]) -> None:
    """The code arrives with the Serve app (deployments.ship); a worker that installed voiceq
    from elsewhere (a git URL) could run other code than the head."""
    from ray import __version__ as ray_version

    for name, node_type in raw["available_node_types"].items():
        if name == raw["head_node_type"]:
            continue
        node = NodeSettings.from_node_config(node_type["node_config"])
        assert node.head_requirements, name
        for command in node.setup_commands:
            assert "git+" not in command and not re.search(r"pip install .*[\s'\"]voiceq\b(?!/)", command), command
        script = render_user_data(WorkerBootstrap(
            cluster_name="voiceq", node_type=name, head_address="10.124.0.2:6379",
            gpu_runtime=node.gpu_runtime, setup_commands=node.setup_commands,
            python_requirements=worker_requirements(), ray_executable=node.ray_executable,
        ))
        install = next(line for line in script.splitlines() if "-m pip install --no-cache-dir" in line)
        assert install.startswith("/opt/voiceq/venv/bin/python -m pip install")
        assert f"'ray[serve]=={ray_version}'" in install and "chatterbox-tts==" in install
        assert "torch" not in install.replace("chatterbox-tts", "")
        # The head's requirements go in after the GPU build of torch and before its check.
        assert script.index("download.pytorch.org") < script.index(install) < script.index("torch.version")


def test_ray_loads_our_provider_from_the_config(raw: dict[str, Any]) -> None:
    provider = _get_node_provider(raw["provider"], raw["cluster_name"], use_cache=False)
    assert isinstance(provider, DigitalOceanNodeProvider)
    assert provider.settings.region == raw["provider"]["region"]
    assert provider.settings.start_ray_from_cloud_init


def test_bootstrap_puts_the_ssh_key_fingerprint_on_droplets(
    raw: dict[str, Any], tmp_path: Path
) -> None:
    key = tmp_path / "voiceq_do"
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    listed = subprocess.run(["ssh-keygen", "-E", "md5", "-lf", f"{key}.pub"], check=True,
                            capture_output=True, text=True).stdout.split()[1]
    raw["auth"]["ssh_public_key"] = f"{key}.pub"
    prepared = prepare_config(raw)
    bootstrapped = DigitalOceanNodeProvider.bootstrap_config(prepared)
    assert bootstrapped["provider"]["ssh_keys"] == [listed.removeprefix("MD5:")]
    assert ssh_fingerprint(key.with_suffix(".pub").read_text()) == listed.removeprefix("MD5:")
    validate_config(bootstrapped)
    assert prepared["provider"]["ssh_keys"] == []  # the input is not modified


def test_the_gpu_workers_user_data_is_valid_and_small_enough(raw: dict[str, Any]) -> None:
    node_type = raw["available_node_types"]["gpu_mi300x"]
    node = NodeSettings.from_node_config(node_type["node_config"])
    script = render_user_data(WorkerBootstrap(
        cluster_name=raw["cluster_name"], node_type="gpu_mi300x", head_address="10.124.0.2:6379",
        resources=node_type["resources"], labels=node_type["labels"],
        gpu_runtime=node.gpu_runtime, setup_commands=node.setup_commands,
        environment=node.environment, ray_executable=node.ray_executable,
    ))
    assert len(script.encode()) < 64 * 1024  # DigitalOcean's user-data limit
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert "/opt/voiceq/venv/bin/ray start --address=10.124.0.2:6379" in script
    assert 'CHATTERBOX_MODE="remote"' in script
