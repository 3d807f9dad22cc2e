"""The cluster's DigitalOcean cloud firewall: Ray's ports stay inside the VPC.

Ray's GCS, raylets, object managers and dashboard listen on every interface of the head and
the workers; reachable from the internet, anyone could run code in the cluster. The provider
therefore puts a cloud firewall on the cluster before the head exists (when `ray up` creates
it), attached by the cluster tag, so every droplet of the cluster is behind it from its first
boot:

- inbound from anywhere: the Serve HTTP port only (`serve_port`, default 8000);
- inbound SSH (22) from `ssh_sources` only (what `ray up` needs to reach the head);
- inbound TCP and UDP on every port, and ICMP, from the VPC's address range only (Ray's ports);
- outbound: everything (package installs, the DigitalOcean API, S3, webhooks).

The firewall is found again by its name and the cluster tag it applies to; firewalls that do
not carry both are never changed or deleted. It is removed when the head droplet is destroyed
(`ray down`), or with ``python -m droplets.firewall --cluster NAME --remove``; after changing
``provider.firewall`` on a running cluster, ``--ensure CLUSTER_YAML`` applies the new rules.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from droplets.tags import cluster_tag

logger = logging.getLogger(__name__)

ANYWHERE = ("0.0.0.0/0", "::/0")
_NAME_OK = re.compile(r"[^a-z0-9.-]+")


class FirewallError(ValueError):
    """The firewall settings are unusable."""


@dataclass(frozen=True)
class FirewallSettings:
    enabled: bool = True
    serve_port: int = 8000
    ssh_sources: tuple[str, ...] = ()
    # The VPC's address range; looked up from the VPC (provider.vpc_uuid, else the region's
    # default VPC) when unset.
    vpc_ip_range: str | None = None

    @classmethod
    def from_provider_config(cls, config: Mapping[str, Any]) -> FirewallSettings:
        raw = config.get("firewall")
        if raw is None:
            raw = {}
        if raw is False:
            return cls(enabled=False)
        if not isinstance(raw, Mapping):
            raise FirewallError("provider.firewall must be a mapping (or false)")
        sources = raw.get("ssh_sources") or ()
        if isinstance(sources, str) or not isinstance(sources, Sequence):
            raise FirewallError("provider.firewall.ssh_sources must be a list of addresses or CIDR ranges")
        for source in sources:
            _check_cidr(str(source), "provider.firewall.ssh_sources")
        vpc_range = raw.get("vpc_ip_range") or None
        if vpc_range is not None:
            _check_cidr(str(vpc_range), "provider.firewall.vpc_ip_range")
        try:
            port = int(raw.get("serve_port", 8000))
        except (TypeError, ValueError) as err:
            raise FirewallError("provider.firewall.serve_port must be a port number") from err
        if not 1 <= port <= 65535:
            raise FirewallError("provider.firewall.serve_port must be a port number")
        return cls(enabled=bool(raw.get("enabled", True)), serve_port=port,
                   ssh_sources=tuple(str(s) for s in sources), vpc_ip_range=vpc_range)


def _check_cidr(value: str, where: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as err:
        raise FirewallError(f"{where}: {value!r} is not an address or CIDR range") from err


def firewall_name(cluster_name: str) -> str:
    """A valid firewall name for the cluster (letters, digits, '.', '-'), unique per name."""
    slug = _NAME_OK.sub("-", cluster_name.lower()).strip("-.")[:40] or "cluster"
    digest = hashlib.sha256(cluster_name.encode()).hexdigest()[:8]
    return f"ray-{slug}-{digest}"


def firewall_body(cluster_name: str, settings: FirewallSettings, vpc_ip_range: str) -> dict[str, Any]:
    """The firewall's full description, as DigitalOcean's create and update take it."""
    vpc = {"addresses": [vpc_ip_range]}
    inbound: list[dict[str, Any]] = [
        {"protocol": "tcp", "ports": str(settings.serve_port), "sources": {"addresses": list(ANYWHERE)}},
        {"protocol": "tcp", "ports": "0", "sources": vpc},
        {"protocol": "udp", "ports": "0", "sources": vpc},
        {"protocol": "icmp", "sources": vpc},
    ]
    if settings.ssh_sources:
        inbound.insert(1, {"protocol": "tcp", "ports": "22", "sources": {"addresses": list(settings.ssh_sources)}})
    everywhere = {"addresses": list(ANYWHERE)}
    outbound = [
        {"protocol": "tcp", "ports": "0", "destinations": everywhere},
        {"protocol": "udp", "ports": "0", "destinations": everywhere},
        {"protocol": "icmp", "destinations": everywhere},
    ]
    return {"name": firewall_name(cluster_name), "inbound_rules": inbound, "outbound_rules": outbound,
            "tags": [cluster_tag(cluster_name)], "droplet_ids": []}


def is_ours(firewall: Mapping[str, Any], cluster_name: str) -> bool:
    return (firewall.get("name") == firewall_name(cluster_name)
            and cluster_tag(cluster_name) in (firewall.get("tags") or []))


def _normalized(rules: Any) -> list[str]:
    out = []
    for rule in rules or []:
        rule = dict(rule)
        if rule.get("protocol") == "icmp":
            rule.pop("ports", None)
        elif rule.get("ports") in ("all", "0", 0):
            rule["ports"] = "0"
        for key in ("sources", "destinations"):
            if key in rule:
                rule[key] = {k: sorted(v) for k, v in sorted(dict(rule[key]).items()) if v}
        out.append(repr(sorted(rule.items())))
    return sorted(out)


def same_rules(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(_normalized(a.get(k)) == _normalized(b.get(k)) for k in ("inbound_rules", "outbound_rules"))


class FirewallApi(Protocol):
    def ensure_tag(self, tag: str) -> None: ...
    def list_firewalls(self) -> list[dict[str, Any]]: ...
    def create_firewall(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def update_firewall(self, firewall_id: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_firewall(self, firewall_id: str) -> bool: ...
    def vpc_ip_range(self, vpc_uuid: str | None, region: str) -> str: ...


def ensure_firewall(api: FirewallApi, cluster_name: str, settings: FirewallSettings, *, region: str,
                    vpc_uuid: str | None) -> str | None:
    """Create the cluster's firewall, or bring its rules up to date; its id (None: disabled)."""
    if not settings.enabled:
        return None
    vpc_range = settings.vpc_ip_range or api.vpc_ip_range(vpc_uuid, region)
    body = firewall_body(cluster_name, settings, vpc_range)
    # A firewall can only name tags that exist; the head does not exist yet.
    api.ensure_tag(cluster_tag(cluster_name))
    ours = [f for f in api.list_firewalls() if is_ours(f, cluster_name)]
    if not ours:
        created = api.create_firewall(body)
        logger.info("created firewall %s (%s) for cluster %s: inbound Serve :%d, SSH from %s, Ray only from %s",
                    created.get("id"), body["name"], cluster_name, settings.serve_port,
                    ", ".join(settings.ssh_sources) or "nowhere", vpc_range)
        return str(created.get("id"))
    first, *extra = ours
    for duplicate in extra:  # a create whose reply was lost, then created again
        api.delete_firewall(str(duplicate["id"]))
    if not same_rules(first, body):
        api.update_firewall(str(first["id"]), body)
        logger.info("updated the rules of firewall %s (%s)", first["id"], body["name"])
    return str(first["id"])


def remove_firewall(api: FirewallApi, cluster_name: str) -> int:
    """Delete the cluster's firewall(s); how many were deleted (0 if none was left)."""
    removed = 0
    for firewall in api.list_firewalls():
        if is_ours(firewall, cluster_name) and api.delete_firewall(str(firewall["id"])):
            logger.info("deleted firewall %s (%s)", firewall["id"], firewall.get("name"))
            removed += 1
    return removed


def main(argv: Sequence[str] | None = None) -> int:
    from droplets.api import DEFAULT_ENDPOINT, DigitalOceanApi
    from droplets.errors import DigitalOceanError

    parser = argparse.ArgumentParser(prog="python -m droplets.firewall",
                                     description="Bring a Ray cluster's cloud firewall up to date, or remove it.")
    parser.add_argument("--cluster", required=True, help="cluster_name from the cluster YAML")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--remove", action="store_true", help="delete it (after `ray down`)")
    action.add_argument("--ensure", metavar="CLUSTER_YAML", help="create it or apply provider.firewall's rules")
    parser.add_argument("--endpoint", default=None, help=f"default: the YAML's api_endpoint, else {DEFAULT_ENDPOINT}")
    parser.add_argument("--token-env", default="DO_API_TOKEN")
    args = parser.parse_args(argv)
    token = os.environ.get(args.token_env, "")
    if not token:
        print(f"set {args.token_env} to a DigitalOcean API token", file=sys.stderr)
        return 2
    provider: Mapping[str, Any] = {}
    if args.ensure:
        import yaml

        with open(args.ensure, encoding="utf-8") as f:
            provider = (yaml.safe_load(f) or {}).get("provider") or {}
    api = DigitalOceanApi(token, endpoint=args.endpoint or provider.get("api_endpoint") or DEFAULT_ENDPOINT)
    try:
        if args.remove:
            print(f"removed {remove_firewall(api, args.cluster)} firewall(s) of cluster {args.cluster}")
        else:
            settings = FirewallSettings.from_provider_config(provider)
            firewall_id = ensure_firewall(api, args.cluster, settings, region=str(provider.get("region") or ""),
                                          vpc_uuid=provider.get("vpc_uuid") or None)
            print(f"firewall of cluster {args.cluster}: {firewall_id or 'disabled'}")
    except (DigitalOceanError, FirewallError) as err:
        print(str(err), file=sys.stderr)
        return 1
    finally:
        api.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
