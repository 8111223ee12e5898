"""The truth about which WebUI processes run on this machine: one JSON file per person in
`<data_dir>/run/`, read and written under one file lock, so every `serve` process on the
machine and the CLI see the same capacity and the same GPUs in use."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import psutil

from allocator.types import NoCapacity, Person

log = logging.getLogger(__name__)

STOPPING = ".stopping"  # mark files: a WebUI stopped on purpose (never a *.json entry)


@dataclass(slots=True)
class Entry:
    """One registry file: a WebUI process, or a claim on a slot while it starts."""

    email: str
    slug: str
    owner: int  # pid of the serve process that started it
    claimed_at: float
    pid: int | None = None
    create_time: float | None = None
    port: int | None = None
    gpu: str | None = None  # absent from files written before GPUs were handed out


@dataclass(frozen=True, slots=True)
class Claim:
    """What the registry answered a person: their WebUI it still lists, or a new slot (with
    the GPU taken for it, if GPUs are handed out)."""

    existing: Entry | None = None
    gpu: str | None = None


class Registry:
    def __init__(
        self, folder: Path, capacity: int, gpus: tuple[str, ...], claim_ttl: float
    ) -> None:
        self._folder = folder
        self._capacity = capacity
        self._gpus = gpus
        self._claim_ttl = claim_ttl  # a claim whose WebUI never got a pid is stale after it

    def claim(self, person: Person, replace: bool = False) -> Claim:
        """Take a slot (and a free GPU) for `person`, or find their still-running WebUI.
        Inside the lock, so no two `serve` processes on this machine hand out one GPU."""
        with self._locked():
            entries = self._live_entries()
            mine = entries.pop(person.slug, None)
            if mine is not None and not replace:
                return Claim(existing=mine)
            if len(entries) >= self._capacity:
                raise NoCapacity()
            gpu = self._free_gpu(entries.values())
            self._write(Entry(person.email, person.slug, os.getpid(), time.time(), gpu=gpu))
            return Claim(gpu=gpu)

    def record(self, person: Person, pid: int, created: float, port: int, gpu: str | None) -> None:
        entry = Entry(person.email, person.slug, os.getpid(), time.time(), pid, created, port, gpu)
        with self._locked():
            self._write(entry)

    def forget(self, slug: str, pid: Any = None) -> None:
        """Drop `slug`'s entry (only if it is still the process `pid`, when given)."""
        with self._locked():
            path = self._folder / f"{slug}.json"
            entry = _read(path)
            if entry is not None and (pid is None or entry.pid == pid):
                path.unlink(missing_ok=True)

    def mark_stopping(self, slug: str, pid: int) -> None:
        """`slug`'s WebUI (process `pid`) is about to be stopped on purpose: whichever serve
        process started it then knows its exit is no crash. A mark file beside the entries,
        not in the entry: the stopper forgets the entry at once, maybe before the starter's
        watcher looks."""
        with self._locked():
            self._mark(slug, pid).touch()

    def stopped_on_purpose(self, slug: str, pid: int) -> bool:
        """Whether `mark_stopping` was said for this process (the mark is taken away)."""
        with self._locked():
            mark = self._mark(slug, pid)
            marked = mark.exists()
            mark.unlink(missing_ok=True)
        return marked

    def drop_old_marks(self, older_than: float) -> None:
        """Marks nobody took (their starter had gone) are dropped after a while."""
        cutoff = time.time() - older_than
        with self._locked():
            for mark in self._folder.glob(f"*{STOPPING}"):
                with contextlib.suppress(FileNotFoundError):
                    if mark.stat().st_mtime < cutoff:
                        mark.unlink()

    def _mark(self, slug: str, pid: int) -> Path:
        return self._folder / f"{slug}.{pid}{STOPPING}"

    def entry_of(self, slug: str) -> Entry | None:
        with self._locked():
            return self._live_entries().get(slug)

    def running(self) -> list[Entry]:
        with self._locked():
            return list(self._live_entries().values())

    def free_slots(self) -> int:
        """How many more WebUIs `claim` would start now (GPUs counted as `claim` does)."""
        with self._locked():
            entries = list(self._live_entries().values())
        free = self._capacity - len(entries)
        if self._gpus:
            taken = {entry.gpu for entry in entries}
            unknown = sum(entry.gpu is None for entry in entries)
            free = min(free, sum(gpu not in taken for gpu in self._gpus) - unknown)
        return max(0, free)

    def _free_gpu(self, others: Iterable[Entry]) -> str | None:
        """The first GPU nobody holds; None when no GPUs are handed out. A WebUI without a
        GPU in its entry (started before SDA_LOCAL_GPUS was set, or by a serve without it)
        sees every GPU and computes on the first: it holds the first free one."""
        if not self._gpus:
            return None
        entries = list(others)
        taken = {entry.gpu for entry in entries}
        free = [gpu for gpu in self._gpus if gpu not in taken]
        unknown = sum(entry.gpu is None for entry in entries)
        if len(free) <= unknown:
            raise NoCapacity()
        return free[unknown]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._folder.mkdir(parents=True, exist_ok=True)
        with (self._folder / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _live_entries(self) -> dict[str, Entry]:
        live = {}
        for path in self._folder.glob("*.json"):
            entry = _read(path)
            if entry is None:
                continue
            if self._is_live(entry):
                live[entry.slug] = entry
            else:
                path.unlink(missing_ok=True)
        return live

    def _is_live(self, entry: Entry) -> bool:
        if entry.pid is not None:
            return same_process(entry.pid, entry.create_time)
        fresh = time.time() - entry.claimed_at < self._claim_ttl
        return fresh and psutil.pid_exists(entry.owner)

    def _write(self, entry: Entry) -> None:
        path = self._folder / f"{entry.slug}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(entry)))
        temporary.replace(path)


_TYPES: dict[str, tuple[type, ...]] = {
    "email": (str,),
    "slug": (str,),
    "owner": (int,),
    "claimed_at": (int, float),
    "pid": (int, type(None)),
    "create_time": (int, float, type(None)),
    "port": (int, type(None)),
    "gpu": (str, type(None)),
}


def _read(path: Path) -> Entry | None:
    """The entry in `path`, or None: if it is gone, could not be read (kept: it may still be
    a running WebUI's, unreadable only this once), or is not an entry (removed: nothing can
    use it)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read registry file %s: %s", path, exc)
        return None
    try:
        return _entry(json.loads(text))
    except (ValueError, TypeError) as exc:
        log.warning("removing registry file %s, which is not an entry: %s", path, exc)
        path.unlink(missing_ok=True)
        return None


def _entry(values: Any) -> Entry:
    """Fields this version knows, each of its type; a field a newer version added is no
    reason to drop an entry (and hand its GPU out again)."""
    if not isinstance(values, dict):
        raise TypeError("not a JSON object")
    known = {f.name: values[f.name] for f in fields(Entry) if f.name in values}
    for name, value in known.items():
        if not isinstance(value, _TYPES[name]) or isinstance(value, bool):
            raise TypeError(f"{name} is {value!r}")
    return Entry(**known)


def same_process(pid: Any, create_time: Any) -> bool:
    """Whether `pid` is still the process we started (not a zombie, not a reused pid)."""
    if not isinstance(pid, int):
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(process.create_time() - float(create_time)) < 0.01
    except (psutil.Error, ValueError):
        return False
