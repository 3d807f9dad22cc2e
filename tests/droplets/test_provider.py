"""DigitalOceanNodeProvider against the fake DigitalOcean API.

Every test ends with the `make_provider` fixture's audit: no foreign droplet touched, every
live droplet of the cluster visible to a fresh provider, and none left after destroying them.
Tests where a launch fails also check that nothing of it is alive before that audit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ray.autoscaler.node_launch_exception import NodeLaunchException

from droplets.config import ConfigError
from droplets.errors import DigitalOceanError, ForeignDropletError
from droplets.provider import DigitalOceanNodeProvider, droplet_names
from droplets.tags import cluster_tag, decode_node_tags, launch_tokens, node_tag
from tests.droplets.conftest import (
    CLUSTER,
    GPU_NODE_CONFIG,
    GPU_RESOURCES,
    HEAD_NODE_CONFIG,
    TOKEN_ENV,
    provider_config,
    worker_tags,
)
from tests.fakes.digitalocean import TOKEN, FakeDigitalOcean

CREATE = "POST /v2/droplets"
LIST = "GET /v2/droplets"
MakeProvider = Callable[..., DigitalOceanNodeProvider]
CPU_NODE_CONFIG: dict[str, Any] = {"size": "s-4vcpu-8gb", "image": "ubuntu-24-04-x64"}


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def launch(
    provider: DigitalOceanNodeProvider,
    count: int = 1,
    *,
    node_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> list[str]:
    created = provider.create_node_with_resources_and_labels(
        node_config or GPU_NODE_CONFIG, tags or worker_tags(), count, GPU_RESOURCES,
        {"accelerator": "mi300x"},
    )
    assert created is not None
    return sorted(created)


def live_ids(fake: FakeDigitalOcean) -> set[str]:
    return {str(d["id"]) for d in fake.live_droplets(cluster_tag(CLUSTER))}


# ---- creating and describing nodes ----------------------------------------------------------


def test_a_worker_droplet_is_created_as_the_node_type_says(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    [node] = launch(provider)

    [post] = fake.requests_to(CREATE)
    body = post.body
    assert body["size"] == "gpu-mi300x1-192gb" and body["image"] == "gpu-amd-base"
    assert body["region"] == "atl1"
    assert body["vpc_uuid"] == "0d3176ad-41e0-4021-b831-0c5c45c60959"
    assert body["ssh_keys"] == ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"]
    assert cluster_tag(CLUSTER) in body["tags"]
    assert len(launch_tokens(body["tags"])) == 1
    assert decode_node_tags(body["tags"]) == {**worker_tags(), "ray-cluster-name": CLUSTER}
    user_data = body["user_data"]
    assert 'RAY_NODE_TYPE_NAME="gpu_worker"' in user_data
    assert "--address=10.116.0.2:6379" in user_data
    assert "--num-gpus=1" in user_data and '{"voiceq_gpu":1}' in user_data
    assert "--labels=accelerator=mi300x" in user_data
    assert "MIOPEN_LOG_LEVEL" in user_data and "rocm-smi" in user_data

    assert provider.non_terminated_nodes({}) == [node]
    assert provider.node_tags(node) == {**worker_tags(), "ray-cluster-name": CLUSTER}
    assert live_ids(fake) == {node}


def test_status_and_addresses_follow_the_droplet(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    [node] = launch(provider)
    assert not provider.is_running(node) and not provider.is_terminated(node)
    wait_until(lambda: fake.droplet(int(node))["status"] == "active")
    provider.non_terminated_nodes({})
    assert provider.is_running(node)
    assert provider.internal_ip(node).startswith("10.116.")
    assert provider.external_ip(node).startswith("203.0.113.")


def test_more_than_ten_nodes_go_in_batches_of_ten(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    nodes = launch(provider, 13)
    assert [len(r.body["names"]) for r in fake.requests_to(CREATE)] == [10, 3]
    assert set(nodes) == live_ids(fake) == set(provider.non_terminated_nodes({}))
    names = [fake.droplet(int(n))["name"] for n in nodes]
    assert len(set(names)) == 13


def test_gpu_and_cpu_droplets_are_both_listed(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    gpu = launch(provider)
    cpu = launch(provider, node_config=CPU_NODE_CONFIG, tags=worker_tags("cpu_worker"))
    assert sorted(provider.non_terminated_nodes({})) == sorted(gpu + cpu)
    assert provider.non_terminated_nodes({"ray-user-node-type": "gpu_worker"}) == gpu
    queries = [r.query for r in fake.requests_to(LIST)]
    assert any(q.get("type") == "gpus" and "tag_name" not in q for q in queries)


def test_pagination(make_provider: MakeProvider) -> None:
    # make_provider sets the token; this test needs its own fake with tiny pages.
    with FakeDigitalOcean(max_per_page=2) as small_pages:
        provider = DigitalOceanNodeProvider(provider_config(small_pages), CLUSTER)
        for i in range(4):
            small_pages.add_foreign_droplet(f"foreign-gpu-{i}", size="gpu-h100x1-80gb")
        gpu = launch(provider, 5)
        cpu = launch(provider, 3, node_config=CPU_NODE_CONFIG, tags=worker_tags("cpu_worker"))
        listed = provider.non_terminated_nodes({})
        gpu_pages = [r.query["page"] for r in small_pages.requests_to(LIST)
                     if r.query.get("type") == "gpus"]
        assert sorted(listed) == sorted(gpu + cpu)
        assert gpu_pages == ["1", "2", "3", "4", "5"]  # 9 GPU droplets, 2 a page
        provider.terminate_nodes(listed)
        assert small_pages.live_droplets(cluster_tag(CLUSTER)) == []
        assert not small_pages.touched_ids() & small_pages.foreign_ids


def test_a_head_droplet_is_what_workers_join(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider(head_address=None)
    with pytest.raises(ConfigError, match="no head droplet"):
        launch(provider)
    assert fake.requests_to(CREATE) == []

    head_tags = {"ray-node-type": "head", "ray-user-node-type": "head", "ray-node-name": "h"}
    [head] = sorted(provider.create_node(HEAD_NODE_CONFIG, head_tags, 1) or {})
    assert "user_data" not in fake.requests_to(CREATE)[0].body  # ray up sets the head up
    wait_until(lambda: fake.droplet(int(head))["status"] == "active")
    provider.non_terminated_nodes({})
    [worker] = launch(provider)
    head_ip = fake.droplet(int(head))["networks"]["v4"][0]["ip_address"]
    assert f"--address={head_ip}:6379" in fake.user_data(int(worker))
    assert provider.non_terminated_nodes({"ray-node-type": "head"}) == [head]


# ---- tags --------------------------------------------------------------------------------


def test_tags_round_trip_through_digitalocean(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    [node] = launch(provider)
    provider.set_node_tags(node, {"ray-node-status": "up-to-date", "ray-user-node-type": "gpu.big"})
    expected = {**worker_tags(), "ray-cluster-name": CLUSTER, "ray-node-status": "up-to-date",
                "ray-user-node-type": "gpu.big"}
    assert provider.node_tags(node) == expected
    droplet_tags = fake.droplet(int(node))["tags"]
    assert node_tag("ray-node-status", "uninitialized") not in droplet_tags
    assert node_tag("ray-node-status", "up-to-date") in droplet_tags
    # A provider with no memory of this sees the same tags, straight from DigitalOcean.
    fresh = make_provider()
    assert fresh.node_tags(node) == expected
    assert fresh.non_terminated_nodes({"ray-node-status": "up-to-date"}) == [node]
    # Setting what is already set sends nothing.
    before = len(fake.mutations())
    provider.set_node_tags(node, {"ray-node-status": "up-to-date"})
    assert len(fake.mutations()) == before


# ---- destroying --------------------------------------------------------------------------


def test_destroy_is_idempotent(fake: FakeDigitalOcean, make_provider: MakeProvider) -> None:
    provider = make_provider()
    first, second = launch(provider, 2)
    provider.terminate_node(first)
    provider.terminate_node(first)
    assert provider.is_terminated(first)
    assert first not in provider.non_terminated_nodes({})
    # Destroyed behind the provider's back: terminating it is still fine.
    other = make_provider()
    other.terminate_node(second)
    provider.terminate_node(second)
    provider.terminate_nodes([first, second])
    assert live_ids(fake) == set()
    deletes = [r for r in fake.requests_to("DELETE /v2/droplets/{id}") if r.status == 204]
    assert sorted(str(r.droplet_ids[0]) for r in deletes) == sorted([first, second])


def test_terminate_nodes_tries_every_node_even_if_one_fails(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    nodes = launch(provider, 3)
    fake.fail_next("DELETE /v2/droplets/{id}", 500, count=4)  # every attempt for one node
    with pytest.raises(DigitalOceanError):
        provider.terminate_nodes(nodes)
    assert len(live_ids(fake)) == 1


def test_foreign_droplets_are_never_touched(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    lookalike = fake.add_foreign_droplet(
        "voiceq-test-other-worker", size="gpu-mi300x1-192gb",
        tags=(cluster_tag(CLUSTER + "-other"), node_tag("ray-node-type", "worker")),
    )
    untagged = fake.add_foreign_droplet("database")
    provider = make_provider()
    [mine] = launch(provider)
    assert provider.non_terminated_nodes({}) == [mine]
    for foreign in (lookalike, untagged):
        with pytest.raises(ForeignDropletError):
            provider.terminate_node(str(foreign))
        with pytest.raises(ForeignDropletError):
            provider.set_node_tags(str(foreign), {"ray-node-status": "up-to-date"})
        with pytest.raises(ForeignDropletError):
            provider.node_tags(str(foreign))
    assert fake.requests_to("DELETE /v2/droplets/{id}") == []


# ---- faults ------------------------------------------------------------------------------


def test_429_with_retry_after_on_create(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    fake.fail_next(CREATE, 429, retry_after="1")
    nodes = launch(provider, 2)
    posts = fake.requests_to(CREATE)
    assert [r.status for r in posts] == [429, 202]
    assert posts[1].at - posts[0].at >= 0.95
    assert set(nodes) == live_ids(fake)


def test_429_without_retry_after_on_listing(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    nodes = launch(provider)
    fake.fail_next(LIST, 429, count=2)
    assert provider.non_terminated_nodes({}) == nodes


def test_5xx_on_listing_and_destroy_are_retried(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    nodes = launch(provider)
    fake.fail_next(LIST, 503, count=2)
    assert provider.non_terminated_nodes({}) == nodes
    fake.fail_next("DELETE /v2/droplets/{id}", 502)
    provider.terminate_node(nodes[0])
    assert live_ids(fake) == set()


def test_a_rejected_create_leaves_nothing(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    with pytest.raises(NodeLaunchException) as caught:
        launch(provider, node_config={**GPU_NODE_CONFIG, "size": "gpu-imaginary"})
    cause = caught.value.__cause__
    assert isinstance(cause, DigitalOceanError) and cause.status_code == 422
    assert "invalid size" in caught.value.description
    assert live_ids(fake) == set()
    assert provider.non_terminated_nodes({}) == []


def test_half_created_batch_is_rolled_back(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    fake.fail_next(CREATE, 422, skip=1, body={
        "id": "unprocessable_entity",
        "message": "creating this/these droplet(s) will exceed your droplet limit",
    })
    with pytest.raises(NodeLaunchException, match="droplet limit"):
        launch(provider, 12)
    first_batch = set(fake.requests_to(CREATE)[0].droplet_ids)
    assert len(first_batch) == 10
    assert first_batch <= fake.destroyed_ids()
    assert live_ids(fake) == set()
    assert provider.non_terminated_nodes({}) == []


def test_a_rollback_that_cannot_destroy_finishes_on_the_next_refresh(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    fake.fail_next(CREATE, 500, skip=1)  # the 2nd batch fails, outcome unknown, not found
    fake.fail_next("DELETE /v2/droplets/{id}", 500, count=3 * 4)  # 3 rollback destroys fail
    with pytest.raises(NodeLaunchException):
        launch(provider, 11)
    assert len(live_ids(fake)) == 3
    # The leftovers carry the failed launch's tag: the next listing destroys them.
    assert provider.non_terminated_nodes({}) == []
    assert live_ids(fake) == set()


def test_create_5xx_that_did_create_is_adopted(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    fake.fail_next(CREATE, 500, commit=True)
    nodes = launch(provider, 3)
    assert len(fake.requests_to(CREATE)) == 1  # looked, did not send again
    assert set(nodes) == live_ids(fake) == set(provider.non_terminated_nodes({}))


def test_create_that_succeeds_after_a_client_timeout_is_adopted(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider(create_timeout_s=0.5)
    fake.delay_reply(CREATE, 1.5)
    nodes = launch(provider, 2)
    assert len(fake.requests_to(CREATE)) == 1
    assert len(nodes) == 2
    assert set(nodes) == live_ids(fake) == set(provider.non_terminated_nodes({}))
    assert provider.node_tags(nodes[0])["ray-user-node-type"] == "gpu_worker"


def test_create_5xx_whose_droplet_appears_later_is_destroyed(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    fake.fail_next(CREATE, 500)
    with pytest.raises(NodeLaunchException):
        launch(provider)
    assert live_ids(fake) == set()
    # DigitalOcean acts on the lost request after all.
    body = fake.requests_to(CREATE)[0].body
    late = fake.add_droplet(body["names"][0], size=body["size"], tags=tuple(body["tags"]))
    assert provider.non_terminated_nodes({}) == []
    assert late in fake.destroyed_ids()


def test_a_droplet_that_never_becomes_active_is_destroyed(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider(active_timeout_s=2.0)
    stuck_name = droplet_names(CLUSTER, "gpu_worker", "x" * 16, 1)[0].rsplit("-", 2)[0]
    fake.never_activate(stuck_name)
    [stuck] = launch(provider)
    [healthy] = launch(provider, node_config=CPU_NODE_CONFIG, tags=worker_tags("cpu_worker"))
    assert sorted(provider.non_terminated_nodes({})) == sorted([stuck, healthy])
    time.sleep(2.2)
    assert provider.non_terminated_nodes({}) == [healthy]
    assert int(stuck) in fake.destroyed_ids()
    assert provider.is_running(healthy)


# ---- threads -----------------------------------------------------------------------------


def test_concurrent_calls_from_threads(fake: FakeDigitalOcean, make_provider: MakeProvider) -> None:
    provider = make_provider(cache_ttl_s=0.2)
    errors: list[BaseException] = []
    created: list[str] = []
    created_lock = threading.Lock()
    start = threading.Barrier(8)

    def launcher(index: int) -> None:
        try:
            start.wait()
            nodes = launch(provider, 1 + index % 2, tags=worker_tags(request=f"req-{index}"))
            with created_lock:
                created.extend(nodes)
            for node in nodes:
                provider.set_node_tags(node, {"ray-node-status": f"step-{index}"})
                assert provider.node_tags(node)["ray-node-status"] == f"step-{index}"
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    def reader() -> None:
        try:
            start.wait()
            for _ in range(15):
                for node in provider.non_terminated_nodes({"ray-node-type": "worker"}):
                    provider.node_tags(node)
                    provider.is_running(node)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=launcher, args=(i,)) for i in range(5)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(created) == len(set(created)) == 1 + 2 + 1 + 2 + 1
    time.sleep(0.25)
    assert set(provider.non_terminated_nodes({})) == set(created) == live_ids(fake)
    for node in created:
        assert provider.node_tags(node)["ray-node-status"].startswith("step-")

    killers = [threading.Thread(target=provider.terminate_node, args=(n,)) for n in created]
    for thread in killers:
        thread.start()
    for thread in killers:
        thread.join(timeout=60)
    assert live_ids(fake) == set()


def test_concurrent_readers_share_one_listing(
    fake: FakeDigitalOcean, make_provider: MakeProvider
) -> None:
    provider = make_provider(cache_ttl_s=30.0)
    barrier = threading.Barrier(10)
    results: list[list[str]] = []

    def read() -> None:
        barrier.wait()
        results.append(provider.non_terminated_nodes({}))

    threads = [threading.Thread(target=read) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [[]] * 10
    assert len(fake.requests_to(LIST)) == 2  # one regular and one GPU listing, not 20


def test_the_token_comes_from_the_environment_or_a_file(
    fake: FakeDigitalOcean, make_provider: MakeProvider, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv(TOKEN_ENV)
    provider = make_provider()
    with pytest.raises(ConfigError, match=TOKEN_ENV):
        provider.non_terminated_nodes({})
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    from_file = make_provider(api_token_file=str(token_file))
    assert from_file.non_terminated_nodes({}) == []
    assert "readable by other users" not in caplog.text
    token_file.chmod(0o644)
    assert make_provider(api_token_file=str(token_file)).non_terminated_nodes({}) == []
    assert "readable by other users" in caplog.text and TOKEN not in caplog.text
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
