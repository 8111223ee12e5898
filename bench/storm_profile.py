"""A flame graph of the allocator during allocation storms: `python -m bench.storm_profile OUT.svg`.

The allocation scenario's setup (the allocator on the fake Agones API, Redis, nginx pods), one
unrecorded round, then py-spy attached to the allocator while `--storms` times 50 new people
make their first requests at once (their GameServers deleted after each, which the profile
includes: the watch's reports of them).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from bench import allocation, services, tools
from bench.procs import Processes


def profile(out: Path, storms: int, rate: int) -> None:
    found = tools.require_all()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    load = allocation.AllocationLoad()
    with Processes(Path(tempfile.mkdtemp(prefix="sda-profile-"))) as processes:
        setup = allocation._start(processes, found, load, services.DEFAULT_ALLOCATOR_COMMAND)
        url = services.base_url(setup.allocator) + "/"
        first = allocation.AllocationLoad(known_connections=1, known_requests=1)
        allocation._known_alone(url, first)  # the known person's WebUI, as the scenario has
        allocation._round(setup, load, "warmup")
        command = [spy, "record", "--rate", str(rate), "--output", str(out),
                   "--pid", str(setup.allocator.pid)]  # fmt: skip
        recording = subprocess.Popen(command)
        try:
            for n in range(storms):
                _storm(setup, url, load, f"profile-{n}")
        finally:
            recording.send_signal(signal.SIGINT)  # py-spy writes the graph and ends
            recording.wait(60)


def _storm(setup: allocation.Setup, url: str, load: allocation.AllocationLoad, label: str) -> None:
    cluster = setup.cluster
    cluster.settled(allocated=1)
    people = [allocation._person(f"{label}-{i}") for i in range(load.people)]
    seen = len(cluster.allocations())
    answers = uvloop.run(allocation._first_requests(url, people))
    allocation._problems(answers, "first requests")
    for name in allocation._allocated(cluster.allocations()[seen:], people, "the storm"):
        cluster.delete(name)
    time.sleep(allocation.SETTLE_S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="the flame graph (SVG) to write")
    parser.add_argument("--storms", type=int, default=20, help="storms of 50 people")
    parser.add_argument("--rate", type=int, default=400, help="py-spy samples per second")
    args = parser.parse_args(argv)
    profile(args.out, args.storms, args.rate)


if __name__ == "__main__":
    main()
