"""Everything Agones: WebUIs as GameServers of a Fleet on a Kubernetes cluster (docs/agones.md).

- `backend`: `AgonesBackend`, the Backend itself (allocate, release, inventory, capacity).
- `client`: `KubeApi`, the few Kubernetes API calls we make, and loading credentials.
- `transport`: sending them with aiohttp, authenticated as the loaded configuration says.
- `gke`: reaching a GKE cluster's API from outside it (the cruiser as a Cloud Function).
- `watch`: `GameServerWatch`, following our GameServers through the watch API.
- `gameservers`: the allocation request and what a GameServer says (pure functions).
- `handover`: waiting for a person's previous pod to hand over before their next one starts.
"""

from __future__ import annotations

from allocator.backends.agones.backend import AgonesBackend

__all__ = ["AgonesBackend"]
