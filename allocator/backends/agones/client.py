"""KubeApi: the few Agones calls we make.

The official `kubernetes` package loads the configuration (credentials, CA, the API's address);
the calls of the hot paths (allocate, get, list, delete) go out through aiohttp on the event
loop (`transport`: a fraction of the CPU per call of the synchronous client on a thread pool,
measured in `make bench`), the GameServer watch too. Failures become one exception,
`KubeError` (the API answered no, or not at all), with `transient` telling whether trying again
can help.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from allocator.backends.agones.transport import StreamRefused, Transport, TransportError

log = logging.getLogger(__name__)

AGONES = ("agones.dev", "v1")
ALLOCATION = ("allocation.agones.dev", "v1")
# The official loaders' refresh hooks re-apply their whole configuration before every call,
# re-reading the proxy environment (about 0.1 ms of CPU each time). What they guard changes
# rarely: the in-cluster token file is re-read once a minute, a kubeconfig token is renewed
# 5 minutes before it expires. So the hook runs at most this often.
REFRESH_SECONDS = 10.0


class KubeError(Exception):
    """A Kubernetes API call failed. `status` is the HTTP status, 0 when there was no answer."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def transient(self) -> bool:
        """Whether the same call may succeed later: no answer, 429 or a 5xx."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class KubeConfigError(Exception):
    """Neither in-cluster credentials nor a kubeconfig could be loaded."""


def load_configuration(
    api_url: str | None = None, ca_cert: str | None = None
) -> client.Configuration:
    """With `api_url`: that cluster, as this Google service account (a Cloud Function).
    Otherwise in-cluster credentials in a pod, else the kubeconfig (`KUBECONFIG`)."""
    configuration = client.Configuration()
    try:
        if api_url:
            from allocator.backends.agones.gke import google_configuration

            configuration = google_configuration(api_url, ca_cert)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            # Read KUBECONFIG now: the client reads it once, when it is first imported.
            config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
        if not api_url and configuration.refresh_api_key_hook is not None:
            configuration.refresh_api_key_hook = _at_most_every(
                REFRESH_SECONDS, configuration.refresh_api_key_hook
            )
    except (ConfigException, OSError, ValueError) as exc:
        raise KubeConfigError(
            f"no Kubernetes credentials: {exc} (set KUBECONFIG or run in a pod)"
        ) from exc
    except ImportError as exc:
        raise KubeConfigError(
            f"SDA_KUBE_API_URL needs google-auth: pip install 'sd-allocator[function]' ({exc})"
        ) from exc
    except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError and kin
        raise KubeConfigError(f"no Google credentials for {api_url}: {exc}") from exc
    return configuration


RefreshHook = Callable[[client.Configuration], None]


def _at_most_every(
    seconds: float, hook: RefreshHook, clock: Callable[[], float] = time.monotonic
) -> RefreshHook:
    """`hook`, run again only `seconds` after its last success (a failure is retried at once).
    The loaders' hooks install a fresh hook of theirs each time they run: that one is wrapped
    from then on."""
    succeeded_at = -math.inf

    def refresh(configuration: client.Configuration) -> None:
        nonlocal succeeded_at, hook
        now = clock()
        if now - succeeded_at < seconds:
            return
        try:
            hook(configuration)
        finally:
            installed = configuration.refresh_api_key_hook
            if installed is not None and installed is not refresh:
                hook = installed
            configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]
        succeeded_at = now

    return refresh


class KubeApi:
    def __init__(
        self, namespace: str, timeout: float, configuration: client.Configuration | None = None
    ) -> None:
        self.namespace = namespace
        self.timeout = timeout  # seconds per API call
        self._configuration = configuration or load_configuration()
        self._transport = Transport(self._configuration, timeout)

    async def allocate(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a GameServerAllocation; its outcome is in `status.state`."""
        path = f"/apis/{'/'.join(ALLOCATION)}/namespaces/{self.namespace}/gameserverallocations"
        return await self._json("POST", path, body)

    async def get_gameserver(self, name: str) -> dict[str, Any] | None:
        """The GameServer, or None when it does not exist."""
        try:
            return await self._json("GET", self._gameservers(name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list_gameservers(
        self, label_selector: str = "", field_selector: str = "", seconds: float | None = None
    ) -> dict[str, Any]:
        """The GameServerList (items and `metadata.resourceVersion`); ``seconds`` instead of
        the timeout per call (a whole Fleet's list may take longer)."""
        params = {"labelSelector": label_selector, "fieldSelector": field_selector}
        chosen = {key: value for key, value in params.items() if value}
        return await self._json("GET", self._gameservers(), params=chosen, seconds=seconds)

    async def delete_gameserver(self, name: str) -> bool:
        """Delete it (Agones stops the pod; the Fleet replaces it). False if already gone."""
        try:
            await self._json("DELETE", self._gameservers(name))
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def watch_gameservers(
        self, label_selector: str, version: str, seconds: int, read_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events (``type``, ``object``) of GameServers from ``version`` on, until
        the server ends the stream after about ``seconds``. `KubeError` for a refused watch
        (410 when the version is too old) and for no answer."""
        params = {
            "watch": "true",
            "labelSelector": label_selector,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        lines = self._transport.lines(self._gameservers(), params, read_timeout)
        try:
            async with contextlib.aclosing(lines):  # its connection goes when we stop reading
                async for line in lines:
                    if line.strip():
                        yield _event(line)
        except StreamRefused as exc:
            raise KubeError(_describe(exc.status, exc.reason, exc.body), exc.status) from None
        except TransportError as exc:
            raise KubeError(f"the watch stream failed: {exc}") from None

    async def close(self) -> None:
        await self._transport.close()

    def _gameservers(self, name: str = "") -> str:
        path = f"/apis/{'/'.join(AGONES)}/namespaces/{self.namespace}/gameservers"
        return f"{path}/{name}" if name else path

    async def _json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        seconds: float | None = None,
    ) -> dict[str, Any]:
        try:
            status, reason, data = await self._transport.request(
                method, path, body, params, seconds
            )
        except TransportError as exc:
            raise KubeError(f"no answer from the Kubernetes API: {exc}") from None
        if status >= 400:
            raise KubeError(_describe(status, reason, data), status)
        try:
            answer: dict[str, Any] = json.loads(data)
        except ValueError:
            raise KubeError(f"HTTP {status}: an answer that is not JSON", 500) from None
        return answer


def _event(line: bytes) -> dict[str, Any]:
    """One watch event; an ERROR event (a Status) becomes the `KubeError` it reports."""
    try:
        event: dict[str, Any] = json.loads(line)
    except ValueError:
        raise KubeError("the watch stream sent something that is not JSON") from None
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        code = int(status.get("code") or 500)
        raise KubeError(f"HTTP {code}: {status.get('message', 'watch error')}", code)
    return event


def _describe(status: int, reason: str, body: bytes) -> str:
    """`HTTP 403 Forbidden: <the Status message>`, without response headers."""
    detail = ""
    text = body.decode(errors="replace")
    if text:
        try:
            detail = str(json.loads(text).get("message", ""))
        except (ValueError, AttributeError):
            detail = text.strip()[:200]
    heading = f"HTTP {status} {reason}".strip()
    return f"{heading}: {detail}" if detail else heading
