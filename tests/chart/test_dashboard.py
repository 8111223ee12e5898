"""The Grafana dashboard: a ConfigMap for Grafana's sidecar holding well-formed dashboard JSON
whose every query parses (promtool) and asks for metrics that exist, aggregated correctly."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.promql import (
    KNOWN,
    PER_REPLICA,
    STORE_WIDE,
    aggregations_of,
    check_rules,
    metric_names,
    write_rules,
)
from tests.chart.render import CHART, Obj, one, render

FILE = CHART / "dashboards" / "sd-allocator.json"
# What each template variable stands for when promtool reads the queries.
VARIABLES = {"$__rate_interval": "5m", "$namespace": "sd-allocator", "$fleet": "sd-webui"}
# What the dashboard must show (issue 16): one metric for each.
SHOWN = {
    "sda_active_sessions",
    "sda_queue_length",
    "sda_allocations_total",
    "sda_allocation_seconds_bucket",
    "sda_reclaims",
    "sda_upstream_errors_total",
    "sda_gpu_allocated_seconds",
    "sda_gpu_busy_seconds",
    "sda_requests_total",
}


@pytest.fixture(scope="module")
def dashboard() -> Obj:
    loaded: Obj = json.loads(FILE.read_text())
    return loaded


def panels(dashboard: Obj) -> Iterator[Obj]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def expressions(dashboard: Obj) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_the_config_map_carries_the_file_and_the_sidecars_label(tmp_path: Path) -> None:
    values: dict[str, Any] = {
        "monitoring": {
            "dashboard": {
                "enabled": True,
                "label": "grafana.example.com/dashboard",
                "labelValue": "sd",
                "namespace": "monitoring",
                "annotations": {"grafana_folder": "Stable Diffusion"},
            }
        }
    }
    config_map = one(render(values=values, tmp=tmp_path), "ConfigMap")
    metadata = config_map["metadata"]
    assert metadata["namespace"] == "monitoring"
    assert metadata["labels"]["grafana.example.com/dashboard"] == "sd"
    assert metadata["annotations"] == {"grafana_folder": "Stable Diffusion"}
    assert json.loads(config_map["data"]["sd-allocator.json"]) == json.loads(FILE.read_text())


def test_by_default_the_kube_prometheus_stack_sidecar_finds_it() -> None:
    config_map = one(render("monitoring.dashboard.enabled=true"), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "sd-allocator"  # the release's


def test_the_dashboard_has_identity_and_a_prometheus_data_source_variable(dashboard: Obj) -> None:
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        if panel["type"] != "row":
            sources = [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
            assert all(s == {"type": "prometheus", "uid": "${datasource}"} for s in sources)


def test_panels_have_unique_ids_and_do_not_overlap(dashboard: Obj) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    taken: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "xywh"), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[x, y] = panel["title"]


def test_every_query_uses_known_metrics_and_defined_variables(dashboard: Obj) -> None:
    used: set[str] = set()
    variables = {f"${v['name']}" for v in dashboard["templating"]["list"]} | {"$__rate_interval"}
    for title, expr in expressions(dashboard):
        names = metric_names(expr)
        assert names and names <= KNOWN, (title, names - KNOWN)
        assert set(re.findall(r"\$\w+", expr)) <= variables, title
        used |= names
    assert used >= SHOWN, SHOWN - used


def test_store_wide_metrics_are_never_summed(dashboard: Obj) -> None:
    # Every replica reports the same store-wide number: a sum would multiply it.
    for title, expr in expressions(dashboard):
        for name in metric_names(expr) & STORE_WIDE:
            assert "sum" not in aggregations_of(expr, name), (title, name)
            assert "max" in aggregations_of(expr, name), (title, name)
        for name in metric_names(expr) & (PER_REPLICA - {"sda_store_up"}):
            assert "max" not in aggregations_of(expr, name), (title, name)


def test_promtool_parses_every_query(dashboard: Obj, tmp_path: Path) -> None:
    rules = []
    for index, (_title, expr) in enumerate(expressions(dashboard)):
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"sda:dashboard_query:{index}", "expr": expr})
    check_rules(write_rules(tmp_path / "queries.yaml", [{"name": "dashboard", "rules": rules}]))


def test_the_metric_name_reader_sees_only_metric_names() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, outcome) (rate(sda_queue_wait_seconds_bucket"
        '{namespace="x", outcome=~"served|left"}[5m]))) and on () '
        "(sum(agones_gameservers_count) or vector(0)) - time() > bool 0"
    )
    assert metric_names(expr) == {"sda_queue_wait_seconds_bucket", "agones_gameservers_count"}
    assert aggregations_of(expr, "sda_queue_wait_seconds_bucket") == {"sum"}
