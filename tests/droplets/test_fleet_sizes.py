"""Every GPU size of the cluster config is created through the (fake) DigitalOcean API as
its node type says: size, image, the GPU runtime's boot check and the matching torch build."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from droplets.provider import DigitalOceanNodeProvider
from tests.droplets.conftest import worker_tags
from tests.fakes.digitalocean import FakeDigitalOcean
from voiceq.sizing import gpu_types_from_cluster_config, resource_name

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[2] / "cluster_configs" / "digitalocean.yaml").read_text())
GPU_TYPES = {name: t for name, t in CONFIG["available_node_types"].items() if t["resources"].get("GPU")}
MakeProvider = Callable[..., DigitalOceanNodeProvider]


def test_the_fleet_has_small_and_large_gpus_of_both_vendors() -> None:
    sizes = {t["node_config"]["size"] for t in GPU_TYPES.values()}
    assert sizes == {"gpu-4000adax1-20gb", "gpu-l40sx1-48gb", "gpu-mi300x1-192gb", "gpu-h100x1-80gb"}
    runtimes = {t["node_config"]["gpu_runtime"] for t in GPU_TYPES.values()}
    assert runtimes == {"rocm", "cuda"}
    # Prices and throughputs for the size choice, one per node type.
    assert {g.name for g in gpu_types_from_cluster_config(CONFIG)} == set(GPU_TYPES)


@pytest.mark.parametrize("node_type", sorted(GPU_TYPES))
def test_each_size_is_created_as_configured(fake: FakeDigitalOcean, make_provider: MakeProvider,
                                            node_type: str) -> None:
    spec: dict[str, Any] = GPU_TYPES[node_type]
    node_config = spec["node_config"]
    provider = make_provider()
    created = provider.create_node_with_resources_and_labels(
        dict(node_config), worker_tags(node_type), 1, dict(spec["resources"]), dict(spec.get("labels") or {}))
    assert created is not None and len(created) == 1
    [post] = fake.requests_to("POST /v2/droplets")
    body = post.body
    assert body["size"] == node_config["size"] and body["image"] == node_config["image"]
    user_data = body["user_data"]
    assert f'{{"{resource_name(node_type)}":1}}' in user_data, "the size's own Ray resource"
    assert f'RAY_NODE_TYPE_NAME="{node_type}"' in user_data
    if node_config["gpu_runtime"] == "rocm":
        assert "rocm-smi" in user_data and "nvidia-smi" not in user_data
        assert "rocm6" in user_data and "assert torch.version.hip" in user_data
        assert "assert not torch.version.cuda" in user_data
    else:
        assert "nvidia-smi" in user_data and "rocm-smi" not in user_data
        assert "/whl/cu12" in user_data and "assert torch.version.cuda" in user_data
        assert "assert not torch.version.hip" in user_data
    droplet = fake.droplet(int(next(iter(created))))
    assert droplet is not None and droplet["size_slug"] == node_config["size"]
