"""What the provider knows about one droplet, parsed from DigitalOcean's droplet JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

# Droplet statuses as DigitalOcean reports them. "off" droplets are still billed.
STATUS_NEW = "new"
STATUS_ACTIVE = "active"
STATUS_OFF = "off"
STATUS_ARCHIVE = "archive"


@dataclass(frozen=True)
class Droplet:
    id: int
    name: str
    status: str
    tags: tuple[str, ...]
    size_slug: str
    region: str
    image: str | None
    created_at: datetime
    private_ip: str | None
    public_ip: str | None
    price_hourly: float | None
    vpc_uuid: str | None

    @property
    def node_id(self) -> str:
        """The id Ray knows this droplet by (also its RAY_CLOUD_INSTANCE_ID)."""
        return str(self.id)

    @property
    def is_gpu(self) -> bool:
        return self.size_slug.startswith("gpu-")

    def has_tag(self, tag: str) -> bool:
        return tag in self.tags


def parse_timestamp(value: str) -> datetime:
    # DigitalOcean writes "2020-07-21T18:37:44Z"; fromisoformat learned "Z" only in 3.11.
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _ipv4(networks: Mapping[str, Any], kind: str) -> str | None:
    for entry in networks.get("v4") or []:
        if entry.get("type") == kind and entry.get("ip_address"):
            return str(entry["ip_address"])
    return None


def parse_droplet(data: Mapping[str, Any]) -> Droplet:
    """Parse one droplet object. Raises KeyError/ValueError on a malformed one."""
    size = data.get("size") or {}
    region = data.get("region") or {}
    image = data.get("image") or {}
    networks = data.get("networks") or {}
    price = size.get("price_hourly") if isinstance(size, Mapping) else None
    image_name = None
    if isinstance(image, Mapping):
        image_name = image.get("slug") or image.get("name")
        if image_name is None and image.get("id") is not None:
            image_name = str(image["id"])
    return Droplet(
        id=int(data["id"]),
        name=str(data["name"]),
        status=str(data["status"]),
        tags=tuple(str(t) for t in data.get("tags") or ()),
        size_slug=str(data.get("size_slug") or size.get("slug") or ""),
        region=str(region.get("slug") or "") if isinstance(region, Mapping) else str(region),
        image=str(image_name) if image_name is not None else None,
        created_at=parse_timestamp(str(data["created_at"])),
        private_ip=_ipv4(networks, "private"),
        public_ip=_ipv4(networks, "public"),
        price_hourly=float(price) if price is not None else None,
        vpc_uuid=data.get("vpc_uuid"),
    )
