"""KeySetSource: IAP's public JWK set, fetched at start, refreshed hourly, and fetched again
when a token names a key we do not have (IAP rotates keys), at most once per
`refetch` seconds (SDA_IAP_KEY_REFETCH), so garbage tokens cannot make us hammer Google."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import aiohttp
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

log = logging.getLogger(__name__)

REFRESH_SECONDS = 3600.0
RETRY_SECONDS = 10.0  # while no key set could be fetched
PROBE_REFETCH_SECONDS = 2.0  # a readiness probe may try again this often while there is none
PROBE_WAIT_SECONDS = 2.0  # ... and waits for the answer at most this long (probes time out)
FETCH_TIMEOUT = 5.0
MAX_BYTES = 1 << 20


class KeySetSource:
    def __init__(self, url: str, refetch: float = 30.0) -> None:
        self._url = url
        self._refetch = refetch
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._fetched_at = 0.0  # monotonic time of the last attempt
        self._problem: str | None = "the IAP key set has not been fetched yet"
        self._lock = asyncio.Lock()
        self._client: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def problem(self) -> str | None:
        """Why tokens cannot be verified now (no key set), or None."""
        return None if self._keys is not None else self._problem

    async def check(self) -> str | None:
        """Like `problem`, but without a key set first tries again (at most every 2 s, and
        waiting at most 2 s): a readiness probe sees the key server's return at once, not
        at the next background retry."""
        if self._keys is None and time.monotonic() - self._fetched_at >= PROBE_REFETCH_SECONDS:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fetch_unless_fetched(), PROBE_WAIT_SECONDS)
        return self.problem

    async def _fetch_unless_fetched(self) -> None:
        async with self._lock:
            if self._keys is None:
                await self._fetch()

    async def start(self) -> None:
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT))
        await self._fetch()
        self._task = asyncio.create_task(self._refresh(), name="iap-keys")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.close()

    async def for_kid(self, kid: str) -> KeySet | None:
        """The key set if it holds `kid` (fetching again if allowed), else None."""
        if kid in self._kids:
            return self._keys
        async with self._lock:
            if kid not in self._kids and time.monotonic() - self._fetched_at >= self._refetch:
                log.info("IAP token names unknown key %r; fetching the key set again", kid[:64])
                await self._fetch()
        return self._keys if kid in self._kids else None

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS if self._keys is not None else RETRY_SECONDS)
            async with self._lock:
                await self._fetch()

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        assert self._client is not None
        try:
            async with self._client.get(self._url) as response:
                response.raise_for_status()
                body = await response.content.read(MAX_BYTES + 1)
            if len(body) > MAX_BYTES:
                raise ValueError("larger than 1 MiB")
            keys = KeySet.import_key_set(_json(body))  # type: ignore[arg-type]
        except (aiohttp.ClientError, TimeoutError, ValueError, JoseError) as exc:
            self._problem = f"cannot fetch the IAP key set from {self._url}: {exc}"
            log.warning("%s", self._problem)
            return
        self._keys = keys
        self._kids = frozenset(key.kid for key in keys.keys if key.kid)
        log.info("IAP key set fetched: %d keys", len(self._kids))


def _json(body: bytes) -> dict[str, object]:
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWK set")
    return data
