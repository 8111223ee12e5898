"""Warm WebUIs on a schedule: the FleetAutoscaler becomes an Agones Chain of Schedule entries
wrapping Buffer policies, then the plain buffer, and Agones would accept every one of them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.chart.render import Obj, one, render, render_error
from tests.fake_agones.schemas import pruned_fields, validation_errors

CRD = "fleetautoscalers.autoscaling"
OFFICE_HOURS = {
    "name": "office-hours",
    "cron": "30 8 * * 1-5",
    "duration": "10h",
    "buffer": 4,
}
LUNCH = {"name": "lunch", "cron": "0 12 * * *", "duration": "1h30m", "buffer": 6}
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def scheduled(tmp: Path, *entries: Obj, **fleet: Any) -> Obj:
    schedule = {"enabled": True, "timezone": "Europe/Berlin", "entries": list(entries)}
    return one(
        render(values={"fleet": {"schedule": schedule, **fleet}}, tmp=tmp), "FleetAutoscaler"
    )


def agones_refusals(policy: Obj, path: str = "policy") -> list[str]:
    """What Agones' validation of a FleetAutoscaler policy refuses, beyond its CRD schema:
    pkg/apis/autoscaling/v1/fleetautoscaler.go, ValidateBufferPolicy, ValidateSchedulePolicy
    (time.LoadLocation, cron.ParseStandard, no "TZ", time.ParseDuration) and
    ValidateChainPolicy (unique ids, one policy per entry)."""
    kind = policy["type"]
    if kind == "Buffer":
        buffer = policy["buffer"]
        size, low, high = buffer["bufferSize"], buffer.get("minReplicas", 0), buffer["maxReplicas"]
        assert isinstance(size, int), "the chart renders absolute buffers only"
        found = []
        if low > high:
            found.append(f"{path}: minReplicas should be smaller than maxReplicas")
        if size <= 0:
            found.append(f"{path}: bufferSize must be positive")
        if high < size:
            found.append(f"{path}: maxReplicas should be bigger than or equal to bufferSize")
        if low != 0 and low < size:
            found.append(f"{path}: minReplicas should be bigger than or equal to bufferSize")
        return found
    if kind == "Schedule":
        period = policy["schedule"].get("activePeriod", {})
        found = agones_refusals(policy["schedule"]["policy"], f"{path}.schedule.policy")
        if period.get("timezone"):
            ZoneInfo(period["timezone"])  # raises for an unknown zone, as LoadLocation fails
        cron = period.get("startCron", "")
        if cron and (len(cron.split()) != 5 or "TZ" in cron):
            found.append(f"{path}: invalid startCron {cron!r}")
        if period.get("duration") and not GO_DURATION.match(period["duration"]):
            found.append(f"{path}: invalid duration {period['duration']!r}")
        return found
    assert kind == "Chain", kind
    ids = [entry["id"] for entry in policy["chain"]]
    found = [f"{path}: id of chain entry must be unique"] if len(set(ids)) != len(ids) else []
    for entry in policy["chain"]:
        found += agones_refusals(entry, f"{path}.chain[{entry['id']}]")
    return found


def test_without_a_schedule_the_autoscaler_keeps_one_buffer() -> None:
    autoscaler = one(render(), "FleetAutoscaler")
    assert autoscaler["spec"]["policy"] == {
        "type": "Buffer",
        "buffer": {"bufferSize": 1, "minReplicas": 1, "maxReplicas": 10},
    }
    assert agones_refusals(autoscaler["spec"]["policy"]) == []


def test_each_window_is_a_schedule_entry_and_the_plain_buffer_comes_last(
    tmp_path: Path,
) -> None:
    autoscaler = scheduled(tmp_path, OFFICE_HOURS, LUNCH, buffer=2, minReplicas=2)
    policy = autoscaler["spec"]["policy"]
    assert policy["type"] == "Chain"
    office, lunch, default = policy["chain"]
    assert office == {
        "id": "office-hours",
        "type": "Schedule",
        "schedule": {
            "activePeriod": {
                "timezone": "Europe/Berlin",
                "startCron": "30 8 * * 1-5",
                "duration": "10h",
            },
            "policy": {
                "type": "Buffer",
                "buffer": {"bufferSize": 4, "minReplicas": 4, "maxReplicas": 10},
            },
        },
    }
    assert lunch["id"] == "lunch" and lunch["schedule"]["activePeriod"]["duration"] == "1h30m"
    assert lunch["schedule"]["policy"]["buffer"]["bufferSize"] == 6
    # No window open: the plain buffer, as without a schedule. No `between`: always eligible.
    assert default == {
        "id": "default",
        "type": "Buffer",
        "buffer": {"bufferSize": 2, "minReplicas": 2, "maxReplicas": 10},
    }
    assert "between" not in office["schedule"]


def test_the_chain_passes_the_v1_60_crd_schema_and_agones_own_validation(
    tmp_path: Path,
) -> None:
    autoscaler = scheduled(tmp_path, OFFICE_HOURS, LUNCH)
    assert validation_errors(CRD, autoscaler) == []
    assert pruned_fields(CRD, autoscaler) == [], "fields the API server would silently drop"
    assert agones_refusals(autoscaler["spec"]["policy"]) == []


def test_an_entry_keeps_a_higher_fleet_minimum(tmp_path: Path) -> None:
    # minReplicas rises to the entry's buffer (Agones refuses less) but never falls below
    # the Fleet's own minimum.
    autoscaler = scheduled(tmp_path, OFFICE_HOURS, minReplicas=6, buffer=1)
    office, default = autoscaler["spec"]["policy"]["chain"]
    assert office["schedule"]["policy"]["buffer"]["minReplicas"] == 6
    assert default["buffer"]["minReplicas"] == 6
    assert agones_refusals(autoscaler["spec"]["policy"]) == []


def test_the_agones_mirror_catches_what_agones_would_refuse() -> None:
    bad = {
        "type": "Chain",
        "chain": [
            {
                "id": "a",
                "type": "Schedule",
                "schedule": {
                    "activePeriod": {"startCron": "CRON_TZ=UTC 0 8 * * *", "duration": "10 hours"},
                    "policy": {
                        "type": "Buffer",
                        "buffer": {"bufferSize": 4, "minReplicas": 1, "maxReplicas": 3},
                    },
                },
            },
            {"id": "a", "type": "Buffer", "buffer": {"bufferSize": 0, "maxReplicas": 3}},
        ],
    }
    assert len(agones_refusals(bad)) == 6


def _entry(**changes: Any) -> Obj:
    return {**OFFICE_HOURS, **changes}


BAD_SCHEDULES: dict[str, tuple[Obj, str]] = {
    "no time zone": ({"timezone": ""}, "/fleet/schedule/timezone"),
    "time zone shape": ({"timezone": "Berlin time"}, "/fleet/schedule/timezone"),
    "no entries": ({"entries": []}, "/fleet/schedule/entries"),
    "CRON_TZ prefix": (
        {"entries": [_entry(cron="CRON_TZ=Europe/Berlin 30 8 * * 1-5")]},
        "/fleet/schedule/entries/0/cron",
    ),
    "six cron fields": ({"entries": [_entry(cron="0 30 8 * * 1-5")]}, "/entries/0/cron"),
    "duration in words": ({"entries": [_entry(duration="10 hours")]}, "/entries/0/duration"),
    "duration without unit": ({"entries": [_entry(duration="600")]}, "/entries/0/duration"),
    "zero buffer": ({"entries": [_entry(buffer=0)]}, "/entries/0/buffer"),
    "percent buffer": ({"entries": [_entry(buffer="50%")]}, "/entries/0/buffer"),
    "name shape": ({"entries": [_entry(name="Office Hours")]}, "/entries/0/name"),
    "the default's name": ({"entries": [_entry(name="default")]}, '"default" names the plain'),
    "same name twice": (
        {"entries": [_entry(), _entry(cron="0 20 * * *")]},
        '"office-hours" is used twice',
    ),
    "buffer above max": (
        {"entries": [_entry(buffer=11)]},
        '"office-hours": buffer (11) must be at most fleet.maxReplicas (10)',
    ),
    "unknown field": ({"entries": [_entry(startCron="30 8 * * *")]}, "'startCron' not allowed"),
}


@pytest.mark.parametrize("change,expected", BAD_SCHEDULES.values(), ids=BAD_SCHEDULES.keys())
def test_bad_schedules_are_refused_with_the_field_named(
    tmp_path: Path, change: Obj, expected: str
) -> None:
    schedule = {"enabled": True, "timezone": "Europe/Berlin", "entries": [OFFICE_HOURS], **change}
    assert expected in render_error(values={"fleet": {"schedule": schedule}}, tmp=tmp_path)


def test_a_disabled_schedule_needs_no_time_zone() -> None:
    autoscaler = one(render("fleet.schedule.timezone="), "FleetAutoscaler")
    assert autoscaler["spec"]["policy"]["type"] == "Buffer"
