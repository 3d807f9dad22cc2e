"""What operators see: the cluster's droplets, why they exist, since when, and their cost.

    python -m droplets.lifecycle --cluster voiceq            # token from DO_API_TOKEN

Prices: an operator's override (``provider.prices`` in the cluster YAML, or ``--price``) wins,
then the hourly price DigitalOcean reports in the droplet's size, then the built-in table of
public list prices. Cost so far is the time since creation, rounded as the billing model says
(``--billing``: per_second, DigitalOcean's since January 2026, with a 60 s minimum; or hourly),
times the hourly price: an estimate of the bill (DigitalOcean bills droplets, powered off or
not, until they are destroyed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    TAG_RAY_LAUNCH_REQUEST,
    TAG_RAY_NODE_KIND,
    TAG_RAY_USER_NODE_TYPE,
)

from droplets.model import Droplet
from droplets.tags import cluster_tag, decode_node_tags
from voiceq.billing import Billing

# Public list prices, $/hour, for single-GPU droplets (see ../shared/FACTS.md).
DEFAULT_HOURLY_PRICES: Mapping[str, float] = {
    "gpu-4000adax1-20gb": 0.76,
    "gpu-mi300x1-192gb": 1.99,
    "gpu-h100x1-80gb": 3.39,
    "gpu-l40sx1-48gb": 1.57,
}


@dataclass(frozen=True)
class DropletRow:
    id: int
    name: str
    node_kind: str
    node_type: str
    status: str
    size: str
    region: str
    created_at: datetime
    age_s: float
    why: str
    hourly_usd: float | None
    cost_so_far_usd: float | None
    private_ip: str | None
    public_ip: str | None


def hourly_price(droplet: Droplet, overrides: Mapping[str, float] | None = None) -> float | None:
    if overrides and droplet.size_slug in overrides:
        return overrides[droplet.size_slug]
    if droplet.price_hourly is not None:
        return droplet.price_hourly
    return DEFAULT_HOURLY_PRICES.get(droplet.size_slug)


def why(ray_tags: Mapping[str, str]) -> str:
    kind = ray_tags.get(TAG_RAY_NODE_KIND)
    if kind is None:
        return "carries the cluster tag but no Ray tags (not made by the provider?)"
    if kind == NODE_KIND_HEAD:
        return "cluster head (created by `ray up`)"
    request = ray_tags.get(TAG_RAY_LAUNCH_REQUEST)
    node_type = ray_tags.get(TAG_RAY_USER_NODE_TYPE, "?")
    reason = f"autoscaler added a {node_type} worker for pending Ray resource demand"
    return f"{reason} (launch request {request})" if request else reason


def lifecycle_rows(
    droplets: Iterable[Droplet],
    now: datetime,
    prices: Mapping[str, float] | None = None,
    billing: Billing | None = None,
) -> list[DropletRow]:
    billing = billing or Billing()
    rows = []
    for droplet in droplets:
        ray_tags = decode_node_tags(droplet.tags)
        age_s = max(0.0, (now - droplet.created_at).total_seconds())
        price = hourly_price(droplet, prices)
        rows.append(
            DropletRow(
                id=droplet.id,
                name=droplet.name,
                node_kind=ray_tags.get(TAG_RAY_NODE_KIND, "-"),
                node_type=ray_tags.get(TAG_RAY_USER_NODE_TYPE, "-"),
                status=droplet.status,
                size=droplet.size_slug,
                region=droplet.region,
                created_at=droplet.created_at,
                age_s=age_s,
                why=why(ray_tags),
                hourly_usd=price,
                cost_so_far_usd=billing.cost(age_s, price) if price is not None else None,
                private_ip=droplet.private_ip,
                public_ip=droplet.public_ip,
            )
        )
    rows.sort(key=lambda row: (row.created_at, row.id))
    return rows


def _duration(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def _money(value: float | None) -> str:
    return "?" if value is None else f"${value:,.2f}"


def format_table(rows: Sequence[DropletRow]) -> str:
    headers = ("ID", "NAME", "KIND", "NODE TYPE", "STATUS", "SIZE", "SINCE (UTC)", "AGE",
               "$/H", "COST SO FAR", "WHY")
    table = [headers]
    for row in rows:
        table.append(
            (
                str(row.id),
                row.name,
                row.node_kind,
                row.node_type,
                row.status,
                row.size,
                row.created_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M"),
                _duration(row.age_s),
                _money(row.hourly_usd),
                _money(row.cost_so_far_usd),
                row.why,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
             for line in table]
    known = [row.hourly_usd for row in rows if row.hourly_usd is not None]
    spent = [row.cost_so_far_usd for row in rows if row.cost_so_far_usd is not None]
    unknown = len(rows) - len(known)
    total = (
        f"{len(rows)} droplet(s); burning {_money(sum(known))}/h; "
        f"spent so far {_money(sum(spent))}"
    )
    if unknown:
        total += f" (+{unknown} droplet(s) of unknown price)"
    lines.append(total)
    return "\n".join(lines)


def _parse_prices(values: Sequence[str]) -> dict[str, float]:
    prices = {}
    for value in values:
        size, _, amount = value.partition("=")
        try:
            prices[size] = float(amount)
        except ValueError:
            raise SystemExit(f"--price wants SIZE=DOLLARS_PER_HOUR, got {value!r}") from None
    return prices


def main(argv: Sequence[str] | None = None) -> int:
    from droplets.api import DEFAULT_ENDPOINT, DigitalOceanApi
    from droplets.errors import DigitalOceanError

    parser = argparse.ArgumentParser(
        prog="python -m droplets.lifecycle",
        description="List a Ray cluster's droplets: why they exist, since when, what they cost.",
    )
    parser.add_argument("--cluster", required=True, help="cluster_name from the cluster YAML")
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT)
    parser.add_argument("--token-env", default="DO_API_TOKEN")
    parser.add_argument("--price", action="append", default=[], metavar="SIZE=USD_PER_HOUR")
    parser.add_argument("--billing", default="per_second", help="per_second, hourly or INCREMENT_S/MINIMUM_S")
    args = parser.parse_args(argv)
    try:
        billing = Billing.named(args.billing)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    token = os.environ.get(args.token_env, "")
    if not token:
        print(f"set {args.token_env} to a DigitalOcean API token", file=sys.stderr)
        return 2
    api = DigitalOceanApi(token, endpoint=args.endpoint)
    try:
        droplets = api.list_droplets(tag=cluster_tag(args.cluster))
    except DigitalOceanError as err:
        print(str(err), file=sys.stderr)
        return 1
    finally:
        api.close()
    rows = lifecycle_rows(droplets, datetime.now(timezone.utc), _parse_prices(args.price), billing)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
