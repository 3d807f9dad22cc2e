"""Ray node tags <-> DigitalOcean droplet tags.

DigitalOcean tags are flat strings of letters, digits, ``:``, ``-`` and ``_``, at most 255
characters. Ray's node tags are a string -> string map whose values (node type names such as
``ray.head.default``, launch hashes, request ids) may hold any character. Each Ray tag becomes
one droplet tag ``ray:<key>:<value>`` with key and value escaped:

- ``a-z``, ``0-9`` and ``-`` stand for themselves;
- every other character is written as ``_`` plus two lowercase hex digits per UTF-8 byte
  (``.`` -> ``_2e``, ``_`` -> ``_5f``, ``A`` -> ``_41``).

Upper-case letters are escaped too, so the round trip never depends on how DigitalOcean treats
letter case. Escaped text contains no ``:``, so the two separators are unambiguous.

The cluster tag ``ray-cluster:<cluster name>`` fences everything: the provider lists, changes
and destroys only droplets that carry it. Each `create_node` call also stamps a launch tag
``ray-launch:<token>`` so that droplets from a create whose reply was lost can be found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MAX_TAG_LENGTH = 255
NODE_TAG_PREFIX = "ray:"
CLUSTER_TAG_PREFIX = "ray-cluster:"
LAUNCH_TAG_PREFIX = "ray-launch:"

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_VALID_TAG = re.compile(r"^[A-Za-z0-9:_-]{1,255}$")
_ESCAPE = re.compile(r"_([0-9a-f]{2})")


class TagEncodingError(ValueError):
    """A Ray tag cannot be stored as a DigitalOcean tag (too long once escaped)."""


def encode_text(text: str) -> str:
    out: list[str] = []
    for char in text:
        if char in _PLAIN:
            out.append(char)
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(out)


def decode_text(text: str) -> str:
    """Inverse of `encode_text`. Raises ValueError on text `encode_text` cannot produce."""
    raw = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char == "_":
            match = _ESCAPE.match(text, index)
            if match is None:
                raise ValueError(f"bad escape in tag text {text!r}")
            raw.append(int(match.group(1), 16))
            index = match.end()
        elif char in _PLAIN:
            raw.extend(char.encode("ascii"))
            index += 1
        else:
            raise ValueError(f"character {char!r} cannot appear in encoded tag text {text!r}")
    return raw.decode("utf-8")


def _checked(tag: str, what: str) -> str:
    if not _VALID_TAG.match(tag):
        raise TagEncodingError(
            f"{what} needs {len(tag)} characters as a DigitalOcean tag (at most {MAX_TAG_LENGTH})"
        )
    return tag


def cluster_tag(cluster_name: str) -> str:
    if not cluster_name:
        raise TagEncodingError("the cluster name must not be empty")
    return _checked(CLUSTER_TAG_PREFIX + encode_text(cluster_name), "cluster name")


def launch_tag(token: str) -> str:
    return _checked(LAUNCH_TAG_PREFIX + encode_text(token), "launch token")


def node_tag(key: str, value: str) -> str:
    if not key:
        raise TagEncodingError("a Ray tag key must not be empty")
    return _checked(
        f"{NODE_TAG_PREFIX}{encode_text(key)}:{encode_text(value)}", f"Ray tag {key!r}"
    )


def encode_node_tags(tags: Mapping[str, str]) -> list[str]:
    return [node_tag(key, str(value)) for key, value in sorted(tags.items())]


def decode_node_tags(droplet_tags: Iterable[str]) -> dict[str, str]:
    """Ray's tags from a droplet's tags. Tags not written by `node_tag` are ignored."""
    decoded: dict[str, str] = {}
    for tag in droplet_tags:
        if not tag.startswith(NODE_TAG_PREFIX):
            continue
        parts = tag[len(NODE_TAG_PREFIX) :].split(":")
        if len(parts) != 2:
            continue
        try:
            decoded[decode_text(parts[0])] = decode_text(parts[1])
        except ValueError:
            continue
    return decoded


def launch_tokens(droplet_tags: Iterable[str]) -> set[str]:
    tokens: set[str] = set()
    for tag in droplet_tags:
        if tag.startswith(LAUNCH_TAG_PREFIX):
            try:
                tokens.add(decode_text(tag[len(LAUNCH_TAG_PREFIX) :]))
            except ValueError:
                continue
    return tokens


def tag_changes(
    current: Mapping[str, str], wanted: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """Droplet tags to remove and to add so that `wanted` keys take their new values.

    Keys absent from `wanted` are left alone (Ray's set_node_tags updates, never deletes).
    """
    remove: list[str] = []
    add: list[str] = []
    for key, value in sorted(wanted.items()):
        old = current.get(key)
        if old == value:
            continue
        if old is not None:
            remove.append(node_tag(key, old))
        add.append(node_tag(key, value))
    return remove, add
