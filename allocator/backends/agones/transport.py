"""Requests to the Kubernetes API through aiohttp, authenticated as the official client's
configuration says.

Measured (`make bench`, scenario `kubeclients`, BENCHMARKS.md): a call costs this process
0.12-0.24 ms of CPU this way, against 0.67-0.79 ms for the synchronous `kubernetes` client on a
thread pool and 0.51-0.67 ms for the asyncio clients (`kubernetes.aio`, `kubernetes_asyncio`); in a
storm those milliseconds queue on one core. So the official package still does what it does
well, loading the configuration (in-cluster service account with its rotating token, kubeconfig,
or Google credentials for a Cloud Function), and this module only sends the requests: the
authorization header comes from the configuration before each request, as the official client
does (its refresh hook re-reads the service account token file once a minute, and `client`
runs that at most every 10 s; the Cloud Function's refreshes the Google token when it is about
to expire: rare, short waits on the loop), TLS from its CA and client certificate.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from kubernetes import client

LINE_BYTES = 1 << 20  # a watch event is one line: one GameServer, a few KiB


FAILURES = (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError, TimeoutError, OSError)
"""No answer, a broken one (a line over `LINE_BYTES`), or no time left."""


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
        self._proxy = _proxy_for(configuration)
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        seconds: float | None = None,
    ) -> tuple[int, str, bytes]:
        """(status, reason, body) of one request; raises `TransportError` for no answer."""
        options = self._options()
        if body is not None:
            options["data"] = json.dumps(body).encode()
            options["headers"]["Content-Type"] = "application/json"
        if seconds is not None:  # else the configured timeout per call
            options["timeout"] = aiohttp.ClientTimeout(total=seconds)
        try:
            async with self._http().request(
                method, self._base + path, params=params, **options
            ) as response:
                return response.status, response.reason or "", await response.read()
        except FAILURES as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None

    async def lines(
        self, path: str, params: dict[str, str], read_timeout: float
    ) -> AsyncGenerator[bytes]:
        """The lines of a streamed GET (a watch) as they come; `TransportError` when the
        connection fails or nothing comes for ``read_timeout`` seconds."""
        options = self._options()
        options["timeout"] = aiohttp.ClientTimeout(total=None, connect=10, sock_read=read_timeout)
        try:
            async with self._http().get(self._base + path, params=params, **options) as response:
                if response.status >= 400:
                    body = await response.read()
                    raise StreamRefused(response.status, response.reason or "", body)
                async for line in response.content:
                    yield line
        except FAILURES as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _options(self) -> dict[str, Any]:
        """What every request carries: the authorization the configuration gives now (its
        refresh hook may read a file or the network), and its TLS name and proxy."""
        try:
            authorization = _header_of(self._configuration)
        except Exception as exc:  # a refresh hook failing: no credentials, so no answer
            raise TransportError(f"no credentials: {exc}") from None
        options: dict[str, Any] = {"headers": {"Accept": "application/json", **authorization}}
        if self._configuration.tls_server_name:
            options["server_hostname"] = self._configuration.tls_server_name
        if self._proxy:
            options["proxy"] = self._proxy
        return options

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No limit of our own: the callers bound their concurrency (the cruiser's is a
            # setting), and a wait for a free connection would eat into each call's timeout.
            connector = aiohttp.TCPConnector(ssl=self._tls(), limit=0)
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


def _proxy_for(configuration: client.Configuration) -> str | None:
    """The configuration's proxy, unless its host is one `no_proxy` names."""
    proxy = configuration.proxy
    if not proxy:
        return None
    host = urlsplit(str(configuration.host)).hostname or ""
    skipped = [entry.strip().lstrip(".") for entry in str(configuration.no_proxy or "").split(",")]
    if any(
        entry == "*" or host == entry or host.endswith("." + entry) for entry in skipped if entry
    ):
        return None
    return str(proxy)


def _header_of(configuration: client.Configuration) -> dict[str, str]:
    """What the official client would send: its auth settings that go in a header (asking
    for them runs the configuration's refresh hook, which may read a file or the network)."""
    settings: dict[str, Any] = dict(configuration.auth_settings())
    return {
        str(setting["key"]): str(setting["value"])
        for setting in settings.values()
        if setting.get("in") == "header" and setting.get("value")
    }
