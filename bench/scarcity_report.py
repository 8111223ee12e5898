"""The scarcity scenario in the console and in BENCHMARKS.md (from the results' JSON form)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.scarcity_script import SCALE

Json = dict[str, Any]
Table = Callable[[list[str], list[list[str]], bool], str]

HEADERS = [
    "policy",
    "GPU-seconds paid",
    "served (of arrived)",
    "wait p50 / p95 / max, s",
    "still waiting at the end",
    "served out of order",
    "busy reclaimed",
    "GPU-s per served person",
    "GPU-s after people left",
    "taken during a pause",
]


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _row(name: str, f: Json) -> list[str]:
    waits = " / ".join(_seconds(f[k]) for k in ("wait_p50", "wait_p95", "wait_max"))
    still = str(f["still_waiting"])
    if f["still_waiting"]:
        still += f" (longest {_seconds(f['longest_unserved'])} s so far)"
    return [
        name,
        f"{f['gpu_seconds']:,.0f}",
        f"{f['served']} of {f['arrived']}",
        waits,
        still,
        str(f["out_of_order"]),
        str(f["busy_reclaimed"]),
        _seconds(f["gpu_seconds_per_served"]),
        f"{f['gpu_seconds_after_leaving']:,.0f}",
        str(f["reclaimed_in_pause"]),
    ]


def table(data: Json, render: Table, markdown: bool = False) -> str:
    policies: Json = data["scarcity"]["policies"]
    rows = [_row(name, found) for name, found in policies.items()]
    return render(HEADERS, rows, markdown)


def comparison(data: Json) -> str | None:
    """One sentence: GPU-seconds per served person, ours against the predecessor's."""
    policies: Json = data["scarcity"]["policies"]
    ours, theirs = policies.get("ours"), policies.get("predecessor (simulated)")
    if not ours or not theirs:
        return None
    mine, other = ours["gpu_seconds_per_served"], theirs["gpu_seconds_per_served"]
    if not mine or not other:
        return None
    return (
        f"GPU-seconds per person served: {mine:.1f} (ours) against {other:.1f} (the "
        f"predecessor's policy), {other / mine:.2f}x; {ours['served']} people served against "
        f"{theirs['served']}, {ours['out_of_order']} against {theirs['out_of_order']} out of "
        "order."
    )


def evidence(data: Json) -> list[str]:
    """Whatever went wrong for a person in the real run, one line each."""
    part: Json = data["scarcity"]
    found: Json = part["evidence"]
    labels = {
        "out_of_order": "served out of order",
        "busy_reclaimed": "busy WebUI taken away",
        "wrong_webui": "someone else's WebUI answered",
        "odd": "unexpected answer",
    }
    lines = [f"problem: {p}" for p in part["problems"]]
    for key, label in labels.items():
        lines += [f"{label}: {item}" for item in found.get(key, [])]
    return lines


def method(data: Json) -> str:
    part: Json = data["scarcity"]
    load, shape, plan = part["load"], part["shape"], part["script"]
    lines = [
        f"{load['people']} people, {load['gpus']} GPUs, {load['seconds']:g} s, seed "
        f"{load['seed']} (`--scarcity-seed`, `--scarcity-seconds`); time compressed 45-fold "
        "(an idle timeout of 15 min becomes 20 s, and everything else alike).",
        "",
        "- **Script** (bench/scarcity_script.py), the same for every policy: arrivals are a "
        f"Poisson process whose rate falls linearly to zero over {shape['arrival_window']:g} s "
        "(half of the people in its first 30 %), so demand exceeds the GPUs for most of the "
        f"run ({sum(plan['planned_seconds']):,.0f} s of planned sessions for "
        f"{load['gpus'] * load['seconds']:,.0f} GPU-seconds). Each person works "
        f"{shape['session_min']:g} to {shape['session_max']:g} s in bursts of "
        f"{shape['steps'][0]} to {shape['steps'][1]} requests, page loads and generations "
        f"({plan['generations']}, of which {plan['long_generations']} last "
        f"{shape['long_generation'][0]:g} to {shape['long_generation'][1]:g} s, longer than "
        "the pressure timeout), with pauses between bursts (of them "
        f"{plan['long_pauses']} last {shape['long_pause'][0]:g} to {shape['long_pause'][1]:g} "
        f"s, also longer); then {plan['releasing']} give the WebUI back and the others walk "
        "away.",
        "- **Ours, for real**: two `sd-allocator serve` replicas (local backend sharing one "
        "slot registry, so 6 WebUIs machine-wide; one redis-server; every request to either "
        "replica at random), each WebUI a stand-in process (bench/scarcity_webui.py) whose "
        "`/work?seconds=N` keeps it busy; `SDA_IDLE_TIMEOUT="
        f"{load['idle_timeout']:g}`, `SDA_PRESSURE_IDLE_TIMEOUT={load['pressure_timeout']:g}`, "
        f"`SDA_CRUISE_INTERVAL={load['cruise_interval']:g}`, `SDA_ACTIVITY_INTERVAL="
        f"{load['activity_interval']:g}`, `SDA_BUSY_AFTER={load['busy_after']:g}`. People "
        "without a WebUI load a page, then ask `/_allocator/status` every 3 s as the queue "
        "page does; during a generation they poll `/internal/progress` (idle-exempt) every "
        "second, so only the busy lease keeps a long generation's WebUI.",
        "- **Predecessor, simulated** (bench/scarcity_sim.py, a discrete-event simulation of "
        "the same script): no queue, the “all GPUs busy” page refreshes every 10 s scaled "
        "(0.22 s) and whoever's refresh lands first after a GPU frees gets it; a fixed idle "
        "timeout (20 s); a cruiser every 5 min scaled (6.7 s); no pressure timeout; a busy "
        "WebUI never reclaimed. Its refresh is scaled while our 3 s poll is not, which "
        "favours it. The same simulator with our policy (`ours (simulated)`: a queue served "
        "in order at once, the pressure timeout checked every second) shows how close it "
        "comes to the real run. In both simulations a WebUI answers "
        f"{part['startup_seconds']:.2f} s after it is handed out (the real run's median for "
        "people who found a GPU free).",
        "- **Figures**: GPU-seconds paid = each WebUI's life from its start to its stop (or "
        "the end of the run), as the stand-ins recorded them. Wait = from a person's first "
        "request on arrival to their own WebUI answering; over the people each policy served, "
        "so the policies' percentiles describe different groups (those still waiting at the "
        "end are counted apart). Served out of order = people whose WebUI started while "
        "someone already told to wait before this person's first request was sent still had "
        "none (theirs started more than 1 s later, beyond one dispatcher turn, or never). "
        "Busy reclaimed = requests in the middle of a burst that found the WebUI gone, "
        "generations broken off, and first requests after a pause whose WebUI recorded that "
        "it was stopped in the middle of a generation while that very request was under way "
        "(the allocator answers such a request with a “your WebUI stopped” 503, so only the "
        "stand-in's own record tells it from a reclaim during the pause), plus any such stop "
        "no person saw. Taken during a pause = the other WebUIs reclaimed while their person "
        "paused between bursts (they queued again, then went on). GPU-s after people left = "
        "paid after the person had given the WebUI back or walked away.",
    ]
    return "\n".join(lines)


def pause_cost(data: Json) -> str | None:
    """One sentence: what the pressure timeout cost the people who paused."""
    ours: Json | None = data["scarcity"]["policies"].get("ours")
    if not ours or not ours["reclaimed_in_pause"]:
        return None
    pressure = data["scarcity"]["load"]["pressure_timeout"]
    return (
        f"The price of the pressure timeout: {ours['reclaimed_in_pause']} times a person "
        f"pausing longer than {pressure:g} s ({pressure / SCALE / 60:g} min unscaled) while "
        "others waited lost their WebUI and queued again."
    )
