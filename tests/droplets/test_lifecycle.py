"""What operators see about the cluster's droplets and what they cost."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from droplets.lifecycle import (
    DEFAULT_HOURLY_PRICES,
    format_table,
    hourly_price,
    lifecycle_rows,
    main,
)
from droplets.model import Droplet
from droplets.tags import cluster_tag, encode_node_tags
from tests.fakes.digitalocean import TOKEN, FakeDigitalOcean

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def droplet(droplet_id: int, size: str, age: timedelta, tags: dict[str, str],
            price: float | None = None) -> Droplet:
    return Droplet(
        id=droplet_id, name=f"d{droplet_id}", status="active",
        tags=("ray-cluster:voiceq", *encode_node_tags(tags)), size_slug=size, region="atl1",
        image="gpu-amd-base", created_at=NOW - age, private_ip="10.0.0.3", public_ip=None,
        price_hourly=price, vpc_uuid=None,
    )


HEAD = droplet(1, "s-4vcpu-8gb", timedelta(days=2),
               {"ray-node-type": "head", "ray-user-node-type": "head_cpu"}, price=0.07143)
GPU = droplet(2, "gpu-mi300x1-192gb", timedelta(minutes=90),
              {"ray-node-type": "worker", "ray-user-node-type": "gpu_mi300x",
               "ray-launch-request": "f00d"})
ODD = droplet(3, "m-2vcpu-16gb", timedelta(hours=1), {})


def test_rows_say_what_why_since_when_and_cost() -> None:
    assert [r.id for r in lifecycle_rows([GPU, ODD, HEAD], NOW)] == [1, 2, 3]  # oldest first
    rows = {r.id: r for r in lifecycle_rows([GPU, ODD, HEAD], NOW)}
    assert rows[2].node_type == "gpu_mi300x" and rows[2].node_kind == "worker"
    assert "launch request f00d" in rows[2].why
    assert rows[2].created_at == NOW - timedelta(minutes=90)
    assert rows[2].hourly_usd == 1.99
    assert rows[2].cost_so_far_usd == pytest.approx(1.99 * 1.5)
    assert rows[1].why.startswith("cluster head")
    assert rows[1].cost_so_far_usd == pytest.approx(0.07143 * 48)
    assert rows[3].hourly_usd is None and rows[3].cost_so_far_usd is None
    assert "no Ray tags" in rows[3].why


def test_price_precedence() -> None:
    assert DEFAULT_HOURLY_PRICES["gpu-mi300x1-192gb"] == 1.99
    assert DEFAULT_HOURLY_PRICES["gpu-h100x1-80gb"] == 3.39
    assert DEFAULT_HOURLY_PRICES["gpu-l40sx1-48gb"] == 1.57
    reported = droplet(4, "gpu-mi300x1-192gb", timedelta(0), {}, price=2.10)
    assert hourly_price(reported) == 2.10
    assert hourly_price(reported, {"gpu-mi300x1-192gb": 1.49}) == 1.49
    assert hourly_price(GPU) == 1.99


def test_table_lists_every_droplet_and_the_totals() -> None:
    table = format_table(lifecycle_rows([HEAD, GPU, ODD], NOW))
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "KIND"]
    assert len(lines) == 5
    assert "2026-11-28 10:30" in table and "1h30m" in table and "$2.98" in table
    assert lines[-1].startswith("3 droplet(s); burning $2.06/h; spent so far $6.41")
    assert "(+1 droplet(s) of unknown price)" in lines[-1]


def test_the_command_line_lists_the_cluster_from_the_api(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeDigitalOcean() as fake:
        fake.add_droplet("voiceq-gpu", size="gpu-mi300x1-192gb",
                         tags=(cluster_tag("voiceq"), *encode_node_tags(
                             {"ray-node-type": "worker", "ray-user-node-type": "gpu_mi300x"})))
        fake.add_foreign_droplet("not-ours", size="gpu-h100x1-80gb")
        monkeypatch.setenv("DO_API_TOKEN", TOKEN)
        assert main(["--cluster", "voiceq", "--endpoint", fake.endpoint,
                     "--price", "gpu-mi300x1-192gb=1.50"]) == 0
    out = capsys.readouterr().out
    assert "voiceq-gpu" in out and "not-ours" not in out
    assert "$1.50" in out and "gpu_mi300x" in out
    monkeypatch.delenv("DO_API_TOKEN")
    assert main(["--cluster", "voiceq"]) == 2


def test_cost_so_far_follows_the_billing_model() -> None:
    from datetime import timedelta

    from voiceq.billing import Billing

    young = replace(GPU, id=9, created_at=NOW - timedelta(seconds=20))
    [per_second] = lifecycle_rows([young], NOW)
    assert per_second.cost_so_far_usd == pytest.approx(1.99 * 60 / 3600)  # the 60 s minimum
    [hourly] = lifecycle_rows([young], NOW, billing=Billing.named("hourly"))
    assert hourly.cost_so_far_usd == pytest.approx(1.99)
