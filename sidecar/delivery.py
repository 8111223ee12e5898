"""Delivering the WebUI's finished files to the pod's owner, from the first look to SIGTERM.

Every ``DELIVERY_POLL_SECONDS`` the WebUI's outputs folder is looked at (`sidecar.finished`);
each file unchanged since the previous look, not delivered before (`sidecar.journal`), is copied
into the owner's folder (`sidecar.copying`). Until the pod has an owner, finished files are held
and delivered as soon as it has one. One bad file is logged once and passed over; the others go on.
Limits per session (the pod's life): ``MAX_FILE_BYTES`` per file, ``MAX_FILES`` and
``MAX_SESSION_BYTES`` in all (a sparse file costs its full size once copied).

A pass is blocking file-system work and runs in a worker thread; a lock keeps passes one at a
time, also when the last pass on SIGTERM starts while a cancelled one is still copying.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sidecar.copying import Changed, Refused, deliver, remove_parts
from sidecar.finished import FinishedFiles, Version
from sidecar.journal import Journal, Key, key_of
from sidecar.names import UnsafeName

log = logging.getLogger(__name__)

DELIVERED, FAILED, SKIPPED = "delivered", "failed", "skipped"
DRAIN_POLL_SECONDS = 0.25
"""After SIGTERM, files still being written are looked at at least this often."""
STALE_PART_SECONDS = 600.0
"""Part files of other pods older than this are a killed copy's leftovers, not a copy under way."""


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_files: int
    max_session_bytes: int = 20 * 2**30


@dataclass(frozen=True)
class PassResult:
    delivered: int
    waiting: int
    """Files seen that a later pass may still deliver: changing, failed (retried), or held
    without an owner."""
    changing: int
    failed: int = 0


class Delivery:
    def __init__(self, outputs_dir: Path, journal: Journal, limits: Limits) -> None:
        self._outputs = str(outputs_dir)
        self._journal = journal
        self._limits = limits
        self._files = FinishedFiles(self._outputs)
        self._target: Path | None = None
        self._target_is_new = False
        self._closed = False
        self._lock = threading.Lock()
        self._refused: set[Key] = set()
        self._failures: dict[Key, str] = {}
        self._full_reported = False
        self._held_reported = 0

    def deliver_to(self, folder: Path) -> None:
        """From the next pass on, finished files go to ``folder`` (checked by the caller)."""
        if not self._closed:
            self._target, self._target_is_new = folder, True

    def close(self) -> None:
        """Deliver nothing more, ever (the pod is going away and was not for this person)."""
        self._closed, self._target = True, None

    async def run(self, poll_seconds: float) -> None:
        while True:
            await asyncio.to_thread(self.one_pass)
            await asyncio.sleep(poll_seconds)

    async def drain(self, poll_seconds: float, within: float) -> None:
        """Deliver what is still pending, looking until nothing is changing, for at most
        ``within`` seconds."""
        deadline = time.monotonic() + within
        poll = min(poll_seconds, DRAIN_POLL_SECONDS)
        result = await asyncio.to_thread(self.one_pass)
        if result.waiting:  # said at once: on Spot nodes the pod may get only 15 s
            log.warning(
                "stopping: %d file(s) pending, delivering them for up to %.0f s",
                result.waiting,
                within,
            )
        while (result.changing or result.failed) and time.monotonic() + poll < deadline:
            await asyncio.sleep(poll)
            result = await asyncio.to_thread(self.one_pass)
        if result.waiting:
            why = "no owner" if self._target is None else "still being written"
            log.error("stopping with %d file(s) not delivered (%s)", result.waiting, why)
        else:
            log.info("every finished file is delivered")

    def one_pass(self) -> PassResult:
        with self._lock:
            target = self._target
            if target is not None and self._target_is_new:
                self._target_is_new = False
                self._clean(target)
            finished, changing = self._files.look()
            self._forget_gone({key_of(v) for v in (*finished, *changing)})
            fresh = [v for v in finished if key_of(v) not in self._journal.delivered]
            if target is None:
                self._report_held(len(fresh))
                return PassResult(0, len(fresh) + len(changing), len(changing))
            outcomes = [self._deliver_one(version, target) for version in fresh]
            delivered, failed = outcomes.count(DELIVERED), outcomes.count(FAILED)
            return PassResult(delivered, len(changing) + failed, len(changing), failed)

    def _deliver_one(self, version: Version, target: Path) -> str:
        """DELIVERED, FAILED (tried again next pass) or SKIPPED (changing, refused, full)."""
        key = key_of(version)
        if key in self._refused:
            return SKIPPED
        if len(self._journal.delivered) >= self._limits.max_files:
            self._report_full(f"MAX_FILES={self._limits.max_files} files")
            return SKIPPED
        if self._journal.delivered_bytes + version.size > self._limits.max_session_bytes:
            self._report_full(f"MAX_SESSION_BYTES={self._limits.max_session_bytes} bytes")
            return SKIPPED
        started = time.monotonic()
        try:
            delivered_as = deliver(self._outputs, version, target, self._limits.max_file_bytes)
        except Changed:
            return SKIPPED
        except (Refused, UnsafeName) as error:
            self._refused.add(key)
            log.warning("not delivering %r: %s", version.path, error)
            return SKIPPED
        except OSError as error:
            self._report_failure(key, f"delivering {version.path!r} failed, retrying: {error}")
            return FAILED
        self._failures.pop(key, None)
        try:
            self._journal.record(version, delivered_as)
        except OSError as error:
            log.error("the journal could not record %r: %s", version.path, error)
        log.info(
            "delivered %s as %s (%d bytes, %.3f s)",
            version.path,
            delivered_as,
            version.size,
            time.monotonic() - started,
        )
        return DELIVERED

    def _forget_gone(self, present: set[Key]) -> None:
        """Refusals and failures only of file versions still there: a WebUI rewriting a file
        forever must not grow them forever."""
        self._refused &= present
        self._failures = {key: text for key, text in self._failures.items() if key in present}

    def _report_failure(self, key: Key, message: str) -> None:
        """Logged when it first happens to this file version or says something new."""
        if self._failures.get(key) != message:
            log.error("%s", message)
        self._failures[key] = message

    def _report_full(self, limit: str) -> None:
        if not self._full_reported:
            self._full_reported = True
            log.error("%s delivered in this session: no more are delivered", limit)

    def _report_held(self, count: int) -> None:
        if count and count != self._held_reported:
            log.info("%d finished file(s) held until the pod is given to someone", count)
        self._held_reported = count

    def _clean(self, target: Path) -> None:
        removed = remove_parts(target, STALE_PART_SECONDS, time.time())
        if removed:
            log.warning("removed %d part file(s) left by an interrupted copy", removed)
