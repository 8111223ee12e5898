"""Requests to the Kubernetes API through aiohttp, authenticated as the official client's
configuration says.

Measured (`make bench`, scenario `kubeclients`, BENCHMARKS.md): a call costs this process about
0.2 ms of CPU this way, against 0.74 ms for the synchronous `kubernetes` client on a thread
pool and 0.55-0.61 ms for the asyncio clients (`kubernetes.aio`, `kubernetes_asyncio`); in a
storm those milliseconds queue on one core. So the official package still does what it does
well, loading the configuration (in-cluster service account with its rotating token, kubeconfig,
or Google credentials for a Cloud Function), and this module only sends the requests: the
authorization header comes from the configuration before each request, as the official client
does (its refresh hook re-reads the service account token file once a minute, or refreshes the
Google token when it is about to expire: rare, short waits on the loop), TLS from its CA and
client certificate.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from kubernetes import client

CONNECTIONS = 64
LINE_BYTES = 1 << 20  # a watch event is one line: one GameServer, a few KiB


class TransportError(Exception):
    """No answer: the connection failed or the time ran out."""


class StreamRefused(Exception):
    """A stream was answered with an error status instead of a stream."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status, self.reason, self.body = status, reason, body


class Transport:
    def __init__(self, configuration: client.Configuration, timeout: float) -> None:
        self._configuration = configuration
        self._base = str(configuration.host).rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, str, bytes]:
        """(status, reason, body) of one request; raises `TransportError` for no answer."""
        headers = {"Accept": "application/json", **_header_of(self._configuration)}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(
                method, self._base + path, data=data, params=params, headers=headers
            ) as response:
                return response.status, response.reason or "", await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None

    async def lines(
        self, path: str, params: dict[str, str], read_timeout: float
    ) -> AsyncIterator[bytes]:
        """The lines of a streamed GET (a watch) as they come; `TransportError` when the
        connection fails or nothing comes for ``read_timeout`` seconds."""
        headers = {"Accept": "application/json", **_header_of(self._configuration)}
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=read_timeout)
        try:
            async with self._http().get(
                self._base + path, params=params, headers=headers, timeout=timeout
            ) as response:
                if response.status >= 400:
                    raise StreamRefused(
                        response.status, response.reason or "", await response.read()
                    )
                async for line in response.content:
                    yield line
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._tls(), limit=CONNECTIONS)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, read_bufsize=LINE_BYTES
            )
        return self._session

    def _tls(self) -> ssl.SSLContext | bool:
        configuration = self._configuration
        if not self._base.startswith("https:"):
            return False
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
        return context


def _header_of(configuration: client.Configuration) -> dict[str, str]:
    """What the official client would send: its auth settings that go in a header (asking
    for them runs the configuration's refresh hook, which may read a file or the network)."""
    settings: dict[str, Any] = dict(configuration.auth_settings())
    return {
        str(setting["key"]): str(setting["value"])
        for setting in settings.values()
        if setting.get("in") == "header" and setting.get("value")
    }
