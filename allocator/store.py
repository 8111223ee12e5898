"""SessionStore: who has which WebUI, when they last did something, who is allocating.

Layout in Redis (every key starts with `sda:`):
  sda:session:<email>   hash    the mapping (backend, server, host, port, handle, allocated_at,
                                accrued_to: how far its allocated time is counted, ledger.py)
  sda:activity          zset    email → last activity (unix seconds); "idle since T" is one
                                ZRANGEBYSCORE, O(log N + idle), never a scan
  sda:busy:<email>      zset    lease holder → lease expiry; work that outlives a few seconds
  sda:lock:<email>      string  allocation lock token, with expiry
  sda:progress:<email>  string  JSON: what the allocation is doing, with expiry
  sda:allocated         zset    email → allocated_at, for the optional maximum session age
  sda:reap:<email>      string  a cruiser pass's claim on reclaiming this session, with expiry
  sda:queue             zset    email → ticket: who waits for a GPU, first come first served
  sda:queue:seen        zset    email → when that queued person last asked (abandonment)
  sda:queue:joined      zset    email → when they joined (waiting time)
  sda:queue:tickets     string  the last ticket handed out
  sda:queue:freed       zset    recent WebUI give-backs (turnover, for estimates)
  sda:queue:capacity    string  JSON: new WebUIs on their way, as the dispatcher last saw
  sda:queue:dispatch    string  the replica deciding for the queue this moment, with expiry

Usage per day and store-wide totals are laid out in ledger.py, events in events.py. The queue's
operations are in waitqueue.py; admission is part of starting an allocation here,
so that "queue empty, go ahead" and "take the lock" are one atomic step.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from allocator.ledger import ACCRUE_FUNCTION, window_args, window_keys
from allocator.settings import MEMORY_STORE, PEM_BEGIN
from allocator.types import Placement, Progress, Session, State

log = logging.getLogger(__name__)

ACTIVITY = "sda:activity"
ALLOCATED = "sda:allocated"
QUEUE = "sda:queue"
QUEUE_SEEN = "sda:queue:seen"
QUEUE_JOINED = "sda:queue:joined"
QUEUE_TICKETS = "sda:queue:tickets"
QUEUE_KEYS = [QUEUE, QUEUE_SEEN, QUEUE_JOINED]
REQUEST = "request"  # begin_allocation for a person's own request (may join the queue)
NO_SERVER = "\x00"  # names no server: a drop with it only tidies the indexes

# Dropping a mapping counts its allocated time up to now first (ledger.py); KEYS[5..8] and
# ARGV[3..5] are the ledger's window.
_DROP = (
    ACCRUE_FUNCTION
    + """
local current = redis.call('HGET', KEYS[1], 'server')
if not current then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
if ARGV[2] ~= '' and current ~= ARGV[2] then return 0 end
accrue(KEYS[1], ARGV[1], 5, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""
)
_SAVE_IF_LOCKED = """
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[2])
redis.call('DEL', KEYS[3], KEYS[4])
for i = 6, 8 do redis.call('ZREM', KEYS[i], ARGV[2]) end
return 1
"""
# Start an allocation in one round trip: not if a mapping exists or another holds the lock.
# A person's own request (ARGV[7] = 'request') goes ahead only while nobody is queued; else
# they join the queue (or, queued already, are noted as still asking). The dispatcher serving
# the queue passes how many heads it serves (ARGV[7] = N): only one of the first N goes ahead.
# Going ahead takes the lock and publishes the first progress.
_BEGIN_ALLOCATION = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'exists' end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 'held' end
local rank = redis.call('ZRANK', KEYS[4], ARGV[5])
if ARGV[7] == 'request' then
  if rank then
    redis.call('ZADD', KEYS[5], ARGV[6], ARGV[5])
    return 'queued'
  end
  if redis.call('ZCARD', KEYS[4]) > 0 then
    redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[7]), ARGV[5])
    redis.call('ZADD', KEYS[5], ARGV[6], ARGV[5])
    redis.call('ZADD', KEYS[6], ARGV[6], ARGV[5])
    return 'joined'
  end
elseif not rank or rank >= tonumber(ARGV[7]) then
  return 'not_head'
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return 'ok'
"""
# Both scripts below may be retried by the client after a timeout: holding the lock or claim
# with one's own token already counts as success.
# A cruiser pass claims a session only if it is still the same mapping, still idle since the
# cutoff (none: its maximum age is up), holds no busy lease and no other pass has claimed it.
_CLAIM_REAP = """
local current = redis.call('HGET', KEYS[1], 'server')
if not current or current ~= ARGV[2] then return 'gone' end
if ARGV[3] ~= '' then
  local stamp = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if stamp and tonumber(stamp) > tonumber(ARGV[3]) then return 'active' end
end
if redis.call('ZCOUNT', KEYS[3], ARGV[4], '+inf') > 0 then return 'busy' end
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= ARGV[5] then return 'claimed' end
redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
return 'ok'
"""
_RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class StoreUnavailable(Exception):
    """Redis did not answer; the cause is in `__cause__` (never the URL: it may hold a password)."""


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as operators and the status page see it."""

    session: Session
    last_activity: float
    busy: bool


def session_key(email: str) -> str:
    return f"sda:session:{email}"


def _busy_key(email: str) -> str:
    return f"sda:busy:{email}"


def _encode_progress(progress: Progress) -> str:
    return json.dumps(
        {
            "state": progress.state.value,
            "message": progress.message,
            "since": progress.since,
            "restarted": progress.restarted,
        }
    )


def _reap_key(email: str) -> str:
    return f"sda:reap:{email}"


def lock_key(email: str) -> str:
    return f"sda:lock:{email}"


def progress_key(email: str) -> str:
    return f"sda:progress:{email}"


def connect(url: str, ca_cert: str | None = None) -> redis.Redis:
    """A pooled client for `url`, or an embedded in-process store for `memory`. `ca_cert`
    (PEM text or a file's path) is the CA a rediss:// server's certificate must chain to."""
    if url == MEMORY_STORE:
        import fakeredis

        server = fakeredis.FakeServer()  # private: never shared with another store object
        return cast(redis.Redis, fakeredis.FakeAsyncRedis(server=server, decode_responses=True))
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1)
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        health_check_interval=30,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        max_connections=64,
        **_tls_options(ca_cert),
    )


def _tls_options(ca_cert: str | None) -> dict[str, Any]:
    if not ca_cert:
        return {}
    if ca_cert.startswith(PEM_BEGIN):
        return {"ssl_ca_data": ca_cert}
    return {"ssl_ca_certs": ca_cert}


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


class SessionStore:
    def __init__(self, client: redis.Redis, usage_days: int = 90) -> None:
        self._redis = client
        self.usage_days = usage_days  # how long a day's usage is kept (SDA_USAGE_DAYS)
        self.client = client  # for the other views of the same data (waitqueue.py)
        self._drop = client.register_script(_DROP)
        self._save_if_locked = client.register_script(_SAVE_IF_LOCKED)
        self._renew_lock = client.register_script(_RENEW_LOCK)
        self._release_lock = client.register_script(_RELEASE_LOCK)
        self._claim_reap = client.register_script(_CLAIM_REAP)
        self._begin_allocation = client.register_script(_BEGIN_ALLOCATION)

    @classmethod
    def from_url(cls, url: str, ca_cert: str | None = None, usage_days: int = 90) -> SessionStore:
        return cls(connect(url, ca_cert), usage_days)

    async def close(self) -> None:
        await self._redis.aclose()

    async def ping(self) -> None:
        async with translate_errors():
            await self._redis.ping()

    # -- mappings -------------------------------------------------------------------------

    async def get(self, email: str) -> Session | None:
        async with translate_errors():
            fields = await self._redis.hgetall(session_key(email))
        return _decode_session(cast(dict[str, str], fields)) if fields else None

    async def save(self, session: Session, now: float, lock_token: str | None = None) -> bool:
        """Store the mapping and count its creation as activity; clears any progress.

        With `lock_token`, only while that allocation lock is still held (False otherwise):
        an allocation that lost its lock must not overwrite another replica's result. The
        lock is released with the save.
        """
        email = session.email
        keys = [
            session_key(email), ACTIVITY, progress_key(email), lock_key(email), ALLOCATED,
            *QUEUE_KEYS,
        ]  # fmt: skip
        # Its allocated time counts from now: a WebUI found again after its record was lost
        # is not charged for the time nobody knew of it.
        record: dict[str, str | int | float] = {**_encode_session(session), "accrued_to": now}
        fields = [str(part) for pair in record.items() for part in pair]
        async with translate_errors():
            if lock_token is not None:
                args: list[str | float] = [lock_token, email, now, session.allocated_at, *fields]
                return bool(await self._save_if_locked(keys=keys, args=args))
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(keys[0])
                pipe.hset(keys[0], mapping=record)  # type: ignore[arg-type]
                pipe.zadd(ACTIVITY, {email: now})
                pipe.zadd(ALLOCATED, {email: session.allocated_at})
                pipe.delete(keys[2])
                for key in QUEUE_KEYS:
                    pipe.zrem(key, email)
                await pipe.execute()
        return True

    async def drop(self, email: str, server: str | None = None) -> bool:
        """Remove the mapping, only if it still points at `server` (when given), counting its
        allocated time up to now."""
        keys, args = self._drop_call(email, server or "")
        async with translate_errors():
            return bool(await self._drop(keys=keys, args=args))

    def _drop_call(self, email: str, server: str) -> tuple[list[str], list[str | int | float]]:
        now = time.time()
        keys = [session_key(email), ACTIVITY, _busy_key(email), ALLOCATED, *window_keys(now)]
        return keys, [email, server, *window_args(now, self.usage_days)]

    async def count(self) -> int:
        async with translate_errors():
            return int(await self._redis.zcard(ACTIVITY))

    async def all_views(self, now: float) -> list[SessionView]:
        """Every session, least recently active first."""
        async with translate_errors():
            stamps = await self._redis.zrange(ACTIVITY, 0, -1, withscores=True)
            return await self._load_views(cast(list[tuple[str, float]], stamps), now)

    async def emails(self) -> list[str]:
        """Everyone with a session."""
        async with translate_errors():
            return [str(email) for email in await self._redis.zrange(ACTIVITY, 0, -1)]

    async def mapped_servers(self) -> list[tuple[str, str, str]]:
        """(email, backend, server) of every mapping: what reconciliation compares, two fields
        of each record instead of all of it and its busy leases."""
        async with translate_errors():
            emails = [str(email) for email in await self._redis.zrange(ACTIVITY, 0, -1)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for email in emails:
                    pipe.hmget(session_key(email), ["backend", "server"])
                replies = await pipe.execute()
        return [
            (email, str(backend), str(server))
            for email, (backend, server) in zip(emails, replies, strict=True)
            if backend and server
        ]

    async def view(self, email: str, now: float) -> SessionView | None:
        async with translate_errors():
            stamp = await self._redis.zscore(ACTIVITY, email)
            if stamp is None:
                return None
            views = await self._load_views([(email, float(stamp))], now)
        return views[0] if views else None

    async def _load_views(self, stamps: list[tuple[str, float]], now: float) -> list[SessionView]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for email, _ in stamps:
                pipe.hgetall(session_key(email))
                pipe.zcount(_busy_key(email), now, "+inf")
            replies = await pipe.execute()
        views: list[SessionView] = []
        for index, (_, stamp) in enumerate(stamps):
            fields, busy = replies[2 * index], replies[2 * index + 1]
            if fields:
                views.append(SessionView(_decode_session(fields), float(stamp), busy > 0))
        return views

    # -- activity and busy leases ---------------------------------------------------------

    async def touch(self, stamps: dict[str, float]) -> None:
        """Move last activity forward for existing sessions only (never resurrects one)."""
        if stamps:
            async with translate_errors():
                await self._redis.zadd(ACTIVITY, stamps, xx=True, gt=True)

    async def idle(self, cutoff: float, limit: int | None = None) -> list[tuple[str, float]]:
        """Sessions whose last activity is at or before `cutoff`, oldest first."""
        async with translate_errors():
            found = await self._redis.zrangebyscore(
                ACTIVITY, "-inf", cutoff, withscores=True, start=0 if limit else None, num=limit
            )
        return [(str(email), float(stamp)) for email, stamp in cast(list[tuple[str, float]], found)]

    async def allocated_before(self, cutoff: float) -> list[tuple[str, float]]:
        """Sessions allocated at or before `cutoff`, oldest first (maximum session age)."""
        async with translate_errors():
            found = await self._redis.zrangebyscore(ALLOCATED, "-inf", cutoff, withscores=True)
        return [(str(email), float(stamp)) for email, stamp in cast(list[tuple[str, float]], found)]

    async def get_many(self, emails: list[str]) -> dict[str, Session | None]:
        """Several mappings in one round trip."""
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for email in emails:
                pipe.hgetall(session_key(email))
            found = await pipe.execute()
        return {
            email: _decode_session(fields) if fields else None
            for email, fields in zip(emails, found, strict=True)
        }

    async def claim_reaps(
        self,
        sessions: list[tuple[Session, float | None]],
        now: float,
        token: str,
        ttl: float,
    ) -> list[str]:
        """Atomically re-check and claim reclaim candidates, one script each, one round trip.

        Per (session, cutoff): 'ok', or why not: 'gone' (no longer this mapping), 'active'
        (activity after `cutoff`), 'busy' (a live busy lease) or 'claimed' (another pass
        has it). No cutoff: the maximum session age is up, so recent activity does not save
        it (a busy lease still does)."""
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for session, cutoff in sessions:
                email = session.email
                keys = [session_key(email), ACTIVITY, _busy_key(email), _reap_key(email)]
                args: list[str | float] = [
                    email, session.server, "" if cutoff is None else cutoff, now, token, _ms(ttl)
                ]  # fmt: skip
                await self._claim_reap(keys=keys, args=args, client=pipe)
            return [str(outcome) for outcome in await pipe.execute()]

    async def finish_reaps(self, sessions: list[Session], token: str, dropped: bool) -> None:
        """Release this pass's claims, dropping the mappings first when `dropped`."""
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for session in sessions:
                email = session.email
                if dropped:
                    keys, args = self._drop_call(email, session.server)
                    await self._drop(keys=keys, args=args, client=pipe)
                await self._release_lock(keys=[_reap_key(email)], args=[token], client=pipe)
            if len(pipe):
                await pipe.execute()

    async def forget_unmapped(self, email: str) -> None:
        """Remove index entries of someone without a mapping (never a mapping itself)."""
        keys, args = self._drop_call(email, NO_SERVER)
        async with translate_errors():
            await self._drop(keys=keys, args=args)

    async def busy_now(self, email: str, now: float) -> bool:
        """Whether some replica holds a live busy lease for `email`."""
        async with translate_errors():
            return bool(await self._redis.zcount(_busy_key(email), now, "+inf"))

    async def busy_among(self, emails: list[str], now: float) -> set[str]:
        """Those of `emails` holding a live busy lease, in one round trip."""
        if not emails:
            return set()
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for email in emails:
                pipe.zcount(_busy_key(email), now, "+inf")
            counts = await pipe.execute()
        return {email for email, count in zip(emails, counts, strict=True) if count}

    async def being_reaped(self, email: str) -> bool:
        """Whether a cruiser pass has claimed this person's session right now."""
        async with translate_errors():
            return bool(await self._redis.exists(_reap_key(email)))

    async def hold_busy(self, emails: Iterable[str], holder: str, expires_at: float) -> None:
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for email in emails:
                pipe.zadd(_busy_key(email), {holder: expires_at})
                pipe.expireat(_busy_key(email), int(expires_at) + 1)
            if len(pipe):
                await pipe.execute()

    async def release_busy(self, emails: Iterable[str], holder: str) -> None:
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for email in emails:
                pipe.zrem(_busy_key(email), holder)
            if len(pipe):
                await pipe.execute()

    # -- allocation lock and progress -----------------------------------------------------

    async def acquire_lock(self, email: str, token: str, ttl: float) -> bool:
        async with translate_errors():
            return bool(await self._redis.set(lock_key(email), token, nx=True, px=_ms(ttl)))

    async def renew_lock(self, email: str, token: str, ttl: float) -> bool:
        async with translate_errors():
            return bool(await self._renew_lock(keys=[lock_key(email)], args=[token, _ms(ttl)]))

    async def release_lock(self, email: str, token: str) -> None:
        async with translate_errors():
            await self._release_lock(keys=[lock_key(email)], args=[token])

    async def lock_held(self, email: str) -> bool:
        async with translate_errors():
            return bool(await self._redis.exists(lock_key(email)))

    async def begin_allocation(
        self,
        email: str,
        token: str,
        ttl: float,
        progress: Progress,
        progress_ttl: float,
        heads: int | None = None,
    ) -> str:
        """'ok' (this token now holds the allocation lock and `progress` is published),
        'exists' (the person has a mapping), 'held' (someone else is allocating), 'queued'
        (people wait for a GPU and this person is one of them) or 'joined' (... and this
        person has just joined them). With `heads`, for the
        queue's dispatcher: 'ok' only for one of the first `heads` queued, else 'not_head'."""
        keys = [
            lock_key(email), session_key(email), progress_key(email), *QUEUE_KEYS,
            QUEUE_TICKETS,
        ]  # fmt: skip
        mode = REQUEST if heads is None else str(heads)
        args: list[str | int | float] = [
            token, _ms(ttl), _encode_progress(progress), _ms(progress_ttl), email,
            progress.since, mode,
        ]  # fmt: skip
        async with translate_errors():
            return str(await self._begin_allocation(keys=keys, args=args))

    async def set_progress(self, email: str, progress: Progress, ttl: float) -> None:
        async with translate_errors():
            await self._redis.set(progress_key(email), _encode_progress(progress), px=_ms(ttl))

    async def clear_progress(self, email: str) -> None:
        async with translate_errors():
            await self._redis.delete(progress_key(email))

    async def get_progress(self, email: str) -> Progress | None:
        async with translate_errors():
            raw = await self._redis.get(progress_key(email))
        if not raw:
            return None
        data = json.loads(raw)
        return Progress(State(data["state"]), data["message"], data["since"], data["restarted"])


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _encode_session(session: Session) -> dict[str, Any]:
    placement = session.placement
    return {
        "email": session.email,
        "slug": session.slug,
        "backend": session.backend,
        "server": placement.server,
        "host": placement.host,
        "port": placement.port,
        "handle": json.dumps(placement.handle),
        "allocated_at": session.allocated_at,
    }


def _decode_session(fields: dict[str, str]) -> Session:
    placement = Placement(
        server=fields["server"],
        host=fields["host"],
        port=int(fields["port"]),
        handle=json.loads(fields.get("handle") or "{}"),
    )
    return Session(
        email=fields["email"],
        slug=fields["slug"],
        backend=fields["backend"],
        placement=placement,
        allocated_at=float(fields["allocated_at"]),
    )
