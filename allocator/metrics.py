"""Prometheus metrics, served on their own port (`SDA_METRICS_PORT`), never through the proxy."""

from __future__ import annotations

import logging
import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

# Set (by the CLI, before this module is imported) when several workers share one /metrics.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("sda_requests_total", "Requests answered, by HTTP status", ["status"])
UPSTREAM_ERRORS = Counter(
    "sda_upstream_errors_total", "Requests a WebUI could not answer, by cause", ["cause"]
)
ALLOCATIONS = Counter("sda_allocations_total", "Allocation attempts, by result", ["result"])
ALLOCATION_SECONDS = Histogram(
    "sda_allocation_seconds",
    "Time from allocation start to a ready WebUI (or failure)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
RESTARTS = Counter("sda_restarts_total", "Sessions re-allocated because their WebUI was gone")
ACTIVE_SESSIONS = Gauge(
    "sda_active_sessions", "Sessions in the store", multiprocess_mode="mostrecent"
)
OPEN_WEBSOCKETS = Gauge(
    "sda_open_websockets", "WebSockets open through this server", multiprocess_mode="livesum"
)
RECLAIMED = Counter(
    "sda_reclaimed_total",
    "WebUIs given back by the cruiser, by reason (idle, pressure, max_age, orphan, stale)",
    ["reason"],
)
CRUISE_SECONDS = Histogram(
    "sda_cruise_pass_seconds",
    "Duration of one cruiser pass",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CRUISE_FAILURES = Counter(
    "sda_cruise_failures_total", "Releases a cruiser pass could not do (retried next pass)"
)

QUEUE_LENGTH = Gauge("sda_queue_length", "People waiting for a GPU", multiprocess_mode="mostrecent")
QUEUE_WAIT_SECONDS = Histogram(
    "sda_queue_wait_seconds",
    "Time spent in the queue, by how it ended (served, left, abandoned, failed, removed)",
    ["outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600),
)
QUEUE_SERVED = Counter("sda_queue_served_total", "WebUIs allocated for the queue's head")

# Store-wide figures read from the store: every replica reports the same (aggregate with max).
# The GPU-seconds carry a label so that they appear only once read: a 0 scraped from a replica
# just started would look like a counter reset to rate(), and its next value like a spike.
GPU_ALLOCATED_SECONDS = Gauge(
    "sda_gpu_allocated_seconds",
    "GPU-seconds allocated to people, everyone, all time (monotonic: use rate())",
    ["scope"],
    multiprocess_mode="mostrecent",
)
GPU_BUSY_SECONDS = Gauge(
    "sda_gpu_busy_seconds",
    "GPU-seconds with a generation or stream in flight, everyone, all time (use rate())",
    ["scope"],
    multiprocess_mode="mostrecent",
)
RECLAIMS = Gauge(
    "sda_reclaims",
    "WebUIs given back, all time, by reason (idle, pressure, max_age, over_quota, released, "
    "admin, orphan, stale), whichever process gave them back",
    ["reason"],
    multiprocess_mode="mostrecent",
)
CRUISE_LAST_PASS = Gauge(
    "sda_cruise_last_pass_timestamp_seconds",
    "When the last cruiser pass ended (any cruiser: in-process, CronJob or Cloud Function)",
    multiprocess_mode="mostrecent",
)
CRUISE_LAST_FAILURES = Gauge(
    "sda_cruise_last_pass_failures",
    "Releases the last cruiser pass could not do",
    multiprocess_mode="mostrecent",
)
STORE_UP = Gauge(
    "sda_store_up",
    "1 when this replica's last look at the store was answered, else 0",
    multiprocess_mode="mostrecent",
)

_by_status: dict[int, Counter] = {}


def count_response(status: int) -> None:
    """REQUESTS.labels(...).inc() without the label lookup on every request."""
    child = _by_status.get(status)
    if child is None:
        child = _by_status[status] = REQUESTS.labels(status=str(status))
    child.inc()


def serve(host: str, port: int) -> None:
    """Serve /metrics from this process; with several workers, the sum of all of them."""
    if port == 0:
        return
    registry = REGISTRY
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning("metrics not served on %s:%s: %s", host, port, exc)
    else:
        log.info("metrics on http://%s:%s/metrics", host, port)
