"""KubeApi: the few Agones calls we make, through the official `kubernetes` client.

The client is synchronous, so every call runs on a small thread pool of its own and the event
loop never blocks. One `ApiClient` (one urllib3 pool, sized to the thread pool) lives as long as
the process. Client errors are turned into two exceptions: `KubeError` (the API answered no, or
not at all) with `transient` telling whether trying again can help.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

log = logging.getLogger(__name__)

AGONES = ("agones.dev", "v1")
ALLOCATION = ("allocation.agones.dev", "v1")
# Agones' aggregated allocation API fails a request without a media type; the Python client
# sends none on custom-object creates unless told (see docs/agones.md).
JSON_HEADERS = {"Content-Type": "application/json"}
THREADS = 16  # at least the cruiser's default concurrency


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
    configuration.connection_pool_maxsize = THREADS
    configuration.retries = False  # our callers decide what to retry
    return configuration


class KubeApi:
    def __init__(
        self, namespace: str, timeout: float, configuration: client.Configuration | None = None
    ) -> None:
        self.namespace = namespace
        self.timeout = timeout  # seconds per API call
        self._configuration = configuration or load_configuration()
        self._api_client = client.ApiClient(self._configuration)
        self.objects = client.CustomObjectsApi(self._api_client)
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="kube")

    async def allocate(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a GameServerAllocation; its outcome is in `status.state`."""
        answer: dict[str, Any] = await self._call(
            self.objects.create_namespaced_custom_object,
            *ALLOCATION,
            self.namespace,
            "gameserverallocations",
            body,
            _headers=JSON_HEADERS,
        )
        return answer

    async def get_gameserver(self, name: str) -> dict[str, Any] | None:
        """The GameServer, or None when it does not exist."""
        try:
            gameserver: dict[str, Any] = await self._call(
                self.objects.get_namespaced_custom_object,
                *AGONES,
                self.namespace,
                "gameservers",
                name,
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return gameserver

    async def list_gameservers(
        self, label_selector: str = "", field_selector: str = ""
    ) -> dict[str, Any]:
        """The GameServerList (items and `metadata.resourceVersion`)."""
        listing: dict[str, Any] = await self._call(
            self.objects.list_namespaced_custom_object,
            *AGONES,
            self.namespace,
            "gameservers",
            label_selector=label_selector,
            field_selector=field_selector,
        )
        return listing

    async def delete_gameserver(self, name: str) -> bool:
        """Delete it (Agones stops the pod; the Fleet replaces it). False if already gone."""
        try:
            await self._call(
                self.objects.delete_namespaced_custom_object,
                *AGONES,
                self.namespace,
                "gameservers",
                name,
                _headers=JSON_HEADERS,
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.timeout)
        call = functools.partial(_translated, method, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api_client.close()


def _translated(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return method(*args, **kwargs)
    except ApiException as exc:
        raise KubeError(_describe(exc), exc.status or 0) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(f"no answer from the Kubernetes API: {exc}") from None


def _describe(exc: ApiException) -> str:
    """`HTTP 403 Forbidden: <the Status message>`, without response headers."""
    detail = ""
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
    if body:
        try:
            detail = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            detail = body.strip()[:200]
    text = f"HTTP {exc.status} {exc.reason or ''}".strip()
    return f"{text}: {detail}" if detail else text
