"""`ray up` waits for the head droplet's address the way Ray's own updater does.

DigitalOcean's create reply carries no addresses (the droplet is "new"); they appear once it
is active. Ray's `SSHCommandRunner._wait_for_ip` polls only `external_ip` (or `internal_ip`)
and `is_terminated` until a deadline. These tests run that very method of the installed Ray
against our provider and the fake API.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest
from ray.autoscaler._private import command_runner
from ray.autoscaler._private.command_runner import SSHCommandRunner

from droplets.provider import DigitalOceanNodeProvider
from tests.droplets.conftest import CLUSTER, HEAD_NODE_CONFIG
from tests.fakes.digitalocean import FakeDigitalOcean

MakeProvider = Callable[..., DigitalOceanNodeProvider]

HEAD_TAGS = {
    "ray-node-name": f"ray-{CLUSTER}-head",
    "ray-node-type": "head",
    "ray-node-status": "uninitialized",
    "ray-launch-config": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
    "ray-user-node-type": "head_cpu",
}


def create_head(provider: DigitalOceanNodeProvider) -> str:
    created = provider.create_node(dict(HEAD_NODE_CONFIG), dict(HEAD_TAGS), 1)
    assert created is not None
    [node] = created
    return node


def wait_for_ip(provider: DigitalOceanNodeProvider, node: str, *, internal: bool, timeout_s: float) -> str | None:
    runner = SSHCommandRunner(
        log_prefix="test: ", node_id=node, provider=provider, auth_config={"ssh_user": "root"},
        cluster_name=CLUSTER, process_runner=subprocess, use_internal_ip=internal,
    )
    return runner._wait_for_ip(time.time() + timeout_s)


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray polls every 5 s; the sequence of calls is the same at 0.1 s.
    monkeypatch.setattr(command_runner, "AUTOSCALER_NODE_SSH_INTERVAL_S", 0.1)


@pytest.mark.parametrize("internal", [False, True], ids=["external", "internal"])
def test_a_fresh_provider_gets_the_new_droplets_address(
    fake: FakeDigitalOcean, make_provider: MakeProvider, internal: bool
) -> None:
    fake.active_after_s = 1.0
    node = create_head(make_provider())
    droplet = fake.droplet(int(node))
    assert droplet is not None and droplet["status"] == "new" and droplet["networks"]["v4"] == []

    fresh = make_provider()
    ip = wait_for_ip(fresh, node, internal=internal, timeout_s=10.0)

    active = fake.droplet(int(node))
    assert active is not None and active["status"] == "active"
    expected = {n["type"]: n["ip_address"] for n in active["networks"]["v4"]}
    assert ip == expected["private" if internal else "public"]


def test_the_provider_that_created_the_droplet_gets_its_address(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    # `ray up` waits with the provider that created the head: its cached copy is the
    # create reply's, without addresses.
    fake.active_after_s = 1.0
    provider = make_provider()
    node = create_head(provider)
    ip = wait_for_ip(provider, node, internal=False, timeout_s=10.0)
    assert ip is not None and ip.startswith("203.0.113.")


def test_a_destroyed_droplet_ends_the_wait(fake: FakeDigitalOcean, make_provider: MakeProvider) -> None:
    fake.never_activate(f"ray-{CLUSTER}")
    fake.never_activate("")
    provider = make_provider()
    node = create_head(provider)
    make_provider().terminate_node(node)
    started = time.monotonic()
    assert wait_for_ip(make_provider(), node, internal=False, timeout_s=10.0) is None
    assert time.monotonic() - started < 5.0, "waited for the deadline on a droplet that is gone"
