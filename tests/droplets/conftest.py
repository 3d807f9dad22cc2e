"""Fixtures for the DigitalOcean provider tests: a fake DO API and providers pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from droplets.api import DigitalOceanApi
from droplets.provider import DigitalOceanNodeProvider
from droplets.retries import RetryPolicy
from droplets.tags import cluster_tag
from tests.fakes.digitalocean import TOKEN, FakeDigitalOcean

CLUSTER = "voiceq-test"
TOKEN_ENV = "VOICEQ_TEST_DO_TOKEN"
VPC_UUID = "0d3176ad-41e0-4021-b831-0c5c45c60959"
VPC_RANGE = "10.124.0.0/20"

GPU_NODE_CONFIG: dict[str, Any] = {
    "size": "gpu-mi300x1-192gb",
    "image": "gpu-amd-base",
    "gpu_runtime": "rocm",
    "setup_commands": ["python3 -m venv /opt/voiceq/venv"],
    "ray_executable": "/opt/voiceq/venv/bin/ray",
}
HEAD_NODE_CONFIG: dict[str, Any] = {"size": "s-4vcpu-8gb", "image": "ubuntu-24-04-x64"}


def worker_tags(node_type: str = "gpu_worker", request: str = "req-1") -> dict[str, str]:
    """The tags Ray's autoscaler (v2's NodeProviderAdapter) passes to create_node."""
    return {
        "ray-node-name": f"ray-{CLUSTER}-worker",
        "ray-node-type": "worker",
        "ray-node-status": "uninitialized",
        "ray-launch-config": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
        "ray-launch-request": request,
        "ray-user-node-type": node_type,
    }


GPU_RESOURCES = {"CPU": 20, "GPU": 1, "voiceq_gpu": 1}


def provider_config(fake: FakeDigitalOcean, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "type": "external",
        "module": "droplets.provider.DigitalOceanNodeProvider",
        "region": "atl1",
        "api_endpoint": fake.endpoint,
        "api_token_env": TOKEN_ENV,
        "api_token_file": None,
        "vpc_uuid": VPC_UUID,
        "ssh_keys": ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"],
        "head_address": "10.116.0.2:6379",
        "disable_node_updaters": True,
        "cache_ttl_s": 0.0,
        "active_timeout_s": 60.0,
        "request_timeout_s": 5.0,
        "create_timeout_s": 5.0,
        "retry": {"max_attempts": 4, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
                  "max_wait_s": 5.0, "reserve": 0},
    }
    config.update(overrides)
    return config


@pytest.fixture
def fake() -> Iterator[FakeDigitalOcean]:
    with FakeDigitalOcean(active_after_s=0.2) as server:
        server.add_vpc(VPC_UUID, "atl1", VPC_RANGE)
        yield server


@pytest.fixture
def make_provider(
    fake: FakeDigitalOcean, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., DigitalOceanNodeProvider]]:
    """Build providers for CLUSTER against the fake; after the test, check the fake's books.

    After every test: no droplet of a foreign cluster (or nobody's) was named by any mutating
    request, all foreign droplets are still alive, every live droplet of the cluster is
    visible to a fresh provider (nothing leaked out of its sight), and destroying them all
    through that provider leaves none.
    """
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    built: list[DigitalOceanNodeProvider] = []

    def build(**overrides: Any) -> DigitalOceanNodeProvider:
        provider = DigitalOceanNodeProvider(provider_config(fake, **overrides), CLUSTER)
        built.append(provider)
        return provider

    yield build

    foreign = fake.foreign_ids
    assert not fake.touched_ids() & foreign, "a foreign droplet was touched"
    assert not fake.touched_firewall_ids() & fake.foreign_firewall_ids, "a foreign firewall was touched"
    live_ids = {d["id"] for d in fake.live_droplets()}
    assert foreign <= live_ids, "a foreign droplet is gone"
    tag = cluster_tag(CLUSTER)
    checker = DigitalOceanNodeProvider(provider_config(fake), CLUSTER)
    ours = {str(d["id"]) for d in fake.live_droplets(tag)}
    assert set(checker.non_terminated_nodes({})) == ours, "live droplets the provider cannot see"
    checker.terminate_nodes(sorted(ours))
    assert fake.live_droplets(tag) == [], "droplets leaked"
    assert not fake.touched_ids() & foreign


@pytest.fixture
def api(fake: FakeDigitalOcean) -> Iterator[DigitalOceanApi]:
    client = DigitalOceanApi(
        TOKEN,
        endpoint=fake.endpoint,
        retry=RetryPolicy(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05,
                          max_wait_s=5.0, reserve=0),
        timeout_s=5.0,
        create_timeout_s=5.0,
    )
    yield client
    client.close()
