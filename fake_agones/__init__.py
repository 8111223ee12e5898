"""A fake Kubernetes API server with Agones v1.60 on it, for tests and benchmarks.

Real HTTP on loopback, the real REST paths and JSON, so the product's unmodified
``kubernetes`` client talks to it: GameServerAllocation create (the Agones extension
server's decoding, validation, selector semantics and answers), GameServer get, list, watch,
patch and delete (kube-apiserver's selectors, resourceVersions, watch cache and errors), a
Fleet that keeps its replicas through the GameServer lifecycle, and GameServers that can be
backed by real processes on their own loopback Pod IPs, the real sidecar among them with a
per-Pod Agones SDK server (``SidecarBacking``, ``fake_agones.sdk_server``). Where a behaviour
comes from is written in each module's docstring. Not modelled: TLS and client
certificates, RBAC, create and update of GameServers, JSON and apply patches,
Reserved/Counters/Lists/Players at runtime, managedFields, Events, more than one node or
Fleet, allocation batching.

Start it in-process with ``FakeAgones(...).start()`` or as ``python -m fake_agones``.
"""

from fake_agones.backing import AppBacking, Backing, BackingFailed, NoBacking, Pod, ProcessBacking
from fake_agones.controller import Timings
from fake_agones.faults import AllocationFault
from fake_agones.server import FakeAgones, free_port
from fake_agones.sidecar_backing import SidecarBacking
from fake_agones.views import AllocationRecord, GameServerView

__all__ = [
    "AllocationFault",
    "AllocationRecord",
    "AppBacking",
    "Backing",
    "BackingFailed",
    "FakeAgones",
    "GameServerView",
    "NoBacking",
    "Pod",
    "ProcessBacking",
    "SidecarBacking",
    "Timings",
    "free_port",
]
