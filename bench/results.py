"""The results of a run as plain JSON data, and what they mean: ratios and goals (brief §6).

Everything after measuring works on this JSON form, so BENCHMARKS.md can be re-rendered from
bench/results/latest.json without measuring again.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from bench.allocation import AllocationResults, Step
from bench.allocation import percentile as allocation_percentile
from bench.clients import BASELINE, ClientsResults
from bench.cruise import CruiseResult
from bench.memory import MemoryResult
from bench.pictures import PicturesResult
from bench.pictures import to_json as _pictures_to_json
from bench.scarcity import OURS, PREDECESSOR, ScarcityResults
from bench.scarcity import to_json as _scarcity_to_json
from bench.throughput import ThroughputResults

Json = dict[str, Any]

SCHEMA = 1
THROUGHPUT_FACTOR = 1.5  # allocator req/s >= 1.5 x configurable-http-proxy
RSS_LIMIT = 200_000_000  # bytes, with 10 000 sessions and 1 000 WebSockets
UPLOAD_GROWTH_LIMIT = 50_000_000  # bytes, during a 1 GiB upload
IAP_FACTOR = 0.9  # iap identity keeps >= 90 % of header identity's throughput
ALLOCATION_OVERHEAD_LIMIT_MS = 50.0  # allocator p99 - the API's own p99
ALLOCATION_PEOPLE = 50  # ... with this many people allocating at once
ALLOCATION_API_MS = 5.0  # ... and the API answering after this many ms
KNOWN_FACTOR = 2.0  # a known person's p99 during the storm, times its p99 without one
KNOWN_CONNECTIONS = 8

CRUISE_LIMIT_SECONDS = 1.0  # one pass over 100 000 sessions with 1 % idle
CRUISE_SESSIONS = 100_000
SCARCITY_PEOPLE, SCARCITY_GPUS = 30, 6

PICTURES_COUNT = 10_000  # pictures in one person's folder
PICTURES_PAGE_LIMIT_MS = 100.0  # ... and a page of them lists in less
ZIP_GROWTH_LIMIT = 50_000_000  # bytes of RSS growth while the zip of all streams

SCENARIOS = (
    "throughput",
    "memory",
    "clients",
    "allocation",
    "cruise",
    "scarcity",
    "pictures",
    "kubeclients",
)

MET, NOT_MET, NOT_MEASURED = "met", "NOT met", "not measured"


def throughput_json(results: ThroughputResults) -> Json:
    contestants: Json = {}
    for name, contestant in results.contestants.items():
        runs: Json = {}
        for method, measurement in contestant.runs.items():
            result = measurement.result
            runs[method] = {
                **asdict(result),
                "errors": result.errors,
                "flagged": result.flagged,
                "cpu_percent": measurement.cpu_percent,
                "rps_of_rounds": [m.result.rps for m in contestant.rounds[method]],
            }
        contestants[name] = {
            "description": contestant.description,
            "missing": contestant.missing,
            "runs": runs,
        }
    return {"load": asdict(results.load), "contestants": contestants}


def memory_json(results: dict[str, MemoryResult]) -> Json:
    out: Json = {}
    for name, result in results.items():
        entry = asdict(result)
        if result.upload is not None:
            entry["upload"]["growth"] = result.upload.growth
        out[name] = entry
    return out


def clients_json(results: ClientsResults) -> Json:
    clients: Json = {}
    for name, result in results.clients.items():
        clients[name] = {
            "description": result.description,
            "missing": result.missing,
            **(asdict(result.measured) if result.measured else {}),
        }
    load = asdict(results.load)
    load["warmup"] = {name: results.load.warmup(name) for name in results.clients}
    return {"load": load, "clients": clients}


def _known_json(latencies: list[float]) -> Json | None:
    if not latencies:
        return None
    return {
        "p50": round(allocation_percentile(latencies, 50), 2),
        "p99": round(allocation_percentile(latencies, 99), 2),
        "requests": len(latencies),
    }


def known_person(data: Json, via: str = "known") -> Json | None:
    """Medians over the rounds of the known person's p99, alone and during the storm; `via`
    "webui": the same client straight to a WebUI, without the allocator."""
    rounds = (data.get("allocation") or {}).get("rounds", [])
    rounds = [r for r in rounds if r.get(f"{via}_storm")]
    if not rounds:
        return None
    alone = statistics.median(r[f"{via}_alone"]["p99"] for r in rounds)
    storm = statistics.median(r[f"{via}_storm"]["p99"] for r in rounds)
    return {
        "alone_p99": round(alone, 2),
        "storm_p99": round(storm, 2),
        "factor": round(storm / alone, 2) if alone else None,
        "storm_requests": [r[f"{via}_storm"]["requests"] for r in rounds],
        "rounds": len(rounds),
    }


def known_goal(data: Json) -> Json:
    goal = (
        f"a known person's p99 during the {ALLOCATION_PEOPLE}-person storm <= "
        f"{KNOWN_FACTOR:g}x its p99 without it ({KNOWN_CONNECTIONS} connections)"
    )
    found = known_person(data)
    if found is None or found["factor"] is None:
        return _goal(goal, NOT_MEASURED, "allocation scenario not run with a known person")
    detail = (
        f"{found['factor']:.2f}x ({found['storm_p99']:.2f} vs {found['alone_p99']:.2f} ms; "
        f"median of {found['rounds']} rounds, "
        f"{', '.join(map(str, found['storm_requests']))} requests during each storm)"
    )
    control = known_person(data, via="webui")
    if control is not None and control["factor"] is not None:
        detail += f"; straight to a WebUI, no allocator: {control['factor']:.2f}x"
    return _goal(goal, MET if found["factor"] <= KNOWN_FACTOR else NOT_MET, detail)


def _step_json(step: Step) -> Json:
    return {
        "p50": round(step.percentile(50), 2),
        "p99": round(step.percentile(99), 2),
        "max": round(max(step.latencies_ms), 2),
        "latencies_ms": sorted(round(ms, 2) for ms in step.latencies_ms),
        "api_requests": step.api_requests,
        "seconds": step.seconds,
        "cpu_ms": step.cpu_ms,
    }


def allocation_json(results: AllocationResults) -> Json:
    return {
        "load": {**asdict(results.load), "replicas": results.load.replicas},
        "description": results.description,
        "missing": results.missing,
        "failed": results.failed,
        "rounds": [
            {
                "api": _step_json(r.api),
                "allocator": _step_json(r.allocator),
                "known_alone": _known_json(r.known_alone),
                "known_storm": _known_json(r.known_storm),
                "webui_alone": _known_json(r.webui_alone),
                "webui_storm": _known_json(r.webui_storm),
            }
            for r in results.rounds
        ],
        # Medians over the rounds of each round's percentile.
        "api_ms": {"p50": results.median("api", 50), "p99": results.median("api", 99)},
        "allocator_ms": {
            "p50": results.median("allocator", 50),
            "p99": results.median("allocator", 99),
        },
    }


def cruise_json(result: CruiseResult) -> Json:
    return {**asdict(result), "speedup": result.speedup}


def scarcity_json(results: ScarcityResults) -> Json:
    return _scarcity_to_json(results)


def pictures_json(result: PicturesResult) -> Json:
    return _pictures_to_json(result)


def pictures_goals(data: Json) -> list[Json]:
    page_goal = "10 000 pictures: a page lists in < 100 ms"  # PICTURES_COUNT, ..._LIMIT_MS
    zip_goal = f"download all: the zip streams with RSS growth < {ZIP_GROWTH_LIMIT / 1e6:g} MB"
    part: Json | None = data.get("pictures")
    if not part:
        why = "pictures scenario not run"
        return [_goal(page_goal, NOT_MEASURED, why), _goal(zip_goal, NOT_MEASURED, why)]
    cold, warm = part["cold_ms"], part["warm_ms"]
    worst = max(cold["max"], warm["p99"])
    detail = (
        f"walking the folder (no kept listing): p50 {cold['p50']:.1f}, max {cold['max']:.1f} ms; "
        f"paging: p50 {warm['p50']:.2f}, p99 {warm['p99']:.2f} ms "
        f"({part['load']['page_size']} a page)"
    )
    if part["load"]["pictures"] < PICTURES_COUNT:
        page = _goal(page_goal, NOT_MEASURED, detail + f" ({part['load']['pictures']:,})")
    else:
        page = _goal(page_goal, MET if worst < PICTURES_PAGE_LIMIT_MS else NOT_MET, detail)
    zipped = part["zip"]
    growth = zipped["rss_growth"]
    detail = (
        f"+{growth / 1e6:.1f} MB for a {zipped['bytes'] / 2**20:,.0f} MiB zip "
        f"({zipped['bytes'] / 2**20 / zipped['seconds']:,.0f} MiB/s)"
    )
    return [page, _goal(zip_goal, MET if growth < ZIP_GROWTH_LIMIT else NOT_MET, detail)]


def scarcity_goal(data: Json) -> Json:
    goal = (
        f"scarcity ({SCARCITY_PEOPLE} people, {SCARCITY_GPUS} GPUs, compressed time): nobody "
        "served out of order, no busy session reclaimed"
    )
    part: Json | None = data.get("scarcity")
    if not part:
        return _goal(goal, NOT_MEASURED, "scarcity scenario not run")
    ours, theirs = part["policies"][OURS], part["policies"][PREDECESSOR]
    detail = (
        f"{ours['out_of_order']} out of order, {ours['busy_reclaimed']} busy reclaimed; "
        f"{ours['gpu_seconds_per_served']} GPU-s per person served vs "
        f"{theirs['gpu_seconds_per_served']} under the predecessor's policy (simulated)"
    )
    if part["problems"]:
        return _goal(goal, NOT_MET, detail + "; " + "; ".join(part["problems"]))
    load = part["load"]
    if load["people"] != SCARCITY_PEOPLE or load["gpus"] != SCARCITY_GPUS:
        changed = f" ({load['people']} people, {load['gpus']} GPUs)"
        return _goal(goal, NOT_MEASURED, detail + changed)
    ok = ours["out_of_order"] == 0 and ours["busy_reclaimed"] == 0
    return _goal(goal, MET if ok else NOT_MET, detail)


def cruise_goal(data: Json) -> Json:
    goal = (
        f"cruiser: one pass over {CRUISE_SESSIONS:,} sessions with 1 % idle "
        f"<= {CRUISE_LIMIT_SECONDS:g} s"
    )
    part: Json | None = data.get("cruise")
    if not part:
        return _goal(goal, NOT_MEASURED, "cruise scenario not run")
    detail = (
        f"{part['pass_seconds']:.2f} s for {part['reclaimed']} releases "
        f"({part['dry_run_seconds']:.2f} s without them); predecessor's scan "
        f"{part['predecessor_seconds']:.2f} s ({part['speedup']:.1f}x slower)"
    )
    if part["sessions"] != CRUISE_SESSIONS or part["idle"] != CRUISE_SESSIONS // 100:
        return _goal(goal, NOT_MEASURED, detail + f" ({part['sessions']:,} sessions)")
    ok = part["pass_seconds"] <= CRUISE_LIMIT_SECONDS
    return _goal(goal, MET if ok else NOT_MET, detail)


def allocation_overhead(data: Json) -> Json | None:
    """Allocator minus API, at p50 and p99 (medians over rounds) and per round's p99."""
    part: Json = data.get("allocation") or {}
    if not part.get("rounds") or part.get("failed"):
        return None
    api, alloc = part["api_ms"], part["allocator_ms"]
    return {
        "p50": round(alloc["p50"] - api["p50"], 2),
        "p99": round(alloc["p99"] - api["p99"], 2),
        "p99_of_rounds": [
            round(r["allocator"]["p99"] - r["api"]["p99"], 2) for r in part["rounds"]
        ],
    }


def carry_over(data: Json, previous: Json) -> Json:
    """A partial run's results plus the scenarios it did not measure, taken from `previous`
    (with the date and load of the run that measured them, under `carried_over`)."""
    carried: Json = {}
    for name in SCENARIOS:
        if data.get(name) is not None or previous.get(name) is None:
            continue
        data[name] = previous[name]
        earlier = previous.get("carried_over", {}).get(name)
        carried[name] = earlier or {
            key: previous["machine"][key] for key in ("date", "load_average", "busy_before_percent")
        }
    if "memory" in carried and "memory" in previous.get("settings", {}):
        data["settings"]["memory"] = previous["settings"]["memory"]
    if carried:
        data["carried_over"] = carried
    return data


def client_ratios(data: Json) -> Json:
    """Per client: req/s and CPU per request relative to aiohttp (None where not measured)."""
    clients: Json = (data.get("clients") or {}).get("clients", {})
    base = clients.get(BASELINE)
    out: Json = {}
    for name, entry in clients.items():
        out[name] = {"rps": None, "cpu_per_request": None}
        if not base or base.get("missing") or entry.get("missing"):
            continue
        out[name] = {
            "rps": _ratio(entry["rps"], base["rps"]),
            "cpu_per_request": _ratio(entry["cpu_us_per_request"], base["cpu_us_per_request"]),
        }
    return out


def _ratio(value: float, base: float) -> float | None:
    return round(value / base, 3) if base else None


def _run(data: Json, name: str, method: str) -> Json | None:
    throughput = data.get("throughput") or {}
    contestant = throughput.get("contestants", {}).get(name)
    if not contestant or contestant.get("missing"):
        return None
    run: Json | None = contestant["runs"].get(method)
    return run


def ratios(data: Json) -> Json:
    """Per method: throughput ratios and p99 of each proxy (None where not measured)."""
    out: Json = {}
    for method in ("GET", "POST"):
        names = ("nginx", "chp", "allocator", "allocator-iap")
        runs = {name: _run(data, name, method) for name in names}

        def ratio(a: str, b: str, runs: dict[str, Json | None] = runs) -> float | None:
            x, y = runs[a], runs[b]
            return round(x["rps"] / y["rps"], 3) if x and y and y["rps"] else None

        out[method] = {
            "allocator/chp": ratio("allocator", "chp"),
            "allocator/nginx": ratio("allocator", "nginx"),
            "chp/nginx": ratio("chp", "nginx"),
            "iap/header": ratio("allocator-iap", "allocator"),
            "p99_ms": {
                name: run["latency_ms"]["p99"] if run else None for name, run in runs.items()
            },
        }
    return out


def _goal(goal: str, status: str, detail: str) -> Json:
    return {"goal": goal, "status": status, "detail": detail}


def allocation_goal(data: Json) -> Json:
    goal = (
        f"allocation: p99 <= {ALLOCATION_OVERHEAD_LIMIT_MS:g} ms above the API's own p99 "
        f"({ALLOCATION_PEOPLE} people at once, API {ALLOCATION_API_MS:g} ms)"
    )
    part: Json | None = data.get("allocation")
    if not part:
        return _goal(goal, NOT_MEASURED, "allocation scenario not run")
    if part.get("failed"):
        return _goal(goal, NOT_MET, f"wrong answers: {part['failed']}")
    overhead = data.get("allocation_overhead") or allocation_overhead(data)
    if part.get("missing") or overhead is None:
        return _goal(goal, NOT_MEASURED, part.get("missing") or "no round measured")
    load = part["load"]
    api, alloc = part["api_ms"], part["allocator_ms"]
    detail = (
        f"{overhead['p99']:+.2f} ms (allocator {alloc['p99']:.2f} vs API {api['p99']:.2f} ms; "
        f"p50 {overhead['p50']:+.2f} ms; median of {len(part['rounds'])} rounds)"
    )
    if load["people"] != ALLOCATION_PEOPLE or load["api_latency_ms"] != ALLOCATION_API_MS:
        changed = f" ({load['people']} people, API {load['api_latency_ms']:g} ms)"
        return _goal(goal, NOT_MEASURED, detail + changed)
    ok = overhead["p99"] <= ALLOCATION_OVERHEAD_LIMIT_MS
    return _goal(goal, MET if ok else NOT_MET, detail)


def iap_goals(data: Json) -> list[Json]:
    out = []
    found = data.get("ratios") or ratios(data)
    for method in ("GET", "POST"):
        goal = f"{method}: iap identity keeps >= {IAP_FACTOR:.0%} of header identity's req/s"
        header, iap = _run(data, "allocator", method), _run(data, "allocator-iap", method)
        if not header or not iap:
            out.append(_goal(goal, NOT_MEASURED, "allocator or allocator-iap not measured"))
            continue
        factor = found[method]["iap/header"]
        detail = f"{factor:.1%} ({iap['rps']:,.0f} vs {header['rps']:,.0f} req/s)"
        out.append(_goal(goal, MET if factor >= IAP_FACTOR else NOT_MET, detail))
    return out


def goals(data: Json) -> list[Json]:
    return [
        *_proxy_goals(data),
        *iap_goals(data),
        allocation_goal(data),
        known_goal(data),
        cruise_goal(data),
        scarcity_goal(data),
        *pictures_goals(data),
    ]


def _proxy_goals(data: Json) -> list[Json]:
    out: list[Json] = []
    found = data.get("ratios") or ratios(data)
    for method in ("GET", "POST"):
        alloc, chp = _run(data, "allocator", method), _run(data, "chp", method)
        rps_goal = f"{method}: allocator throughput >= {THROUGHPUT_FACTOR}x CHP"
        p99_goal = f"{method}: allocator p99 <= CHP p99"
        if not alloc or not chp:
            if not data.get("throughput"):
                why = "throughput scenario not run"
            else:
                why = "allocator not measured" if not alloc else "CHP not measured"
            out += [_goal(rps_goal, NOT_MEASURED, why), _goal(p99_goal, NOT_MEASURED, why)]
            continue
        flagged = alloc["flagged"] or chp["flagged"]
        suffix = " (run had errors)" if flagged else ""
        factor = found[method]["allocator/chp"]
        ok = factor >= THROUGHPUT_FACTOR and not flagged
        out.append(_goal(rps_goal, MET if ok else NOT_MET, f"{factor:.2f}x{suffix}"))
        a99, c99 = alloc["latency_ms"]["p99"], chp["latency_ms"]["p99"]
        ok = a99 <= c99 and not flagged
        out.append(_goal(p99_goal, MET if ok else NOT_MET, f"{a99:.2f} vs {c99:.2f} ms{suffix}"))

    memory = (data.get("memory") or {}).get("allocator")
    rss_goal = "RSS <= 200 MB with 10 000 sessions and 1 000 WebSockets"
    upload_goal = "1 GiB upload streams through with RSS growth < 50 MB"
    if not memory or memory.get("missing"):
        why = memory["missing"] if memory else "memory scenario not run"
        return [*out, _goal(rss_goal, NOT_MEASURED, why), _goal(upload_goal, NOT_MEASURED, why)]
    settings = data.get("settings", {}).get("memory", {})
    sessions, sockets = memory["sessions"], memory["websockets"]
    complete = (
        sessions["ok"] >= 10_000
        and sockets["ok"] >= 1_000
        and settings.get("sessions", 0) >= 10_000
        and settings.get("websockets", 0) >= 1_000
    )
    rss = memory["rss"]["websockets"]
    detail = f"{rss / 1e6:.1f} MB with {sessions['ok']} sessions and {sockets['ok']} WebSockets"
    status = (MET if rss <= RSS_LIMIT else NOT_MET) if complete else NOT_MEASURED
    out.append(_goal(rss_goal, status, detail + ("" if complete else " (reduced sizes)")))
    upload = memory["upload"]
    detail = (
        f"+{upload['growth'] / 1e6:.1f} MB; origin received {upload['received']:,} of "
        f"{upload['sent']:,} bytes"
    )
    if upload["growth"] >= UPLOAD_GROWTH_LIMIT or upload["received"] != upload["sent"]:
        status = NOT_MET
    elif upload["sent"] < 1 << 30:
        status, detail = NOT_MEASURED, detail + " (reduced size)"
    else:
        status = MET
    out.append(_goal(upload_goal, status, detail))
    return out


def summarize(data: Json) -> Json:
    """Add ratios and goal verdicts to a results document."""
    data["ratios"] = ratios(data)
    data["client_ratios"] = client_ratios(data)
    data["allocation_overhead"] = allocation_overhead(data)
    data["goals"] = goals(data)
    return data
