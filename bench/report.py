"""Showing results: the machine they were measured on, a console table, BENCHMARKS.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
from importlib import metadata
from pathlib import Path

import psutil

from bench import kube_clients, scarcity_report
from bench.results import KNOWN_CONNECTIONS, NOT_MEASURED, Json, known_person

LABELS = {
    "origin": "origin direct",
    "nginx": "nginx",
    "chp": "CHP",
    "allocator": "allocator",
    "allocator-iap": "allocator (iap)",
}
CLIENT_LABELS = {
    "aiohttp": "aiohttp ClientSession",
    "httpx": "httpx AsyncClient",
    "upstream": "UpstreamPool (allocator)",
}


def machine() -> Json:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        # How busy the machine was just before measuring (other programs compete for CPU).
        "busy_before_percent": psutil.cpu_percent(interval=2),
    }


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("sd-allocator", "aiohttp", "uvicorn", "uvloop", "httptools", "httpx"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}%"


def _helpers(cpu: dict[str, float]) -> str:
    """CPU of processes that serve the proxy (the allocator's Redis), as ` +N% name`."""
    known = {"proxy", "origin", "wrk", "other", "machine"}
    return "".join(f" +{v:.0f}% {k}" for k, v in cpu.items() if k not in known)


def throughput_table(data: Json, markdown: bool = False) -> str:
    headers = ["proxy", "method", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "errors"]
    headers += ["CPU proxy", "origin", "wrk", "other"]
    rows: list[list[str]] = []
    for name, contestant in data["throughput"]["contestants"].items():
        label = LABELS.get(name, name)
        if contestant["missing"]:
            rows.append([label, "—", "missing", *["—"] * 9])
            continue
        for method, run in contestant["runs"].items():
            lat, cpu = run["latency_ms"], run["cpu_percent"]
            errors = f"{run['errors']} FLAGGED" if run["flagged"] else "0"
            rows.append(
                [
                    label,
                    method,
                    f"{run['rps']:,.0f}",
                    _ms(lat.get("p50")),
                    _ms(lat.get("p90")),
                    _ms(lat.get("p99")),
                    _ms(lat.get("p99.9")),
                    errors,
                    _percent(cpu.get("proxy")) + _helpers(cpu),
                    *(_percent(cpu.get(part)) for part in ("origin", "wrk", "other")),
                ]
            )
    return _table(headers, rows, markdown)


def missing_notes(data: Json) -> list[str]:
    notes = []
    allocation: Json = data.get("allocation") or {}
    if allocation.get("missing"):
        notes.append(f"allocation: {allocation['missing']}")
    for section in ("throughput", "memory", "clients"):
        part: Json = data.get(section) or {}
        entries: Json = part.get(_ENTRIES[section], {}) if section in _ENTRIES else part
        labels = CLIENT_LABELS if section == "clients" else LABELS
        for name, entry in entries.items():
            if entry.get("missing"):
                notes.append(f"{section}, {labels.get(name, name)}: {entry['missing']}")
    return notes


_ENTRIES = {"throughput": "contestants", "clients": "clients"}


def ratio_lines(data: Json) -> list[str]:
    lines = []
    for method, found in data["ratios"].items():
        parts = []
        for key in ("allocator/chp", "allocator/nginx", "chp/nginx"):
            value = found[key]
            parts.append(f"{key} {'—' if value is None else f'{value:.2f}x'}")
        p99 = ", ".join(f"{LABELS[k]} {_ms(v)}" for k, v in found["p99_ms"].items())
        lines.append(f"{method}: throughput " + ", ".join(parts) + f"; p99 ms: {p99}")
    return lines


def _runs(data: Json) -> list[tuple[str, str, Json]]:
    throughput = data.get("throughput") or {}
    return [
        (name, method, run)
        for name, contestant in throughput.get("contestants", {}).items()
        for method, run in contestant["runs"].items()
    ]


def observations(data: Json) -> list[str]:
    """Plain-language notes on how trustworthy the throughput numbers are."""
    runs = _runs(data)
    if not runs:
        return []
    notes = []
    origin = {m: r["rps"] for n, m, r in runs if n == "origin"}
    proxied = [(n, m, r) for n, m, r in runs if n != "origin"]
    if origin and proxied:
        fastest = max(r["rps"] for _, _, r in proxied)
        busiest = max(r["cpu_percent"]["origin"] for _, _, r in proxied)
        get = origin.get("GET", max(origin.values()))
        verdict = (
            "The origin is not the bottleneck"
            if get >= 1.5 * fastest and busiest < 70
            else "The origin may limit the fastest proxy"
        )
        notes.append(
            f"{verdict}: alone it served {get:,.0f} req/s (GET), {get / fastest:.1f}x the "
            f"fastest proxied run, and while proxied it used at most {busiest:.0f}% of one core."
        )
    other = sum(r["cpu_percent"].get("other", 0) for _, _, r in runs) / len(runs)
    if other > 25:
        notes.append(
            f"This run was disturbed: other programs used on average {other:.0f}% of a core "
            "(column `other`) while it measured, on a machine with "
            f"{data['machine']['nproc']} CPUs. Compare ratios, not absolute numbers, and "
            "repeat on a quiet machine (`--rounds 3` keeps each proxy's median round)."
        )
    return notes


def memory_table(data: Json, markdown: bool = False) -> str:
    sizes = data["settings"]["memory"]
    headers = [
        "proxy",
        "RSS after start",
        f"+ {sizes['sessions']:,} sessions",
        f"+ {sizes['websockets']:,} WebSockets",
        f"{sizes['upload_bytes'] / 2**20:,.0f} MiB upload: growth",
        "upload speed",
    ]
    rows = []
    for name, entry in data["memory"].items():
        if entry["missing"]:
            rows.append([LABELS.get(name, name), "missing", "—", "—", "—", "—"])
            continue
        rss = entry["rss"]
        sessions, sockets, upload = entry["sessions"], entry["websockets"], entry["upload"]

        def mb(value: int | None) -> str:
            return "—" if value is None else f"{value / 1e6:.1f} MB"

        def failures(step: Json | None) -> str:
            failed = step["wanted"] - step["ok"] if step else 0
            return f" ({failed} failed)" if failed else ""

        speed = upload["sent"] / 2**20 / upload["seconds"] if upload["seconds"] else 0
        rows.append(
            [
                LABELS.get(name, name),
                mb(rss.get("start")),
                mb(rss.get("sessions")) + failures(sessions) if sessions else "n/a",
                mb(rss.get("websockets")) + failures(sockets),
                f"+{upload['growth'] / 1e6:.1f} MB (peak {upload['rss_peak'] / 1e6:.1f} MB)"
                + ("" if upload["received"] == upload["sent"] else " INCOMPLETE"),
                f"{speed:,.0f} MiB/s",
            ]
        )
    return _table(headers, rows, markdown)


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def clients_table(data: Json, markdown: bool = False) -> str:
    headers = ["client", "GETs", "errors", "req/s", "CPU µs/request"]
    headers += ["req/s vs aiohttp", "CPU/request vs aiohttp"]
    ratios: Json = data.get("client_ratios") or {}
    rows: list[list[str]] = []
    for name, entry in data["clients"]["clients"].items():
        label = CLIENT_LABELS.get(name, name)
        if entry["missing"]:
            rows.append([label, "—", "missing", *["—"] * 4])
            continue
        errors = entry["errors"] + entry["warmup_errors"]
        ratio = ratios.get(name, {})
        rows.append(
            [
                label,
                f"{entry['requests']:,}",
                f"{errors} FLAGGED" if errors else "0",
                f"{entry['rps']:,.0f}",
                f"{entry['cpu_us_per_request']:,.1f}",
                _times(ratio.get("rps")),
                _times(ratio.get("cpu_per_request")),
            ]
        )
    return _table(headers, rows, markdown)


def clients_verdict(data: Json) -> str | None:
    """One sentence: what the measured CPU per request says about the hot path's client."""
    entries: Json = (data.get("clients") or {}).get("clients", {})
    usable = {
        name: entry
        for name, entry in entries.items()
        if not entry.get("missing") and not entry["errors"] and entry["requests"]
    }
    ours, base = usable.get("upstream"), usable.get("aiohttp")
    if not ours or not base:
        return None
    mine, theirs = ours["cpu_us_per_request"], base["cpu_us_per_request"]
    httpx = usable.get("httpx")
    also = f" (httpx: {httpx['cpu_us_per_request']:,.0f} µs)" if httpx else ""
    if mine >= theirs:
        return (
            f"In this run UpstreamPool cost {mine:,.1f} µs of CPU per request and aiohttp "
            f"{theirs:,.1f} µs{also}: the hot path's own client is not cheaper here, so its "
            "choice should be re-examined."
        )
    return (
        f"A proxy pays its upstream client's CPU on every request it forwards, on top of its "
        f"own work: UpstreamPool (an asyncio Protocol feeding httptools' parser) costs "
        f"{mine:,.1f} µs per request against {theirs:,.1f} µs for aiohttp's ClientSession"
        f"{also}, {theirs / mine:.1f}x less, which is why the hot path uses it and aiohttp "
        "only carries WebSockets, where per-request cost does not matter."
    )


def _clients_method(data: Json) -> str:
    load = data["clients"]["load"]
    warmup = load.get("warmup", {})
    return (
        "Each client runs in its own fresh Python process (uvloop), so they share neither an "
        f"event loop nor garbage-collector state: {load['concurrency']} concurrent workers, "
        "each issuing GETs one after the other on keep-alive connections, to the same nginx "
        "origin as the throughput scenario (one worker, fixed 1 KiB body); "
        f"{load['requests']:,} measured GETs per client after {warmup.get('aiohttp', 0):,} "
        f"warm-up GETs, except httpx: {load['httpx_requests']:,} after "
        f"{warmup.get('httpx', 0):,}, because it manages only a few hundred requests per second "
        "at this concurrency. Every response must be status 200 with exactly the origin's body "
        "(else it counts as an error). CPU is user + system time of the client process "
        "(`getrusage`) during the measured GETs, divided by their number; lower is better."
    )


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def allocation_table(data: Json, markdown: bool = False) -> str:
    part, overhead = data["allocation"], data.get("allocation_overhead") or {}
    people, rounds = part["load"]["people"], part["rounds"]

    def each(step: str) -> str:
        return ", ".join(f"{r[step]['p99']:.2f}" for r in rounds) or "—"

    rows = [
        [
            f"API alone: {people} GameServerAllocations at once",
            _ms(part["api_ms"]["p50"]),
            _ms(part["api_ms"]["p99"]),
            each("api"),
        ],
        [
            f"allocator: {people} people's first requests at once",
            _ms(part["allocator_ms"]["p50"]),
            _ms(part["allocator_ms"]["p99"]),
            each("allocator"),
        ],
        [
            "overhead (allocator - API)",
            _signed(overhead.get("p50")),
            _signed(overhead.get("p99")),
            ", ".join(f"{v:+.2f}" for v in overhead.get("p99_of_rounds", [])) or "—",
        ],
    ]
    for via, who in (
        ("known", f"a known person ({KNOWN_CONNECTIONS} connections)"),
        ("webui", "the same, straight to a WebUI (no allocator)"),
    ):
        rows.extend(_known_rows(rounds, known_person(data, via) or {}, via, who))
    headers = ["", "p50 ms", "p99 ms", "p99 of each round, ms"]
    return _table(headers, rows, markdown)


def _known_rows(rounds: list[Json], medians: Json, via: str, who: str) -> list[list[str]]:
    measured = [r for r in rounds if r.get(f"{via}_storm")]
    if not measured:
        return []
    rows = []
    for label, when in (("without a storm", "alone"), ("during the storm", "storm")):
        key = f"{via}_{when}"
        rows.append(
            [
                f"{who}, {label}",
                _ms(statistics.median(r[key]["p50"] for r in measured)),
                _ms(medians.get(f"{when}_p99")),
                ", ".join(f"{r[key]['p99']:.2f}" for r in measured),
            ]
        )
    return rows


def cruise_table(data: Json, markdown: bool = False) -> str:
    part = data["cruise"]
    rows = [
        ["cruiser pass (ours): idle query, claims, releases, drops",
         f"{part['pass_seconds']:.3f}", f"{part['reclaimed']} released"],
        ["  the same pass as a dry run (no releases)",
         f"{part['dry_run_seconds']:.3f}", "store only"],
        ["  of which the idle query (ZRANGEBYSCORE)",
         f"{part['candidates_query_seconds']:.3f}", f"{part['idle']} found"],
        ["predecessor: SCAN every key + one HGETALL each",
         f"{part['predecessor_seconds']:.3f}", f"{part['predecessor_found']} found"],
    ]  # fmt: skip
    table = _table(["", "seconds", ""], rows, markdown)
    speedup = part.get("speedup")
    ratio = f"The predecessor's scan alone takes {speedup:.1f}x our whole pass." if speedup else ""
    return f"{table}\n\n{ratio}" if ratio else table


def _cruise_method(data: Json) -> str:
    part = data["cruise"]
    return (
        f"One pass over {part['sessions']:,} sessions of which {part['idle']:,} are idle, in a "
        "real redis-server, with the idle ones mapped to GameServers of the fake Agones API "
        "(a separate process; the Fleet is scaled to 0 first, so deleted GameServers are not "
        "replaced on these cores, as they would be by Agones on other machines). Ours is "
        "`cruiser.reaper.Reaper.run_pass()` with the allocator's store and Agones backend: "
        "one idle query, the mappings read in one round trip per 500, then 16 at a time: their "
        "claims in one round trip, their DELETEs through the allocator's Kubernetes client "
        "(plain aiohttp requests) at once, their drops in one round trip. Reconciliation is "
        "off (it compares every mapping with the GameServers, and 99 % here have none on purpose). "
        "The predecessor's algorithm runs read-only on the same data. "
        f"Set-up took {part['setup_seconds']:.0f} s and is not measured."
    )


def pictures_table(data: Json, markdown: bool = False) -> str:
    part = data["pictures"]
    cold, warm, zipped = part["cold_ms"], part["warm_ms"], part["zip"]
    rows = [
        ["first page, folder walked (no kept listing)", f"{cold['p50']:.2f}",
         f"{cold['p99']:.2f}", f"{cold['max']:.2f}", str(cold["samples"])],
        [f"every page of {part['load']['page_size']}, paging through all",
         f"{warm['p50']:.2f}", f"{warm['p99']:.2f}", f"{warm['max']:.2f}", str(warm["samples"])],
    ]  # fmt: skip
    table = _table(["", "p50 ms", "p99 ms", "max ms", "requests"], rows, markdown)
    mib = zipped["bytes"] / 2**20
    sentence = (
        f"Download all: a {mib:,.0f} MiB zip in {zipped['seconds']:.2f} s "
        f"({mib / zipped['seconds']:,.0f} MiB/s), server RSS "
        f"{zipped['rss_before'] / 1e6:.0f} MB before, +{zipped['rss_growth'] / 1e6:.1f} MB while "
        "it streamed."
    )
    return f"{table}\n\n{sentence}"


def _pictures_method(data: Json) -> str:
    part = data["pictures"]
    load = part["load"]
    return (
        f"One person's folder holds {load['pictures']:,} pictures in 20 date folders, as "
        "AUTOMATIC1111 lays them out; a real `sd-allocator serve` process (static backend "
        "pointing nowhere, memory store: no WebUI is involved) answers "
        "`GET /_allocator/api/pictures` on one keep-alive connection. The first page is "
        f"measured {load['cold_samples']} times, each after the kept listing expired (the "
        "whole folder walked with `scandir`, no link followed); then every page of "
        f"{load['page_size']} through all of them, {load['rounds']} times. The zip is another "
        f"person's {load['zip_bytes_on_disk'] / 2**20:,.0f} MiB of large files, read to the end "
        "while the server's RSS is sampled every 20 ms. "
        f"Set-up took {part['setup_seconds']:.0f} s and is not measured."
    )


def allocation_cpu(data: Json) -> str | None:
    """One sentence: CPU per person while the allocator was answering (median over rounds)."""
    part: Json = data.get("allocation") or {}
    rounds: list[Json] = part.get("rounds") or []
    people = int(part.get("load", {}).get("people", 0))
    if not rounds or not people:
        return None

    def per_person(step: str, name: str) -> float:
        used: list[float] = [r[step]["cpu_ms"].get(name, 0.0) for r in rounds]
        return statistics.median(used) / people

    nproc = data["machine"]["nproc"]
    other = statistics.median(
        r["allocator"]["cpu_ms"].get("other", 0.0) / 10 / r["allocator"]["seconds"] for r in rounds
    )
    text = (
        f"CPU while the {people} first requests were answered, per person (median over "
        f"rounds; kernel ticks of 10 ms, so roughly): allocator "
        f"{per_person('allocator', 'allocator'):.1f} ms, fake API "
        f"{per_person('allocator', 'fake'):.1f} ms (alone: "
        f"{per_person('api', 'fake'):.1f} ms per direct allocation), Redis "
        f"{per_person('allocator', 'redis'):.1f} ms, the measuring client "
        f"{per_person('allocator', 'harness'):.1f} ms."
    )
    if other > 25:
        text += (
            f" Other programs used {other:.0f}% of a core meanwhile (of {nproc} CPUs): the "
            "run was disturbed."
        )
    return text


def _allocation_method(data: Json) -> str:
    load = data["allocation"]["load"]
    people = load["people"]
    return (
        "The allocator (`SDA_BACKEND=agones`, `SDA_IDENTITY=header`, one worker, a real "
        "redis-server) allocates from the fake Agones/Kubernetes API server of `fake_agones/`, "
        f"started with `--latency-ms {load['api_latency_ms']:g}` (every API request waits that "
        "long before it is handled; concurrent requests wait side by side, but the fake is one "
        "Python process on the same CPUs, so under a burst its own work adds to that) and a "
        "Fleet of "
        f"{load['replicas']} GameServers, all Ready; nginx (one worker, the fixed 1 KiB body) "
        "listens on the Fleet's port at every Pod IP the fake hands out (127.0.0.2 to .254). "
        f"Each round first sends {people} GameServerAllocations straight to the API at once "
        "(aiohttp, one new connection each, the body the allocator sends, a distinct "
        "`sd-allocator/user` label each): the API's own latency under the same burst. Then "
        f"{people} people without a WebUI send their first `GET /` to the allocator at once, "
        "each timed until the complete 200 from their WebUI: identity, session lookup in "
        "Redis, the allocation lock, the GameServerAllocation, recording the session, "
        "forwarding (without waiting for a sidecar to confirm the person's outputs folder, "
        "`SDA_OUTPUTS_WAIT=0`: in a cluster that adds the sidecar's own time, about half a "
        "second of Agones SDK batching). "
        "Every answer must be 201 `Allocated` or 200 with the origin's body, and "
        "the fake must log exactly one `Allocated` outcome per person; then the allocated "
        "GameServers are deleted and the Fleet refills. One warm-up round, then "
        f"{load['rounds']} measured rounds; p50 and p99 are nearest-rank over the {people} "
        f"requests of a round (so p99 is the slowest of {people}), shown as the median over "
        "rounds; overhead = allocator - API.\n\n"
        f"A known person already working: a client in its own process (as wrk would be; "
        f"aiohttp, because wrk cannot limit its percentiles to a storm of about 100 ms) sends "
        f"their GETs on {load['known_connections']} keep-alive connections, each one after "
        f"the other: first {load['known_requests']} without a storm, then for as long as "
        f"{people} more new people make their first requests at once; only the requests that "
        "started during that storm count. Then the same again with the same client sending "
        "straight to a WebUI's nginx, no allocator in between, during another storm of "
        f"{people}: on these two cores the storm's other programs (the fake API, Redis, the "
        "storm's client) take CPU from everything, and this row shows how much. A flame graph "
        "of the allocator in such storms: `python -m bench.storm_profile FILE.svg` (py-spy); "
        "one is kept in `bench/results/storm-flamegraph.svg`."
    )


def goal_table(data: Json, markdown: bool = False) -> str:
    rows = [[g["goal"], g["status"], g["detail"]] for g in data["goals"]]
    return _table(["goal (brief §6)", "status", "measured"], rows, markdown)


def console(data: Json) -> str:
    parts = []
    if data.get("throughput"):
        load = data["throughput"]["load"]
        parts += [
            f"\nThroughput (wrk -t{load['threads']} -c{load['connections']} "
            f"-d{load['duration_s']:g}s --latency, after a {load['warmup_s']:g} s warm-up"
            + (f"; median of {load['rounds']} rounds)" if load["rounds"] > 1 else ")"),
            throughput_table(data),
            "",
            *ratio_lines(data),
            *observations(data),
        ]
    if data.get("memory"):
        parts += ["\nMemory (RSS of the proxy process and its children)", memory_table(data)]
    if data.get("clients"):
        load = data["clients"]["load"]
        parts += [
            f"\nUpstream clients ({load['concurrency']} concurrent GET workers each, fresh "
            "process, uvloop; same nginx origin)",
            clients_table(data),
        ]
        verdict = clients_verdict(data)
        if verdict:
            parts += ["", verdict]
    if data.get("allocation") and data["allocation"]["rounds"]:
        load = data["allocation"]["load"]
        parts += [
            f"\nAllocation ({load['people']} people at once, fake API "
            f"{load['api_latency_ms']:g} ms; median of {len(data['allocation']['rounds'])} "
            "rounds)",
            allocation_table(data),
        ]
        cpu = allocation_cpu(data)
        if cpu:
            parts += ["", cpu]
    if data.get("cruise"):
        parts += ["\nCruiser pass", cruise_table(data)]
    if data.get("scarcity"):
        parts += ["\nScarcity", scarcity_report.table(data, _table)]
        sentences = [scarcity_report.comparison(data), scarcity_report.pause_cost(data)]
        parts += ["", " ".join(s for s in sentences if s)]
        parts += [f"  {line}" for line in scarcity_report.evidence(data)]
    if data.get("pictures"):
        parts += ["\nMy pictures", pictures_table(data)]
    if data.get("kubeclients"):
        parts += ["\nKubernetes clients", kube_clients.table(data["kubeclients"])]
    parts += ["\nGoals", goal_table(data)]
    notes = missing_notes(data)
    if notes:
        parts += ["\nNot measured:", *(f"  {n}" for n in notes)]
    return "\n".join(parts)


def write_json(data: Json, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _carried_over_lines(data: Json) -> list[str]:
    """Which sections come from an earlier run (a later run measured only some scenarios)."""
    by_date: dict[str, list[str]] = {}
    sources: dict[str, Json] = {}
    for name, source in (data.get("carried_over") or {}).items():
        by_date.setdefault(source["date"], []).append(name)
        sources[source["date"]] = source
    return [
        f"- {', '.join(names)}: measured earlier, {date} (load average "
        f"{sources[date]['load_average'][0]:.2f}, CPU {sources[date]['busy_before_percent']:.0f}% "
        "busy before measuring); the rest in this run"
        for date, names in by_date.items()
    ]


def markdown(data: Json) -> str:
    """BENCHMARKS.md: machine, method, tables, ratios, goals, how to reproduce."""
    m, v = data["machine"], data["versions"]
    version_line = ", ".join(f"{k} {val}" for k, val in v.items())
    out = [
        "# Benchmarks",
        "",
        "Reproduce with `make bench` (runs `.venv/bin/python -m bench.run`; options: "
        "`--duration`, `--connections`, `--rounds`, "
        "`--only throughput|memory|clients|allocation|cruise|scarcity|pictures|kubeclients`, "
        "`--client-requests`, "
        "`--allocation-rounds`; "
        "`--help` for all). Raw numbers: "
        "`bench/results/latest.json`.",
        "",
        "## Machine",
        "",
        f"- measured {m['date']}",
        f"- {m['nproc']} CPUs (nproc), {m['cpu']}, {m['memory_gb']} GB RAM",
        f"- Linux {m['kernel']}, Python {m['python']}",
        f"- {version_line}",
        f"- allocator started as `{shlex.join(data['settings']['allocator_command'])}`",
        f"- before measuring: load average {m['load_average'][0]:.2f}, CPU "
        f"{m['busy_before_percent']:.0f}% busy with other work",
        *_carried_over_lines(data),
        "",
        "Everything runs on this one machine over loopback: wrk, the origin and the proxy "
        "under test share its CPUs, so the absolute numbers are lower than on a dedicated "
        "load generator; the comparison is what counts. The CPU columns say how busy each "
        "part was during the measured run (100 % = one core); `other` is everything else on "
        "the machine — if it is large, another program disturbed the run.",
    ]
    if data.get("throughput"):
        load = data["throughput"]["load"]
        out += [
            "",
            "## Throughput and latency",
            "",
            f"`wrk -t{load['threads']} -c{load['connections']} -d{load['duration_s']:g}s "
            f"--latency`, each proxy after a {load['warmup_s']:g} s warm-up run, all in one "
            "run, one after the other"
            + (
                f", {load['rounds']} rounds in turn; each row is the round with the median "
                "req/s (all rounds are in the JSON). "
                if load["rounds"] > 1
                else ". "
            )
            + "Origin: nginx with one worker answering every request with the same 1 KiB body. "
            "Every request carries what IAP sends: `X-Goog-Authenticated-User-Email: "
            "accounts.google.com:bench@example.com` and a signed `x-goog-iap-jwt-assertion` "
            "(ES256, our own key). The allocator runs `SDA_BACKEND=static`, one worker, a real "
            "redis-server, with `SDA_IDENTITY=header`; `allocator (iap)` is the same with "
            "`SDA_IDENTITY=iap`, verifying the token against our JWK set (on loopback). POST "
            "sends a 1 KiB body. "
            "nginx: `proxy_pass` to an `upstream` with `keepalive 64`, HTTP/1.1, one worker. "
            "CHP: configurable-http-proxy, one node process, `--default-target` the origin.",
            "",
            throughput_table(data, markdown=True),
            "",
            *(f"- {line}" for line in ratio_lines(data)),
        ]
        for note in observations(data):
            out += ["", note]
    if data.get("memory"):
        sizes = data["settings"]["memory"]
        out += [
            "",
            "## Memory",
            "",
            "RSS of the proxy process plus its children. Origin: `bench/origin_ws.py` (aiohttp). "
            f"Sessions: one request each for {sizes['sessions']:,} people "
            "(`user{i}@example.com`), each polled via `/_allocator/status` until `ready`. "
            f"Then {sizes['websockets']:,} WebSockets to the echo at `/ws`, each echoing one "
            "message, held open while measuring. Upload: one chunked POST of "
            f"{sizes['upload_bytes'] / 2**20:,.0f} MiB, RSS sampled every 100 ms, growth = "
            "peak - before. CHP runs the same steps (it has no sessions) as a reference.",
            "",
            memory_table(data, markdown=True),
        ]
    if data.get("clients"):
        out += [
            "",
            "## Upstream client (why the hot path does not use aiohttp)",
            "",
            _clients_method(data),
            "",
            clients_table(data, markdown=True),
        ]
        verdict = clients_verdict(data)
        if verdict:
            out += ["", verdict]
    if data.get("allocation") and data["allocation"]["rounds"]:
        out += [
            "",
            "## Allocation overhead",
            "",
            _allocation_method(data),
            "",
            allocation_table(data, markdown=True),
        ]
        cpu = allocation_cpu(data)
        if cpu:
            out += ["", cpu]
    if data.get("cruise"):
        out += [
            "",
            "## Cruiser pass",
            "",
            _cruise_method(data),
            "",
            cruise_table(data, markdown=True),
        ]
    if data.get("scarcity"):
        out += [
            "",
            "## Scarcity",
            "",
            scarcity_report.method(data),
            "",
            scarcity_report.table(data, _table, markdown=True),
        ]
        sentences = [scarcity_report.comparison(data), scarcity_report.pause_cost(data)]
        out += ["", " ".join(s for s in sentences if s)]
        found = scarcity_report.evidence(data)
        out += ["", "In the real run:", "", *(f"- {line}" for line in found)] if found else []
    if data.get("pictures"):
        out += [
            "",
            "## My pictures",
            "",
            _pictures_method(data),
            "",
            pictures_table(data, markdown=True),
        ]
    if data.get("kubeclients"):
        out += [
            "",
            "## Kubernetes clients",
            "",
            kube_clients.method(data["kubeclients"]),
            "",
            kube_clients.table(data["kubeclients"]),
        ]
    out += ["", "## Goals", "", goal_table(data, markdown=True)]
    notes = missing_notes(data)
    if notes:
        out += ["", "Not measured in this run:", "", *(f"- {n}" for n in notes)]
    if any(g["status"] == NOT_MEASURED for g in data["goals"]):
        out += ["", "Goals marked “not measured” have no verdict yet; they are not failures."]
    return "\n".join(out) + "\n"
