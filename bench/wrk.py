"""Running wrk and reading its report.

The numbers come from wrk's own text output (`--latency`). A Lua `done` hook — called once at
the end, so it costs nothing per request — adds the exact p99.9, the maximum and wrk's error
counters on one extra line. POST runs use the same script with method, body and content type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Processes

_DONE_HOOK = """
done = function(summary, latency, requests)
  io.write(string.format(
    "BENCH p99.9_us=%d max_us=%d requests=%d connect=%d read=%d write=%d status=%d timeout=%d\\n",
    latency:percentile(99.9), latency.max, summary.requests,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
end
"""

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class Load:
    """wrk settings shared by every contestant in one run."""

    threads: int = 2
    connections: int = 32
    duration_s: float = 10.0
    warmup_s: float = 5.0
    rounds: int = 1  # each contestant measured this many times, in turn; the median counts


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]  # p50, p75, p90, p99, p99.9, avg, max
    non_2xx_3xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, timeout

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())

    @property
    def flagged(self) -> bool:
        return self.errors > 0 or self.requests == 0


def script(path: Path, method: str, body_size: int) -> Path:
    """Write the Lua script for a GET run or a POST run with a `body_size` body."""
    lines = []
    if method != "GET":
        lines += [
            f'wrk.method = "{method}"',
            f'wrk.body = string.rep("b", {body_size})',
            'wrk.headers["Content-Type"] = "application/octet-stream"',
        ]
    path.write_text("\n".join(lines) + "\n" + _DONE_HOOK)
    return path


def run(
    processes: Processes,
    binary: Path,
    url: str,
    load: Load,
    *,
    duration_s: float,
    lua: Path,
    headers: Mapping[str, str],
) -> WrkResult:
    argv: list[str | Path] = [
        binary,
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{duration_s:g}s",
        "--latency",
        "-s",
        lua,
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    output = processes.run("wrk", argv, timeout=duration_s + 60)
    return parse(output)


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


_TIME = r"([\d.]+)(us|ms|s|m|h)"


def parse(output: str) -> WrkResult:
    """Read wrk's `--latency` report (plus our `BENCH` line, if present)."""
    latency: dict[str, float] = {}
    summary = re.search(r"^\s*Latency\s+" + _TIME + r"\s+\S+\s+" + _TIME, output, re.M)
    if summary:
        latency["avg"] = _ms(summary.group(1), summary.group(2))
        latency["max"] = _ms(summary.group(3), summary.group(4))
    for pct, value, unit in re.findall(r"^\s*(50|75|90|99)%\s+" + _TIME, output, re.M):
        latency[f"p{pct}"] = _ms(value, unit)
    totals = re.search(r"^\s*(\d+) requests in " + _TIME, output, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not totals or not rps or "p99" not in latency:
        raise ValueError(f"cannot read wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    if sock:
        socket_errors = dict(zip(socket_errors, map(int, sock.groups()), strict=True))
    extra = re.search(r"^BENCH (.*)$", output, re.M)
    if extra:
        fields = dict(item.split("=", 1) for item in extra.group(1).split())
        latency["p99.9"] = int(fields["p99.9_us"]) / 1000
        latency["max"] = int(fields["max_us"]) / 1000
    return WrkResult(
        requests=int(totals.group(1)),
        seconds=_ms(totals.group(2), totals.group(3)) / 1000,
        rps=float(rps.group(1)),
        latency_ms=latency,
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )
