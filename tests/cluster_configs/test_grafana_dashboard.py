"""The Grafana dashboard queries exactly the metrics voiceq exports, under Ray's exported names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from voiceq.metrics import METRICS

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster_configs" / "grafana" / "voiceq.json"
METRIC_NAME = re.compile(r"\bray_[a-zA-Z_:][a-zA-Z0-9_:]*")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def panel_queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


def variable_queries(dashboard: dict[str, Any]) -> list[str]:
    out = []
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var["type"] == "query" and query:
            out.append(query)
    return out


def exported_names() -> set[str]:
    """What Ray's metrics endpoint shows for voiceq's metrics: `ray_` + name; histograms as
    `_bucket`, `_sum` and `_count` series."""
    names = set()
    for name, (kind, _, _) in METRICS.items():
        if kind == "histogram":
            names.update(f"ray_{name}{suffix}" for suffix in HISTOGRAM_SERIES)
        else:
            names.add(f"ray_{name}")
    return names


def test_every_voiceq_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    used = {m for q in panel_queries(dashboard) for m in METRIC_NAME.findall(q)}
    for name, (kind, _, _) in METRICS.items():
        # Histograms are read through their buckets (quantiles), not only their sum/count.
        wanted = f"ray_{name}_bucket" if kind == "histogram" else f"ray_{name}"
        assert wanted in used, f"no panel queries {wanted} ({kind} {name} in voiceq.metrics)"


def test_queries_name_only_metrics_voiceq_exports(dashboard: dict[str, Any]) -> None:
    known = exported_names()
    queries = panel_queries(dashboard) + variable_queries(dashboard)
    assert queries
    for query in queries:
        for name in METRIC_NAME.findall(query):
            assert name in known, f"{name!r} in {query!r} is not exported by voiceq"


def test_queries_use_the_datasource_variable_and_are_well_formed(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            assert expr.count("[") == expr.count("]"), expr
            # Every selector is scoped to the chosen Ray session(s).
            for selector in re.findall(r"ray_[a-z_]+(\{[^}]*\})?", expr):
                assert 'SessionName=~"$SessionName"' in selector, expr
            for var in re.findall(r"\$(\w+)", expr):
                assert var in variables or var.startswith("__"), f"unknown variable ${var} in {expr}"


def test_panels_have_unique_ids_and_do_not_overlap(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
