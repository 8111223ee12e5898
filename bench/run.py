"""`make bench`: measure the allocator against nginx and configurable-http-proxy (brief §6).

    .venv/bin/python -m bench.run [--duration 10] [--connections 32] [--only throughput|
                                  memory|clients|allocation|cruise|scarcity|pictures|
                                  kubeclients]

Prints a table, writes bench/results/latest.json and (after a full run) BENCHMARKS.md. A run
with --only keeps the other scenarios' results from the previous latest.json (marked as carried
over), so that BENCHMARKS.md can be rendered whole after it. Every process it starts runs on
loopback in a temporary directory and is stopped at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if not __package__:  # started as `python bench/run.py`: use the project's venv and root
    _root = Path(__file__).resolve().parent.parent
    _venv = _root / ".venv"
    if Path(sys.prefix).resolve() != _venv.resolve() and (_venv / "bin" / "python").exists():
        os.execv(_venv / "bin" / "python", [str(_venv / "bin" / "python"), *sys.argv])
    sys.path[0] = str(_root)

import argparse
import json
import shlex
import shutil
import signal
import tempfile
from types import FrameType

from bench import (
    allocation,
    clients,
    cruise,
    kube_clients,
    memory,
    pictures,
    procs,
    report,
    results,
    scarcity,
    services,
    throughput,
    tools,
    wrk,
)

RESULTS = tools.BENCH_DIR / "results" / "latest.json"
MARKDOWN = tools.ROOT / "BENCHMARKS.md"
OPEN_FILES = 65_536


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.run", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--only", choices=results.SCENARIOS, help="run one scenario")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure each proxy N times in turn; keep the median"
    )
    parser.add_argument("--sessions", type=int, default=10_000, help="memory: known sessions")
    parser.add_argument("--websockets", type=int, default=1_000, help="memory: open WebSockets")
    parser.add_argument("--upload-mib", type=int, default=1024, help="memory: upload size")
    parser.add_argument(
        "--client-requests",
        type=int,
        default=clients.ClientLoad.requests,
        help="clients: measured GETs per client (after a tenth as many for warm-up)",
    )
    parser.add_argument(
        "--httpx-requests",
        type=int,
        default=clients.ClientLoad.httpx_requests,
        help="clients: measured GETs for httpx, which is much slower",
    )
    parser.add_argument(
        "--client-concurrency",
        type=int,
        default=clients.ClientLoad.concurrency,
        help="clients: concurrent workers in each client process",
    )
    parser.add_argument(
        "--cruise-sessions",
        type=int,
        default=cruise.CruiseSizes.sessions,
        help="cruise: sessions in the store (1 %% of them idle)",
    )
    parser.add_argument(
        "--allocation-rounds",
        type=int,
        default=allocation.AllocationLoad.rounds,
        help="allocation: measured rounds (after one warm-up round); the median counts",
    )
    parser.add_argument(
        "--allocation-people",
        type=int,
        default=allocation.AllocationLoad.people,
        help="allocation: people allocating at once",
    )
    parser.add_argument(
        "--allocation-api-ms",
        type=float,
        default=allocation.AllocationLoad.api_latency_ms,
        help="allocation: the fake Kubernetes API's latency per request (ms)",
    )
    parser.add_argument(
        "--scarcity-seed",
        type=int,
        default=scarcity.ScarcityLoad.seed,
        help="scarcity: seed of the people's script (the same seed, the same script)",
    )
    parser.add_argument(
        "--scarcity-seconds",
        type=float,
        default=scarcity.ScarcityLoad.seconds,
        help="scarcity: how long the people come and work",
    )
    parser.add_argument(
        "--pictures",
        type=int,
        default=pictures.PicturesLoad.pictures,
        help="pictures: pictures in one person's folder",
    )
    parser.add_argument(
        "--allocator-cmd",
        default=shlex.join(services.DEFAULT_ALLOCATOR_COMMAND),
        help="command that starts the allocator (SDA_* settings come from the environment)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument(
        "--markdown",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"write {MARKDOWN.name} (default: only after a full run)",
    )
    parser.add_argument(
        "--render", action="store_true", help=f"only re-render {MARKDOWN.name} from --output"
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep logs and configs")
    return parser.parse_args(argv)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through `Processes`, which stops everything


def measure(args: argparse.Namespace, found: tools.Tools) -> results.Json:
    allocator_command = shlex.split(args.allocator_cmd)
    load = wrk.Load(
        threads=args.threads,
        connections=args.connections,
        duration_s=args.duration,
        warmup_s=args.warmup,
        rounds=args.rounds,
    )
    sizes = memory.Sizes(
        sessions=args.sessions, websockets=args.websockets, upload_bytes=args.upload_mib << 20
    )
    client_load = clients.ClientLoad(
        requests=args.client_requests,
        httpx_requests=args.httpx_requests,
        concurrency=args.client_concurrency,
    )
    allocation_load = allocation.AllocationLoad(
        people=args.allocation_people,
        rounds=args.allocation_rounds,
        api_latency_ms=args.allocation_api_ms,
    )
    machine = report.machine()
    if machine["busy_before_percent"] > 10:
        print(
            f"warning: the machine was {machine['busy_before_percent']:.0f}% busy before the "
            "run; other programs will disturb the numbers",
            flush=True,
        )
    data: results.Json = {
        "schema": results.SCHEMA,
        "machine": machine,
        "versions": {**tools.versions(found), **report.package_versions()},
        "settings": {
            "allocator_command": allocator_command,
            "memory": {
                "sessions": sizes.sessions,
                "websockets": sizes.websockets,
                "upload_bytes": sizes.upload_bytes,
                "concurrency": sizes.concurrency,
            },
        },
        "throughput": None,
        "memory": None,
        "clients": None,
        "allocation": None,
        "cruise": None,
        "scarcity": None,
        "pictures": None,
        "kubeclients": None,
    }
    workdir = Path(tempfile.mkdtemp(prefix="sda-bench-"))
    try:
        with procs.Processes(workdir) as processes:
            if args.only in (None, "throughput"):
                print("Scenario 1: throughput and latency", flush=True)
                measured = throughput.run(processes, found, load, allocator_command)
                data["throughput"] = results.throughput_json(measured)
            if args.only in (None, "memory"):
                print("Scenario 2: memory", flush=True)
                measured_memory = memory.run(processes, found, sizes, allocator_command)
                data["memory"] = results.memory_json(measured_memory)
            if args.only in (None, "clients"):
                print("Scenario 3: upstream clients", flush=True)
                measured_clients = clients.run(processes, found, client_load)
                data["clients"] = results.clients_json(measured_clients)
            if args.only in (None, "allocation"):
                print("Scenario 4: allocation overhead", flush=True)
                measured_allocation = allocation.run(
                    processes, found, allocation_load, allocator_command
                )
                data["allocation"] = results.allocation_json(measured_allocation)
            if args.only in (None, "cruise"):
                print("Scenario 5: one cruiser pass", flush=True)
                sizes_cruise = cruise.CruiseSizes(sessions=args.cruise_sessions)
                data["cruise"] = results.cruise_json(cruise.run(processes, found, sizes_cruise))
            if args.only in (None, "scarcity"):
                print("Scenario 6: scarcity, ours and the predecessor's policy", flush=True)
                load_scarcity = scarcity.ScarcityLoad(
                    seed=args.scarcity_seed, seconds=args.scarcity_seconds
                )
                measured_scarcity = scarcity.run(processes, found, load_scarcity, allocator_command)
                data["scarcity"] = results.scarcity_json(measured_scarcity)
            if args.only in (None, "pictures"):
                print(f"Scenario 7: My pictures, {args.pictures:,} in one folder", flush=True)
                load_pictures = pictures.PicturesLoad(pictures=args.pictures)
                measured_pictures = pictures.run(processes, load_pictures, allocator_command)
                data["pictures"] = results.pictures_json(measured_pictures)
            if args.only in (None, "kubeclients"):
                print("Scenario 8: Kubernetes clients, CPU per call", flush=True)
                data["kubeclients"] = kube_clients.run_in(processes, kube_clients.ClientsLoad())
    finally:
        if args.keep_temp:
            print(f"logs and configs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results.summarize(data)


def _with_previous(data: results.Json, path: Path) -> results.Json:
    """A partial run's results plus the other scenarios of the previous results file."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"\nno earlier results kept ({path}: {e})")
        return data
    if previous.get("schema") != results.SCHEMA:
        print(f"\nno earlier results kept ({path} has schema {previous.get('schema')})")
        return data
    data = results.summarize(results.carry_over(data, previous))
    carried = data.get("carried_over", {})
    if carried:
        print(f"\nkept the results of an earlier run from {path}: {', '.join(carried)}")
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        data = results.summarize(json.loads(args.output.read_text()))
        MARKDOWN.write_text(report.markdown(data))
        print(f"wrote {MARKDOWN}")
        return 0
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    limit = procs.raise_open_files_limit(OPEN_FILES)
    needed = 3 * args.websockets + 1024
    if args.only in (None, "memory") and limit < needed:
        print(f"open-files limit is {limit}, {needed} needed for {args.websockets} WebSockets;")
        print("raise it (ulimit -n) or pass a smaller --websockets")
        return 2
    try:
        found = tools.require_all()
    except tools.MissingTool as e:
        print(f"bench: missing tools:\n{e}", file=sys.stderr)
        return 2
    try:
        data = measure(args, found)
    except KeyboardInterrupt:
        print("\ninterrupted; all benchmark processes stopped", file=sys.stderr)
        return 130
    print(report.console(data))
    if args.only is not None:
        data = _with_previous(data, args.output)
    report.write_json(data, args.output)
    print(f"\nwrote {args.output}")
    if args.markdown or (args.markdown is None and args.only is None):
        MARKDOWN.write_text(report.markdown(data))
        print(f"wrote {MARKDOWN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
