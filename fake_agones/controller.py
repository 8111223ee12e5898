"""The Agones GameServer controller and the kubelet, for one fake node.

Lifecycle (agones ``pkg/gameservers/controller.go``): Creating -> Starting (Pod created) ->
Scheduled (node known: nodeName, node address, status ports, and since v1.58 the Pod IP,
synced asynchronously) -> RequestReady (the sidecar's SDK Ready, once the backing answers)
-> Ready (with annotation ``agones.dev/ready-container-id``); each step is one update, so one
MODIFIED event. Shutdown -> the GameServer is deleted (syncGameServerShutdownState).
Deletion (k8s.io/apiserver ``registry/generic/registry/store.go`` markAsDeleting): the
finalizer ``agones.dev/controller`` holds the object with ``deletionTimestamp``,
``deletionGracePeriodSeconds: 0`` and a generation bump until the Pod is gone, then it is
removed (DELETED). Each Pod gets the lowest free 127.0.0.N (N >= 2), freed when the Pod goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_agones import objects
from fake_agones.backing import Backing, Pod
from fake_agones.faults import Faults
from fake_agones.objects import is_being_deleted, state_of
from fake_agones.sdk_server import PodSDK, may_request_ready
from fake_agones.store import Change, ObjectStore

Json = dict[str, Any]
Key = tuple[str, str]
USER_LABEL = "sd-allocator/user"
OUTPUTS_ANNOTATION = "agones.dev/sdk-sd-allocator-outputs"
log = logging.getLogger(__name__)


@dataclass
class Timings:
    """Seconds: between lifecycle steps, from delete to the Pod stopping, crash to Unhealthy,
    between watch BOOKMARKs."""

    step: float = 0.02
    delete_delay: float = 0.1
    unhealthy_delay: float = 0.5
    bookmark_interval: float = 60.0
    # The sd-allocator sidecar confirms the person's outputs folder this long after an
    # allocation labels a GameServer (annotation agones.dev/sdk-sd-allocator-outputs); None:
    # no sidecar in these pods. Pods running a real sidecar (their SDK server listens) are
    # confirmed by it, never by this.
    sidecar_delay: float | None = 0.05


class PodIPs:
    """Loopback Pod IPs, lowest free first: 127.0.0.2-254, then 127.0.1.2-254, and so on
    (all of 127.0.0.0/8 is loopback on Linux), so a fleet may hold thousands of pods."""

    PER_BLOCK = 253  # host numbers 2-254 in each /24

    def __init__(self) -> None:
        self._used: set[int] = set()

    def take(self) -> str:
        number = 0
        while number in self._used:
            number += 1
        if number >= 256 * self.PER_BLOCK:
            raise RuntimeError("no free loopback Pod IP left (127.0.0-255.2-254)")
        self._used.add(number)
        block, host = divmod(number, self.PER_BLOCK)
        return f"127.0.{block}.{host + 2}"

    def release(self, address: str) -> None:
        _, _, block, host = address.split(".")
        self._used.discard(int(block) * self.PER_BLOCK + int(host) - 2)


class GameServerController:
    def __init__(
        self,
        store: ObjectStore,
        backing: Backing,
        faults: Faults,
        timings: Timings,
        port: int,
        data_dir: Path,
    ) -> None:
        self.store = store
        self.backing = backing
        self.faults = faults
        self.timings = timings
        self.port = port
        self.data_dir = data_dir
        self.pod_ips = PodIPs()
        self.deletes: Counter[str] = Counter()
        self._pods: dict[Key, Pod] = {}
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._finalizers: dict[Key, asyncio.Task[None]] = {}
        self._later: set[asyncio.Task[None]] = set()
        store.add_listener(self._on_change)

    # --- creating and running ---------------------------------------------------------

    def create(self, gs: Json) -> Json:
        created = self.store.create(gs)
        key = _key(created)
        pod = Pod(key[1], key[0], self.pod_ips.take(), self.port, self.data_dir / key[1])
        pod.sdk = PodSDK(self.store, key, lambda: self.sdk_ready(key), "127.0.0.1")
        self._pods[key] = pod
        self._tasks[key] = asyncio.get_running_loop().create_task(self._lifecycle(key, pod))
        return created

    async def _lifecycle(self, key: Key, pod: Pod) -> None:
        await asyncio.sleep(self.timings.step)
        if not self._advance(key, "Creating", "Starting"):
            return
        await asyncio.sleep(self.timings.step)
        delay = self.faults.pod_ip_delay
        pod_ip = None if delay > 0 else pod.host
        if not self._advance(key, "Starting", "Scheduled", _scheduled(self.port, pod_ip)):
            return
        try:
            await self.backing.start(pod)
        except Exception:
            log.exception("%s did not start", pod.name)
            self.set_state(key, "Unhealthy")
            return
        if not pod.runs_sidecar and not self._ready_now(key):
            return
        if delay > 0:
            await self.faults.pod_ip_wait(delay)
            self._update(key, _scheduled(self.port, pod.host))
        await pod.exited.wait()
        await asyncio.sleep(self.timings.unhealthy_delay)
        self.set_state(key, "Unhealthy")

    def _ready_now(self, key: Key) -> bool:
        """No real sidecar in the pod: Ready as soon as the workload answers."""
        if not self._advance(key, "Scheduled", "RequestReady"):
            return False
        return self._advance(key, "RequestReady", "Ready", _ready)

    def sdk_ready(self, key: Key) -> None:
        """The pod's sidecar called SDK Ready: RequestReady now (the SDK server's
        ``updateState``), Ready one step later (``syncGameServerRequestReadyState``), also
        from Allocated (Agones' way to give a GameServer back to the pool)."""
        if not may_request_ready(self.store.get(*key)):
            return
        self.store.update(*key, _with_state("RequestReady"))

        async def later() -> None:
            await asyncio.sleep(self.timings.step)
            self._advance(key, "RequestReady", "Ready", _ready)

        self._soon(later())

    def _soon(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task that `stop` cancels if it is still going."""
        task = asyncio.get_running_loop().create_task(work)
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    def _advance(
        self, key: Key, before: str, after: str, extra: Callable[[Json], None] | None = None
    ) -> bool:
        gs = self.store.get(*key)
        if gs is None or is_being_deleted(gs) or state_of(gs) != before:
            return False

        def step(obj: Json) -> None:
            obj["status"]["state"] = after
            if extra is not None:
                extra(obj)

        self.store.update(*key, step)
        return True

    def _update(self, key: Key, mutate: Callable[[Json], None]) -> None:
        gs = self.store.get(*key)
        if gs is not None and not gs["metadata"].get("deletionTimestamp"):
            self.store.update(*key, mutate)

    def set_state(self, key: Key, state: str) -> bool:
        gs = self.store.get(*key)
        if gs is None or is_being_deleted(gs):
            return False
        self.store.update(*key, _with_state(state))
        return True

    def confirm_outputs_later(self, key: Key) -> None:
        """What the sidecar does after an allocation: switch the outputs link, then set the
        SDK annotation (Agones prefixes it with agones.dev/sdk-). First owner only."""
        delay = self.timings.sidecar_delay
        pod = self._pods.get(key)
        if delay is None or (pod is not None and pod.runs_sidecar):
            return

        def confirm(gs: Json) -> None:
            slug = (gs["metadata"].get("labels") or {}).get(USER_LABEL)
            annotations = gs["metadata"].setdefault("annotations", {})
            if slug and OUTPUTS_ANNOTATION not in annotations and not is_being_deleted(gs):
                annotations[OUTPUTS_ANNOTATION] = slug

        async def later() -> None:
            await asyncio.sleep(delay)
            self.store.update(*key, confirm)

        self._soon(later())

    async def crash(self, key: Key) -> bool:
        """The WebUI dies by itself: its Pod stops answering, Unhealthy follows."""
        pod = self._pods.get(key)
        if pod is None:
            return False
        await self.backing.stop(pod)
        pod.exited.set()
        return True

    def sdk_port(self, key: Key) -> int | None:
        pod = self._pods.get(key)
        return pod.sdk.port if pod is not None and pod.sdk is not None else None

    def health_pings(self, key: Key) -> int:
        pod = self._pods.get(key)
        return pod.sdk.health_pings if pod is not None and pod.sdk is not None else 0

    # --- deleting -----------------------------------------------------------------------

    def delete(self, namespace: str, name: str) -> Json | None:
        """Start deleting (or find it already going); None when there is no such object."""
        gs = self.store.get(namespace, name)
        if gs is None or gs["metadata"].get("deletionTimestamp"):
            return gs
        updated = self.store.update(namespace, name, mark_deleting)
        key = (namespace, name)
        self._finalizers[key] = asyncio.get_running_loop().create_task(self._finalize(key))
        return updated

    async def _finalize(self, key: Key) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.sleep(self.timings.delete_delay)
        pod = self._pods.pop(key, None)
        if pod is not None:
            await self._stop_pod(pod)
            self.pod_ips.release(pod.host)
        self.store.remove(*key)
        self._finalizers.pop(key, None)

    def _on_change(self, change: Change) -> None:
        if change.type == "MODIFIED" and state_of(change.obj) == "Shutdown":
            metadata = change.obj["metadata"]
            loop = asyncio.get_running_loop()
            loop.call_soon(self.delete, metadata["namespace"], metadata["name"])

    async def _stop_pod(self, pod: Pod) -> None:
        """The workload first (a sidecar may still call the SDK while it drains), then the
        pod's SDK server."""
        try:
            await self.backing.stop(pod)
        finally:
            if pod.sdk is not None:
                await pod.sdk.close()

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *self._later]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Finalizers are let finish: each has taken its pod off the list and stops it.
        await asyncio.gather(*self._finalizers.values(), return_exceptions=True)
        pods = list(self._pods.values())
        self._pods.clear()
        await asyncio.gather(*(self._stop_pod(pod) for pod in pods), return_exceptions=True)


def _key(gs: Json) -> Key:
    return gs["metadata"]["namespace"], gs["metadata"]["name"]


def _scheduled(port: int, pod_ip: str | None) -> Callable[[Json], None]:
    def apply(gs: Json) -> None:
        objects.scheduled_status(gs["status"], port, pod_ip)

    return apply


def _with_state(state: str) -> Callable[[Json], None]:
    def apply(gs: Json) -> None:
        gs["status"]["state"] = state

    return apply


def _ready(gs: Json) -> None:
    gs["metadata"]["annotations"][objects.READY_CONTAINER_ID] = objects.container_id()


def mark_deleting(gs: Json) -> None:
    metadata = gs["metadata"]
    metadata["deletionTimestamp"] = objects.timestamp()
    metadata["deletionGracePeriodSeconds"] = 0
    metadata["generation"] = metadata.get("generation", 0) + 1
