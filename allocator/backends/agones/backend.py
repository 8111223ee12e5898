"""AgonesBackend: each person gets a GameServer from a Fleet of warm SD WebUI pods.

Allocation is one GameServerAllocation whose first selector re-attaches the person's own
still-Allocated GameServer and whose second takes a Ready one, so repeating it after an
unknown outcome (a lost response, a timeout) never costs a second pod. Traffic goes to the
Pod IP and the port named `sd`. A watch on our GameServers reports one that is deleted or
unhealthy within seconds, so its mapping goes before its Pod IP can be reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from allocator.backends.agones.client import KubeApi, KubeError, load_configuration
from allocator.backends.agones.gameservers import (
    FLEET_LABEL,
    USER_LABEL,
    allocated_at,
    allocation_request,
    fleet_capacity,
    is_gone,
    outputs_ready,
    owner,
    pod_ip,
    port_named,
)
from allocator.backends.agones.handover import Handovers
from allocator.backends.agones.watch import GameServerWatch
from allocator.settings import Settings
from allocator.types import (
    AllocationFailed,
    BackendError,
    Capacity,
    GoneCallback,
    NoCapacity,
    Person,
    Placement,
    ProgressCallback,
    Session,
    State,
)

log = logging.getLogger(__name__)

ATTEMPTS = 6
POD_IP_POLL_SECONDS = 0.25
UNREACHABLE = "The cluster did not answer; try again in a minute."


class Contention(Exception):
    """Agones gave the GameServer to a concurrent request; trying again usually works."""


class AgonesBackend:
    name = "agones"

    def __init__(
        self,
        kube: KubeApi,
        fleet: str,
        port_name: str = "sd",
        allocation_deadline: float = 30.0,
        pod_ip_wait: float = 30.0,
        outputs_wait: float = 0.0,
    ) -> None:
        self._kube = kube
        self._fleet = fleet
        self._port_name = port_name
        self._deadline = allocation_deadline
        self._pod_ip_wait = pod_ip_wait
        self._outputs_wait = outputs_wait
        self._confirmations: dict[str, tuple[str, asyncio.Future[None]]] = {}
        self._gone: GoneCallback | None = None
        self._releasing: set[str] = set()  # deletions we asked for are not news
        self._handovers = Handovers()  # people's pods on their way out
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch = GameServerWatch(kube, USER_LABEL, self._on_event)

    @property
    def release_timeout(self) -> float:
        """A release is one DELETE, bounded by the API call timeout (`SDA_KUBE_TIMEOUT`)."""
        return self._kube.timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> AgonesBackend:
        configuration = load_configuration(settings.kube_api_url, settings.kube_ca_cert)
        kube = KubeApi(settings.namespace, settings.kube_timeout, configuration)
        return cls(
            kube,
            settings.fleet,
            settings.agones_port_name,
            settings.allocation_lock_ttl,
            settings.start_timeout,
            settings.outputs_wait,
        )

    async def start(self) -> None:
        self._watch.start()

    async def close(self) -> None:
        await self._watch.stop()
        for task in list(self._tasks):
            task.cancel()
        await self._kube.close()

    # -- the Backend protocol -------------------------------------------------------------

    async def allocate(self, person: Person, progress: ProgressCallback) -> Placement:
        await self._after_handover(person, progress)
        status = await self._allocated(person)
        # The GameServer is theirs now (the queue's dispatcher counts it as handed out).
        await progress(State.STARTING, "Your WebUI is starting.")
        name = str(status["gameServerName"])
        port = port_named(status.get("ports"), self._port_name)
        if port is None:
            log.error("GameServer %s has no port named %r", name, self._port_name)
            raise AllocationFailed(f"The WebUI pod has no port named '{self._port_name}'.")
        host = pod_ip(status.get("addresses"))
        if host is None:
            host = await self._wait_for_pod_ip(name)
        if self._outputs_wait > 0 and not outputs_ready(status.get("metadata"), person.slug):
            await progress(State.STARTING, "Your WebUI is preparing your outputs folder.")
            await self._wait_for_outputs(name, person.slug)
        log.info("GameServer %s allocated to %s at %s:%s", name, person.email, host, port)
        return Placement(name, host, port, {"namespace": self._kube.namespace})

    async def _after_handover(self, person: Person, progress: ProgressCallback) -> None:
        """Let the person's previous pod, still stopping, hand over first (`handover`).
        ALLOCATING, not STARTING: no GameServer is theirs yet (the queue's dispatcher counts
        a STARTING head as served)."""
        if not self._handovers.waiting_for(person.slug):
            return
        await progress(State.ALLOCATING, "Your last WebUI is saving your settings.")
        began = time.monotonic()
        still = await self._handovers.handed_over(person.slug)
        waited = time.monotonic() - began
        if still:
            log.warning("GameServer(s) %s of %s still stopping after %.1f s; starting anew all "
                        "the same", ", ".join(still), person.email, waited)  # fmt: skip
        else:
            log.info("%s's last WebUI handed over in %.1f s", person.email, waited)

    async def find_running(self, person: Person) -> Session | None:
        """The person's own GameServer that is still Allocated (the mapping was lost), and
        whose sidecar confirmed their outputs folder when that is required."""
        try:
            listing = await self._kube.list_gameservers(
                f"{USER_LABEL}={person.slug}", "status.state=Allocated"
            )
        except KubeError as exc:
            raise BackendError(f"Could not list GameServers: {exc}") from exc
        for gameserver in listing.get("items", []):
            session = self._session_of(gameserver)
            if session is None or session.email != person.email or is_gone(gameserver):
                continue
            if self._outputs_wait > 0 and not outputs_ready(
                gameserver.get("metadata"), person.slug
            ):
                continue  # a page load's allocation waits for the sidecar; this cannot
            return session
        return None

    async def release(self, session: Session) -> None:
        self._releasing.add(session.server)
        self._handovers.stopping(session.slug, session.server)  # before: its DELETED may be
        try:  # handled before the call returns
            deleted = await self._kube.delete_gameserver(session.server)
        except KubeError as exc:
            self._releasing.discard(session.server)
            self._handovers.gone(session.slug, session.server)
            log.warning("could not delete GameServer %s: %s", session.server, exc)
            raise BackendError(f"Could not release {session.server}: {exc}") from exc
        if not deleted:  # already gone: no DELETED event will come to clear the name
            self._releasing.discard(session.server)
            self._handovers.gone(session.slug, session.server)

    async def is_alive(self, session: Session) -> bool:
        """Asked after a refused connection: is this still the person's GameServer?"""
        try:
            gameserver = await self._kube.get_gameserver(session.server)
        except KubeError as exc:
            log.warning("cannot check GameServer %s: %s", session.server, exc)
            return True  # unknown: never hand out a second pod on a guess
        if gameserver is None or is_gone(gameserver):
            return False
        slug, _ = owner(gameserver)
        addresses = (gameserver.get("status") or {}).get("addresses")
        return slug == session.slug and pod_ip(addresses) == session.placement.host

    def on_gone(self, callback: GoneCallback) -> None:
        self._gone = callback

    async def inventory(self) -> list[Session]:
        """Our Allocated GameServers that are not being deleted."""
        try:
            listing = await self._kube.list_gameservers(USER_LABEL, "status.state=Allocated")
        except KubeError as exc:
            raise BackendError(f"Could not list GameServers: {exc}") from exc
        found = []
        for gameserver in listing.get("items", []):
            session = self._session_of(gameserver)
            if session is not None and not is_gone(gameserver):
                found.append(session)
        return found

    async def capacity(self) -> Capacity:
        """The Fleet's Ready GameServers, and those on their way (one list call)."""
        try:
            listing = await self._kube.list_gameservers(f"{FLEET_LABEL}={self._fleet}")
        except KubeError as exc:
            log.warning("could not count the Fleet's GameServers: %s", exc)
            return Capacity(free=None)
        ready, starting = fleet_capacity(listing.get("items") or [])
        return Capacity(free=ready, starting=starting)

    def _session_of(self, gameserver: dict[str, Any]) -> Session | None:
        slug, email = owner(gameserver)
        status = gameserver.get("status") or {}
        host = pod_ip(status.get("addresses"))
        port = port_named(status.get("ports"), self._port_name)
        if not slug or not email or host is None or port is None:
            return None
        name = str(gameserver["metadata"]["name"])
        placement = Placement(name, host, port, {"namespace": self._kube.namespace})
        return Session(email, slug, self.name, placement, allocated_at(gameserver))

    # -- allocating -----------------------------------------------------------------------

    async def _allocated(self, person: Person) -> dict[str, Any]:
        """The `status` of a successful allocation, retrying what a retry can fix."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(_worth_retrying),
            stop=stop_after_attempt(ATTEMPTS) | stop_after_delay(self._deadline),
            wait=wait_random_exponential(multiplier=0.05, max=2),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._allocate_once(person)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            if isinstance(last, Contention):
                raise NoCapacity from last
            raise AllocationFailed(UNREACHABLE) from last
        except KubeError as exc:  # the cause was logged; API details are not for people
            raise AllocationFailed(
                "The cluster refused to start a WebUI; try again later."
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _allocate_once(self, person: Person) -> dict[str, Any]:
        body = allocation_request(person, self._fleet, time.time())
        try:
            answer = await self._kube.allocate(body)
        except KubeError as exc:
            log.warning("allocation for %s failed: %s", person.email, exc)
            raise
        status = answer.get("status") or {}
        state = status.get("state")
        if state == "Allocated" and status.get("gameServerName"):
            return dict(status)
        if state == "Contention":
            log.info("allocation for %s met contention; retrying", person.email)
            raise Contention
        if state == "UnAllocated":
            raise NoCapacity
        raise KubeError(f"unexpected allocation answer: state {state!r}", 500)

    async def _wait_for_pod_ip(self, name: str) -> str:
        """Agones fills in the Pod IP asynchronously (since v1.58): wait for it, bounded."""
        deadline = time.monotonic() + self._pod_ip_wait
        while time.monotonic() < deadline:
            try:
                gameserver = await self._kube.get_gameserver(name)
            except KubeError as exc:
                log.warning("waiting for the Pod IP of %s: %s", name, exc)
                gameserver = {}
            if gameserver is None or (gameserver and is_gone(gameserver)):
                raise AllocationFailed("Your WebUI pod went away while starting; try again.")
            host = pod_ip(((gameserver or {}).get("status") or {}).get("addresses"))
            if host is not None:
                return host
            await asyncio.sleep(POD_IP_POLL_SECONDS)
        raise AllocationFailed(f"Your WebUI pod got no address within {self._pod_ip_wait:.0f} s.")

    async def _wait_for_outputs(self, name: str, slug: str) -> None:
        """Route nobody to a pod before its sidecar has switched the outputs folder to the
        person's own (else early pictures would land in the pod's own, lost on release).
        The watch usually brings the news; a GET every second covers a watch that is down."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmations[name] = (slug, future)
        deadline = time.monotonic() + self._outputs_wait
        try:
            while not future.done():
                left = deadline - time.monotonic()
                if left <= 0:
                    log.error(
                        "GameServer %s did not confirm the outputs folder of %s within %.0f s; "
                        "is the sd-allocator sidecar running? (SDA_OUTPUTS_WAIT=0 turns the "
                        "wait off)",
                        name, slug, self._outputs_wait,
                    )  # fmt: skip
                    raise AllocationFailed("Your WebUI could not prepare your outputs folder.")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), min(1.0, left))
                if not future.done():
                    await self._check_outputs(name, slug, future)
        finally:
            self._confirmations.pop(name, None)

    async def _check_outputs(self, name: str, slug: str, future: asyncio.Future[None]) -> None:
        try:
            gameserver = await self._kube.get_gameserver(name)
        except KubeError as exc:
            log.warning("waiting for the outputs folder of %s: %s", name, exc)
            return
        if gameserver is None or is_gone(gameserver):
            raise AllocationFailed("Your WebUI pod went away while starting; try again.")
        if outputs_ready(gameserver.get("metadata"), slug) and not future.done():
            future.set_result(None)

    # -- the watch ------------------------------------------------------------------------

    def _on_event(self, kind: str, gameserver: dict[str, Any]) -> None:
        self._confirm(gameserver)
        self._handovers.observe(kind, gameserver)
        if kind != "DELETED" and not is_gone(gameserver):
            return
        name = str((gameserver.get("metadata") or {}).get("name", ""))
        _, email = owner(gameserver)
        if name in self._releasing:  # our own deletion is no news
            if kind == "DELETED":
                self._releasing.discard(name)
            return
        if not email:
            return
        # Reported on every such event: forgetting a mapping is idempotent (it only drops
        # the person's mapping while it still names this GameServer).
        state = (gameserver.get("status") or {}).get("state")
        log.warning("GameServer %s of %s is gone (%s, %s)", name, email, kind, state)
        if self._gone is not None:
            task = asyncio.create_task(self._report_gone(email, name), name="gameserver-gone")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _confirm(self, gameserver: dict[str, Any]) -> None:
        metadata = gameserver.get("metadata") or {}
        waiting = self._confirmations.get(str(metadata.get("name", "")))
        if waiting is not None:
            slug, future = waiting
            if outputs_ready(metadata, slug) and not future.done():
                future.set_result(None)

    async def _report_gone(self, email: str, name: str) -> None:
        if self._gone is not None:
            await self._gone(email, name)


def _worth_retrying(exc: BaseException) -> bool:
    return isinstance(exc, Contention) or (isinstance(exc, KubeError) and exc.transient)
