"""The metrics the chart's dashboard and alerts may use, and PromQL checked by promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.chart.render import require_promtool

# What the allocator exports (allocator/metrics.py, and issue 16 for the store-wide ones).
HISTOGRAMS = {"sda_allocation_seconds", "sda_cruise_pass_seconds", "sda_queue_wait_seconds"}
PER_REPLICA = {
    "sda_requests_total",
    "sda_upstream_errors_total",
    "sda_allocations_total",
    "sda_restarts_total",
    "sda_open_websockets",
    "sda_reclaimed_total",
    "sda_cruise_failures_total",
    "sda_queue_served_total",
    "sda_store_up",
    *(f"{name}_{suffix}" for name in HISTOGRAMS for suffix in ("bucket", "sum", "count")),
}
# Read from Redis by every replica, so every replica reports the same number: never summed.
STORE_WIDE = {
    "sda_active_sessions",
    "sda_queue_length",
    "sda_gpu_allocated_seconds",
    "sda_gpu_busy_seconds",
    "sda_reclaims",
    "sda_cruise_last_pass_timestamp_seconds",
    "sda_cruise_last_pass_failures",
}
# Agones' controller (site/content/en/docs/Guides/metrics.md, pkg/metrics/controller_metrics.go),
# and Prometheus' own per-target series.
AGONES = {
    "agones_gameservers_count",
    "agones_gameservers_total",
    "agones_fleets_replicas_count",
    "agones_fleet_autoscalers_desired_replicas_count",
    "agones_fleet_autoscalers_current_replicas_count",
}
KNOWN = PER_REPLICA | STORE_WIDE | AGONES | {"up"}

KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: every name that is not a function, a keyword,
    a label (in matchers or grouping) or a duration."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _WORD.finditer(text):
        follows = text[match.end() :].lstrip()
        if match.group() not in KEYWORDS and not follows.startswith("("):
            names.add(match.group())
    return names


def aggregations_of(expr: str, metric: str) -> set[str]:
    """The aggregation operators an expression applies around `metric`'s selector."""
    expr = _STRING.sub(lambda string: '"' + "x" * (len(string.group()) - 2) + '"', expr)
    found = set()
    for match in re.finditer(rf"\b{re.escape(metric)}\b", expr):
        depth, before = 0, expr[: match.start()]
        for index in range(len(before) - 1, -1, -1):
            char = before[index]
            if char == ")":
                depth += 1
            elif char == "(":
                if depth == 0:
                    head = re.search(r"(\w+)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?$", before[:index])
                    if head and head.group(1) in {"sum", "min", "max", "avg", "count"}:
                        found.add(head.group(1))
                depth = max(depth - 1, 0)
    return found


def write_rules(path: Path, groups: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(require_promtool()), *args], capture_output=True, text=True, timeout=120
    )


def check_rules(path: Path) -> None:
    """`promtool check rules`: the expressions parse, the templates compile."""
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
