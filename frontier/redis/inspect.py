"""`Inspector` on a Redis job: plain reads of the store's keys (`frontier.redis.keys`), no script, no write.

Items are keyed by id, not by URL (an index by URL would cost every `add` a write), so a URL is found
among its own host's queue, retries and leases: chunks of ids, each chunk's items read with one HMGET.
That costs a read of one host's queue (two round trips per 1,000 URLs), never a scan of the job.
Dead letters are a list, read in chunks until the URL is found.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import orjson
from redis.asyncio import Redis

from crawler.core.urlitem import UrlItem
from frontier.inspect import HostState, UrlState
from frontier.redis.codec import decode_robots, url_hash
from frontier.redis.keys import StoreKeys
from frontier.store import KeptRobots

__all__ = ["RedisInspector"]

CHUNK = 1000
_HOST_FIELDS = ("polite_at", "spacing", "concurrency", "inflight", "queued", "waiting", "budget", "admitted")


class RedisInspector:
    """Read-only questions to one job's store on a Redis client the caller owns (see the module docstring)."""

    def __init__(self, redis: Redis, keys: StoreKeys) -> None:
        self._r = redis
        self.keys = keys

    async def __aenter__(self) -> RedisInspector:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Nothing to release: the client is the caller's."""

    async def url_state(self, url: str, host: str) -> UrlState:
        """See `Inspector.url_state`."""
        raw_seen = await self._r.get(self.keys.seen(url_hash(url)))
        seen_at = None if raw_seen is None else float(raw_seen)
        prefix = orjson.dumps([url])[:-1] + b","  # an item's JSON starts with its URL
        leased = await self._leased(host, prefix)
        if leased is not None:
            item, expires = leased
            return UrlState(url, seen_at, "leased", item, lease_expires=expires)
        queued = await self._queued(host, prefix)
        if queued is not None:
            item, not_before, ahead = queued
            return UrlState(url, seen_at, "queued", item, not_before=not_before, ahead=ahead)
        dead = await self._dead(prefix)
        if dead is not None:
            u, h, depth, attempts, error, died_at, _ = dead
            return UrlState(url, seen_at, "dead", UrlItem(u, h, depth, attempts), error=error, died_at=died_at)
        return UrlState(url, seen_at)

    async def host_state(self, host: str) -> HostState | None:
        """See `Inspector.host_state`."""
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hmget(self.keys.host(host), _HOST_FIELDS)
            pipe.zscore(self.keys.due, host)
            values, due = await pipe.execute()
        if values[0] is None:
            return None
        polite, spacing, concurrency, inflight, queued, waiting, budget, admitted = values
        return HostState(
            host=host,
            due_at=None if due is None else float(due),
            polite_at=float(polite or 0),
            spacing=float(spacing or 0),
            concurrency=int(concurrency or 1),
            inflight=int(inflight or 0),
            queued=int(queued or 0) + int(waiting or 0),
            budget=None if budget in (None, b"") else int(budget),
            admitted=int(admitted or 0),
        )

    async def kept_robots(self, url: str) -> KeptRobots | None:
        """See `Inspector.kept_robots`."""
        raw = await self._r.get(self.keys.robots(url_hash(url)))
        return None if raw is None else decode_robots(url, raw)

    async def get_meta(self, key: str) -> str | None:
        """See `Inspector.get_meta`."""
        value = await self._r.hget(self.keys.meta, key)
        return None if value is None else value.decode()

    # ---------------------------------------------------------------- internals

    async def _items(self, ids: list[bytes]) -> list[bytes | None]:
        return await self._r.hmget(self.keys.items, ids) if ids else []

    async def _leased(self, host: str, prefix: bytes) -> tuple[UrlItem, float] | None:
        # Leases in flight are few (workers' concurrency): read them all.
        mine: list[tuple[bytes, bytes]] = []
        for token, value in (await self._r.hgetall(self.keys.lease)).items():
            item_id, _, lease_host = value.partition(b" ")
            if lease_host.decode() == host:
                mine.append((token, item_id))
        payloads = await self._items([item_id for _, item_id in mine])
        for (token, _), raw in zip(mine, payloads, strict=True):
            if raw is not None and raw.startswith(prefix):
                expires = await self._r.zscore(self.keys.leases, token)
                return UrlItem(*orjson.loads(raw)[:4]), float(expires or 0.0)
        return None

    async def _queued(self, host: str, prefix: bytes) -> tuple[UrlItem, float, int] | None:
        retries = {int(i): float(at) for i, at in await self._r.zrange(self.keys.retry(host), 0, -1, withscores=True)}
        found: tuple[UrlItem, int, float] | None = None
        start = 0
        while found is None:
            ids = await self._r.zrange(self.keys.queue(host), start, start + CHUNK - 1)
            for item_id, raw in zip(ids, await self._items(ids), strict=True):
                if raw is not None and raw.startswith(prefix):
                    found = (UrlItem(*orjson.loads(raw)[:4]), int(item_id), 0.0)
                    break
            if len(ids) < CHUNK:
                break
            start += CHUNK
        if found is None:
            waiting = sorted(retries)
            for s in range(0, len(waiting), CHUNK):
                ids = [str(i).encode() for i in waiting[s : s + CHUNK]]
                for item_id, raw in zip(ids, await self._items(ids), strict=True):
                    if raw is not None and raw.startswith(prefix):
                        found = (UrlItem(*orjson.loads(raw)[:4]), int(item_id), retries[int(item_id)])
                        break
                if found is not None:
                    break
        if found is None:
            return None
        item, item_id, not_before = found
        # Queue order is the item id, for eligible URLs and waiting retries alike.
        eligible_ahead = await self._r.zcount(self.keys.queue(host), "-inf", f"({item_id}")
        return item, not_before, int(eligible_ahead) + sum(1 for i in retries if i < item_id)

    async def _dead(self, prefix: bytes) -> list[Any] | None:
        start = 0
        last: list[Any] | None = None
        while True:
            raws = await self._r.lrange(self.keys.dead, start, start + CHUNK - 1)
            for raw in raws:
                if raw.startswith(prefix):
                    last = orjson.loads(raw)  # requeued and dead again: the newest letter wins
            if len(raws) < CHUNK:
                return last
            start += CHUNK
