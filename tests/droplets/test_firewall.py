"""The cluster's cloud firewall, through the provider and pydo against the fake DigitalOcean API
(which checks the firewall wire format as DigitalOcean does)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from ray.autoscaler.node_launch_exception import NodeLaunchException

from droplets.config import ConfigError, ProviderSettings
from droplets.firewall import (FirewallSettings, ensure_firewall, firewall_body, firewall_name, remove_firewall)
from droplets.provider import DigitalOceanNodeProvider
from droplets.tags import cluster_tag
from tests.droplets.conftest import CLUSTER, GPU_NODE_CONFIG, GPU_RESOURCES, HEAD_NODE_CONFIG, VPC_RANGE, worker_tags
from tests.fakes.digitalocean import FakeDigitalOcean

MakeProvider = Callable[..., DigitalOceanNodeProvider]
SSH_FROM = "198.51.100.7/32"
FIREWALL = {"serve_port": 8000, "ssh_sources": [SSH_FROM]}
HEAD_TAGS = {"ray-node-name": f"ray-{CLUSTER}-head", "ray-node-type": "head", "ray-node-status": "uninitialized",
             "ray-user-node-type": "head_cpu", "ray-launch-config": "abc"}


def inbound_from(firewall: dict[str, Any], address: str) -> set[tuple[str, str]]:
    """(protocol, ports) an address may reach."""
    ip = ipaddress.ip_address(address)
    out = set()
    for rule in firewall["inbound_rules"]:
        for source in rule["sources"].get("addresses", []):
            if ip in ipaddress.ip_network(source, strict=False):
                out.add((rule["protocol"], str(rule.get("ports", "0"))))
    return out


def create_head(provider: DigitalOceanNodeProvider) -> str:
    created = provider.create_node(dict(HEAD_NODE_CONFIG), dict(HEAD_TAGS), 1)
    assert created
    return next(iter(created))


def test_the_rules_admit_serve_and_ssh_from_outside_and_ray_only_from_the_vpc() -> None:
    body = firewall_body(CLUSTER, FirewallSettings(ssh_sources=(SSH_FROM,)), VPC_RANGE)
    stranger, operator, neighbour = "203.0.113.50", "198.51.100.7", "10.124.0.9"
    assert inbound_from(body, stranger) == {("tcp", "8000")}
    assert inbound_from(body, operator) == {("tcp", "8000"), ("tcp", "22")}
    assert inbound_from(body, neighbour) >= {("tcp", "0"), ("udp", "0"), ("icmp", "0")}
    assert body["tags"] == [cluster_tag(CLUSTER)] and body["droplet_ids"] == []
    assert not FirewallSettings().ssh_sources  # SSH only where configured
    with pytest.raises(ConfigError):
        ProviderSettings.from_provider_config({"region": "atl1", "firewall": {"ssh_sources": ["not-an-ip"]}})


def test_creating_the_head_first_puts_up_the_firewall(fake: FakeDigitalOcean, make_provider: MakeProvider) -> None:
    provider = make_provider(firewall=FIREWALL)
    head = create_head(provider)
    [firewall] = fake.firewalls()
    assert firewall["name"] == firewall_name(CLUSTER) and firewall["tags"] == [cluster_tag(CLUSTER)]
    assert inbound_from(firewall, "203.0.113.50") == {("tcp", "8000")}
    assert ("tcp", "0") in inbound_from(firewall, "10.124.0.9")  # the provider's VPC, looked up
    order = [r.endpoint for r in fake.mutations()]
    assert order.index("POST /v2/firewalls") < order.index("POST /v2/droplets")
    assert cluster_tag(CLUSTER) in fake.droplet(int(head))["tags"]  # type: ignore[index]
    # Workers carry the same tag, so the same firewall covers them; no second firewall.
    provider.create_node_with_resources_and_labels(GPU_NODE_CONFIG, worker_tags(), 1, GPU_RESOURCES, {})
    assert len(fake.firewalls()) == 1


def test_ensuring_twice_keeps_one_firewall_and_fixes_drifted_rules(
        fake: FakeDigitalOcean, make_provider: MakeProvider) -> None:
    provider = make_provider(firewall=FIREWALL)
    settings = provider.settings.firewall
    first = ensure_firewall(provider.api, CLUSTER, settings, region="atl1", vpc_uuid=None)
    assert ensure_firewall(provider.api, CLUSTER, settings, region="atl1", vpc_uuid=None) == first
    assert fake.requests_to("PUT /v2/firewalls/{id}") == []
    wider = FirewallSettings(serve_port=8443, ssh_sources=(SSH_FROM,))
    assert ensure_firewall(provider.api, CLUSTER, wider, region="atl1", vpc_uuid=None) == first
    [firewall] = fake.firewalls()
    assert ("tcp", "8443") in inbound_from(firewall, "203.0.113.50")
    assert ("tcp", "0") in inbound_from(firewall, "10.116.0.4")  # the region's default VPC
    assert len(fake.requests_to("PUT /v2/firewalls/{id}")) == 1
    assert remove_firewall(provider.api, CLUSTER) == 1


def test_destroying_the_head_removes_only_our_firewall(fake: FakeDigitalOcean, make_provider: MakeProvider) -> None:
    # Someone else's firewall on our tag, and one with our name on another tag: not ours.
    fake.add_foreign_firewall("office-https", tags=(cluster_tag(CLUSTER),))
    fake.add_foreign_firewall(firewall_name(CLUSTER), tags=("someone-else",))
    provider = make_provider(firewall=FIREWALL)
    head = create_head(provider)
    assert len(fake.firewalls()) == 3
    provider.terminate_node(head)
    assert {f["id"] for f in fake.firewalls()} == fake.foreign_firewall_ids
    # Idempotent: again through the provider and directly, nothing more is deleted.
    provider.terminate_node(head)
    assert remove_firewall(make_provider(firewall=FIREWALL).api, CLUSTER) == 0
    assert {f["id"] for f in fake.firewalls()} == fake.foreign_firewall_ids
    assert len(fake.requests_to("DELETE /v2/firewalls/{id}")) == 1


def test_no_head_without_its_firewall(fake: FakeDigitalOcean, make_provider: MakeProvider) -> None:
    provider = make_provider(firewall=FIREWALL)
    fake.fail_next("POST /v2/firewalls", 422)
    with pytest.raises(NodeLaunchException):
        create_head(provider)
    assert fake.requests_to("POST /v2/droplets") == []


def test_a_disabled_firewall_is_never_created(fake: FakeDigitalOcean, make_provider: MakeProvider) -> None:
    create_head(make_provider(firewall=False))
    assert fake.firewalls() == [] and fake.requests_to("POST /v2/firewalls") == []


def test_the_command_line_applies_and_removes_the_rules(
        fake: FakeDigitalOcean, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from droplets.firewall import main
    from tests.fakes.digitalocean import TOKEN

    monkeypatch.setenv("DO_API_TOKEN", TOKEN)
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump({"provider": {"region": "atl1", "api_endpoint": fake.endpoint,
                                                   "firewall": {"ssh_sources": [SSH_FROM]}}}))
    assert main(["--cluster", CLUSTER, "--ensure", str(config)]) == 0
    [firewall] = fake.firewalls()
    assert ("tcp", "22") in inbound_from(firewall, "198.51.100.7")
    assert main(["--cluster", CLUSTER, "--remove", "--endpoint", fake.endpoint]) == 0
    assert main(["--cluster", CLUSTER, "--remove", "--endpoint", fake.endpoint]) == 0
    assert fake.firewalls() == []
    assert "removed 0 firewall(s)" in capsys.readouterr().out
