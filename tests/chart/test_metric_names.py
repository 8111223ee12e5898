"""The metrics the chart's dashboard and alerts ask for are the ones the allocator exports."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

import allocator.metrics  # noqa: F401  (registers the allocator's metrics)
from tests.chart.promql import AGONES, KNOWN, PER_REPLICA, STORE_WIDE, metric_names
from tests.chart.render import CHART, one, render


def _used() -> set[str]:
    dashboard = json.loads((CHART / "dashboards" / "sd-allocator.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rule = one(render("monitoring.prometheusRule.enabled=true"), "PrometheusRule")
    exprs += [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    return {name for expr in exprs for name in metric_names(expr)}


def test_every_allocator_metric_the_chart_uses_is_registered_by_the_allocator() -> None:
    registered = {name for name in REGISTRY._names_to_collectors if name.startswith("sda_")}
    used = _used() - AGONES - {"up"}
    assert used <= KNOWN
    missing = used - registered
    if missing and missing <= STORE_WIDE | {"sda_store_up"}:
        pytest.skip(f"allocator/metrics.py does not export {sorted(missing)} yet (issue 16)")
    assert missing == set()


def test_the_chart_knows_every_metric_the_allocator_exports() -> None:
    # A new metric finds its place in promql.py, per replica or store-wide (and, where it
    # helps, on the dashboard).
    names = set(REGISTRY._names_to_collectors)
    series = {
        name
        for name in names
        if name.startswith("sda_")
        and not name.endswith("_created")  # the client's creation times
        and f"{name}_total" not in names  # a counter's family name
        and f"{name}_bucket" not in names  # a histogram's family name
    }
    assert series - PER_REPLICA - STORE_WIDE == set()
