"""The alerts: one set of groups in the PrometheusRule and in Managed Prometheus' Rules, valid
for promtool, and firing (under `promtool test rules`) when, and only when, they should."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.promql import (
    AGONES,
    KNOWN,
    STORE_WIDE,
    aggregations_of,
    check_rules,
    metric_names,
    promtool,
    write_rules,
)
from tests.chart.render import Obj, manifests, one, render

NAMESPACE = manifests.NAMESPACE  # the release's namespace and name in every render
ON = (
    "monitoring.prometheusRule.enabled=true",
    "monitoring.gmp.rules.enabled=true",
    "monitoring.podMonitoring.enabled=true",
)
ALERTS = {
    "SdAllocatorAllocationsFailing",
    "SdAllocatorNoReadyWebUI",
    "SdAllocatorCruiserNotRunning",
    "SdAllocatorCruiserFailing",
    "SdAllocatorStoreUnreachable",
    "SdAllocatorMetricsAbsent",
}
DOCS = Path(manifests.REPO) / "docs" / "monitoring.md"


@pytest.fixture(scope="module")
def groups() -> list[Obj]:
    found: list[Obj] = one(render(*ON), "PrometheusRule")["spec"]["groups"]
    return found


def rules_of(groups: list[Obj]) -> list[Obj]:
    return [rule for group in groups for rule in group["rules"]]


def test_monitoring_is_off_by_default() -> None:
    kinds = {obj["kind"] for obj in render()}
    assert not kinds & {"PrometheusRule", "Rules", "ClusterRules", "PodMonitoring"}
    assert "ConfigMap" not in kinds


def test_the_prometheus_rule_and_managed_prometheus_rules_carry_the_same_groups(
    groups: list[Obj],
) -> None:
    assert one(render(*ON), "Rules")["spec"]["groups"] == groups
    clustered = render(*ON, "monitoring.gmp.rules.clusterScoped=true")
    cluster_rules = one(clustered, "ClusterRules")
    assert cluster_rules["spec"]["groups"] == groups
    assert cluster_rules["metadata"]["name"] == f"{NAMESPACE}-sd-allocator"
    assert not [obj for obj in clustered if obj["kind"] == "Rules"]


def test_every_alert_is_there_with_severity_summary_and_a_runbook(groups: list[Obj]) -> None:
    sections = {
        line.removeprefix("### ").strip().lower()
        for line in DOCS.read_text().splitlines()
        if line.startswith("### ")
    }
    assert {rule["alert"] for rule in rules_of(groups)} == ALERTS
    for rule in rules_of(groups):
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["for"], rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        anchor = rule["alert"].lower()
        assert rule["annotations"]["description"].endswith(f"docs/monitoring.md#{anchor}")
        assert anchor in sections, f"docs/monitoring.md has no section {rule['alert']}"


def test_values_reach_the_rules(tmp_path: Path) -> None:
    alerts = {
        "labels": {"team": "ml-platform"},
        "runbookBaseUrl": "https://wiki.example.com/sd/monitoring",
        "storeUnreachable": {"for": "1m", "severity": "warning"},
        "cruiserNotRunning": {"seconds": 1800, "for": "5m", "severity": "warning"},
        "metricsAbsent": {"job": "sd-allocator/allocator", "for": "10m", "severity": "warning"},
    }
    values = {"monitoring": {"prometheusRule": {"enabled": True}, "alerts": alerts}}
    rules = {
        r["alert"]: r
        for r in rules_of(
            one(render(values=values, tmp=tmp_path), "PrometheusRule")["spec"]["groups"]
        )
    }
    store = rules["SdAllocatorStoreUnreachable"]
    assert store["for"] == "1m" and store["labels"] == {
        "severity": "warning",
        "team": "ml-platform",
    }
    assert store["annotations"]["runbook_url"] == (
        "https://wiki.example.com/sd/monitoring#sdallocatorstoreunreachable"
    )
    assert rules["SdAllocatorCruiserNotRunning"]["expr"].endswith("> 1800")
    assert 'job="sd-allocator/allocator"' in rules["SdAllocatorMetricsAbsent"]["expr"]


def test_the_rules_use_known_metrics_aggregated_as_they_must_be(groups: list[Obj]) -> None:
    for rule in rules_of(groups):
        expr = rule["expr"]
        names = metric_names(expr)
        assert names and names <= KNOWN, (rule["alert"], names - KNOWN)
        for name in names - AGONES:  # every selector of ours names the release's namespace
            selectors = re.findall(rf"\b{name}\{{([^}}]*)\}}", expr)
            assert selectors, (rule["alert"], name)
            assert all(f'namespace="{NAMESPACE}"' in s for s in selectors), rule["alert"]
        for name in names & STORE_WIDE:
            assert "sum" not in aggregations_of(expr, name), (rule["alert"], name)
        if "sda_store_up" in names:  # per replica: one replica cut off is enough
            assert aggregations_of(expr, "sda_store_up") == {"min"}


def test_promtool_accepts_the_rules(groups: list[Obj], tmp_path: Path) -> None:
    check_rules(write_rules(tmp_path / "rules.yaml", groups))


def test_promtool_refuses_a_broken_rule(groups: list[Obj], tmp_path: Path) -> None:
    broken = copy.deepcopy(groups)
    broken[0]["rules"][0]["expr"] = "sum(rate(sda_allocations_total[15m])"
    result = promtool("check", "rules", str(write_rules(tmp_path / "broken.yaml", broken)))
    assert result.returncode != 0
    broken = copy.deepcopy(groups)
    broken[0]["rules"][0]["annotations"]["description"] = "{{ $value | nosuchfunction }}"
    result = promtool("check", "rules", str(write_rules(tmp_path / "broken.yaml", broken)))
    assert result.returncode != 0, "annotation templates are checked too"


# `promtool test rules`: series (one sample a minute from time 0) and the alerts expected to
# be firing at a time. An alert not listed for a time must not be firing then.
NS = f'namespace="{NAMESPACE}"'


def _case(
    alert: str, series: dict[str, str], firing_at: list[str], quiet_at: list[str]
) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "alert_rule_test": [
            {"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": labels}]}
            for at, labels in ((at, {"severity": SEVERITY[alert]}) for at in firing_at)
        ]
        + [{"eval_time": at, "alertname": alert, "exp_alerts": []} for at in quiet_at],
    }


SEVERITY = {
    "SdAllocatorAllocationsFailing": "critical",
    "SdAllocatorNoReadyWebUI": "critical",
    "SdAllocatorCruiserNotRunning": "warning",
    "SdAllocatorCruiserFailing": "warning",
    "SdAllocatorStoreUnreachable": "critical",
    "SdAllocatorMetricsAbsent": "warning",
}
CASES = {
    # One replica loses Redis at minute 2: pending for 3 minutes, then firing. A replica of
    # another release, cut off all along, changes nothing.
    "store lost by one replica": _case(
        "SdAllocatorStoreUnreachable",
        {
            f'sda_store_up{{{NS},pod="a"}}': "1 1 0x20",
            f'sda_store_up{{{NS},pod="b"}}': "1x22",
            'sda_store_up{namespace="other",pod="c"}': "0x22",
        },
        firing_at=["6m", "20m"],
        quiet_at=["1m", "4m"],
    ),
    "store back": _case(
        "SdAllocatorStoreUnreachable",
        {f'sda_store_up{{{NS},pod="a"}}': "1 0 0 1x20"},
        firing_at=[],
        quiet_at=["2m", "6m", "10m"],
    ),
    # People wait from minute 1 and no GameServer is Ready: firing after 10 minutes.
    "queue and no Ready WebUI": _case(
        "SdAllocatorNoReadyWebUI",
        {
            f'sda_queue_length{{{NS},pod="a"}}': "0 2x30",
            f'sda_queue_length{{{NS},pod="b"}}': "0 2x30",
            'agones_gameservers_count{fleet_name="sd-webui",type="Ready"}': "0x31",
            'agones_gameservers_count{fleet_name="sd-webui",type="Allocated"}': "10x31",
        },
        firing_at=["12m", "30m"],
        quiet_at=["5m"],
    ),
    # Agones' metrics not scraped at all: the queue alone decides.
    "queue without Agones metrics": _case(
        "SdAllocatorNoReadyWebUI",
        {f'sda_queue_length{{{NS},pod="a"}}': "0 2x30"},
        firing_at=["12m"],
        quiet_at=["5m"],
    ),
    # A Ready GameServer (of our Fleet), or nobody waiting: quiet.
    "queue while a WebUI is Ready": _case(
        "SdAllocatorNoReadyWebUI",
        {
            f'sda_queue_length{{{NS},pod="a"}}': "0 2x30",
            'agones_gameservers_count{fleet_name="sd-webui",type="Ready"}': "1x31",
            'agones_gameservers_count{fleet_name="other-fleet",type="Ready"}': "0x31",
        },
        firing_at=[],
        quiet_at=["12m", "30m"],
    ),
    "no queue and no Ready WebUI": _case(
        "SdAllocatorNoReadyWebUI",
        {
            f'sda_queue_length{{{NS},pod="a"}}': "0x30",
            'agones_gameservers_count{fleet_name="sd-webui",type="Ready"}': "0x31",
        },
        firing_at=[],
        quiet_at=["12m", "30m"],
    ),
    # The last pass stays at time 0: older than 900 s from minute 15, firing 5 minutes later.
    "cruiser stopped": _case(
        "SdAllocatorCruiserNotRunning",
        {f'sda_cruise_last_pass_timestamp_seconds{{{NS},pod="a"}}': "0x40"},
        firing_at=["21m", "40m"],
        quiet_at=["10m", "18m"],
    ),
    # A pass every minute (the timestamp follows the clock): quiet.
    "cruiser running": _case(
        "SdAllocatorCruiserNotRunning",
        {f'sda_cruise_last_pass_timestamp_seconds{{{NS},pod="a"}}': "0+60x40"},
        firing_at=[],
        quiet_at=["21m", "40m"],
    ),
    "cruiser failing": _case(
        "SdAllocatorCruiserFailing",
        {f'sda_cruise_last_pass_failures{{{NS},pod="a"}}': "0 0 2x30"},
        firing_at=["18m"],
        quiet_at=["1m", "10m"],
    ),
    "cruiser failed once": _case(
        "SdAllocatorCruiserFailing",
        {f'sda_cruise_last_pass_failures{{{NS},pod="a"}}': "0 0 2 0x30"},
        firing_at=[],
        quiet_at=["18m"],
    ),
    # Half of all allocations fail (one a minute), and with enough of them: firing.
    "allocations failing": _case(
        "SdAllocatorAllocationsFailing",
        {
            f'sda_allocations_total{{{NS},pod="a",result="ok"}}': "0+1x30",
            f'sda_allocations_total{{{NS},pod="a",result="failed"}}': "0+1x30",
        },
        firing_at=["10m", "30m"],
        quiet_at=["3m"],
    ),
    # One failure among many: below both the share and the count.
    "one failed allocation": _case(
        "SdAllocatorAllocationsFailing",
        {
            f'sda_allocations_total{{{NS},pod="a",result="ok"}}': "0+1x30",
            f'sda_allocations_total{{{NS},pod="a",result="failed"}}': "0 1x30",
        },
        firing_at=[],
        quiet_at=["10m", "30m"],
    ),
    "allocator metrics gone": _case(
        "SdAllocatorMetricsAbsent",
        {f'up{{{NS},job="sd-allocator",pod="a"}}': "1 1 0x20"},
        firing_at=["13m"],
        quiet_at=["5m"],
    ),
    "allocator scraped": _case(
        "SdAllocatorMetricsAbsent",
        {f'up{{{NS},job="sd-allocator",pod="a"}}': "1x20"},
        firing_at=[],
        quiet_at=["13m"],
    ),
}


def test_the_cases_cover_every_alert() -> None:
    tested = {test["alertname"] for case in CASES.values() for test in case["alert_rule_test"]}
    assert tested == ALERTS


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_alerts_fire_when_they_should(
    groups: list[Obj], case: dict[str, Any], tmp_path: Path
) -> None:
    # Annotations hold $value, which each case would have to predict; their templates are
    # checked by test_promtool_accepts_the_rules.
    plain = copy.deepcopy(groups)
    for rule in rules_of(plain):
        rule.pop("annotations")
    write_rules(tmp_path / "rules.yaml", plain)
    tests = tmp_path / "tests.yaml"
    tests.write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [case]})
    )
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_pod_monitoring_scrapes_the_allocators_metrics_port_through_the_policy() -> None:
    objects = render(*ON)
    monitoring = one(objects, "PodMonitoring")["spec"]
    deployment = one(objects, "Deployment")["spec"]
    assert monitoring["selector"]["matchLabels"] == deployment["selector"]["matchLabels"]
    (container,) = deployment["template"]["spec"]["containers"]
    (endpoint,) = monitoring["endpoints"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert ports[endpoint["port"]] == int(env["SDA_METRICS_PORT"])
    # Managed Prometheus' collectors are pods in gmp-system: a rule must admit them.
    policy = one(objects, "NetworkPolicy", "sd-allocator-allocator")["spec"]
    admitted = [
        rule
        for rule in policy["ingress"]
        if {"port": ports[endpoint["port"]], "protocol": "TCP"} in rule["ports"]
        and any(
            source.get("namespaceSelector") == {}
            or source.get("namespaceSelector", {}).get("matchLabels")
            == {"kubernetes.io/metadata.name": "gmp-system"}
            for source in rule["from"]
        )
    ]
    assert admitted, "no ingress rule admits gmp-system on the metrics port"
