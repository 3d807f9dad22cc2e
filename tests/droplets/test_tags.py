"""Ray node tags survive the trip through DigitalOcean's restricted tag alphabet."""

from __future__ import annotations

import re

import pytest

from droplets.tags import (
    TagEncodingError,
    cluster_tag,
    decode_node_tags,
    decode_text,
    encode_node_tags,
    encode_text,
    launch_tag,
    launch_tokens,
    node_tag,
    tag_changes,
)

DO_TAG = re.compile(r"^[A-Za-z0-9:_-]{1,255}$")

AWKWARD_VALUES = [
    "worker",
    "ray.head.default",
    "gpu_worker",
    "GPU-Worker",
    "a:b:c",
    "spaces and/slashes",
    "ümlaut-名前",
    "_5f",
    "",
    "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
]


@pytest.mark.parametrize("value", AWKWARD_VALUES)
def test_every_value_round_trips_and_is_a_valid_do_tag(value: str) -> None:
    tag = node_tag("ray-user-node-type", value)
    assert DO_TAG.match(tag)
    assert decode_node_tags([tag]) == {"ray-user-node-type": value}
    assert decode_text(encode_text(value)) == value


def test_encoding_never_depends_on_letter_case() -> None:
    encoded = encode_text("Ray.Head")
    assert encoded == encoded.lower()
    assert decode_text(encoded) == "Ray.Head"


def test_a_full_set_of_ray_tags_round_trips() -> None:
    tags = {
        "ray-node-name": "ray-voiceq-worker",
        "ray-node-type": "worker",
        "ray-node-status": "up-to-date",
        "ray-user-node-type": "ray.worker.gpu",
        "ray-launch-request": "3f2a-0b_c",
        "ray-cluster-name": "voiceq",
    }
    droplet_tags = encode_node_tags(tags) + ["web", "env:prod", cluster_tag("voiceq")]
    assert decode_node_tags(droplet_tags) == tags


def test_tags_not_written_by_the_provider_are_ignored() -> None:
    assert decode_node_tags(["env:prod", "ray:bad", "ray:a:b:c", "ray:UPPER:x", "ray:_zz:x"]) == {}


def test_too_long_a_value_is_refused_not_truncated() -> None:
    with pytest.raises(TagEncodingError):
        node_tag("ray-user-node-type", "x" * 300)
    with pytest.raises(TagEncodingError):
        node_tag("k", "." * 100)  # 100 characters become 300 once escaped


def test_cluster_and_launch_tags() -> None:
    assert cluster_tag("voiceq") == "ray-cluster:voiceq"
    assert cluster_tag("voiceq") != cluster_tag("voiceq-staging")
    assert DO_TAG.match(cluster_tag("Prod Cluster.1"))
    assert launch_tokens(["web", launch_tag("abc123"), launch_tag("Z_9")]) == {"abc123", "Z_9"}
    with pytest.raises(TagEncodingError):
        cluster_tag("")


def test_tag_changes_replace_only_changed_keys() -> None:
    current = {"ray-node-status": "uninitialized", "ray-node-type": "worker"}
    remove, add = tag_changes(
        current, {"ray-node-status": "up-to-date", "ray-node-type": "worker", "new": "v"}
    )
    assert remove == [node_tag("ray-node-status", "uninitialized")]
    assert add == [node_tag("new", "v"), node_tag("ray-node-status", "up-to-date")]
    assert tag_changes(current, dict(current)) == ([], [])
