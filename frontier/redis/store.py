"""The distributed frontier: `FrontierStore` on one Redis primary, shared by many crawler processes.

Every contract step is one Lua script (`frontier/redis/lua/<step>.lua`, with `common.lua` prepended) run
with one EVALSHA, so each call is atomic and costs one round trip however many items it carries.
The key layout is in `frontier.redis.keys`. Scripts are loaded when the store opens and reloaded
transparently if Redis lost them (restart, `SCRIPT FLUSH`): a NOSCRIPT reply means nothing ran.

Durability: unlike SQLite, Redis applies each call as it returns, so `flush` is a no-op that only
exists for the contract, and `set_meta` writes at once. What survives a Redis crash depends on the
server's persistence (`appendonly yes` with `appendfsync always` loses nothing acknowledged).

Failures: a Redis error surfaces from every method as `redis.exceptions.ConnectionError` or
`TimeoutError`; the store retries nothing itself, because a script that ran but whose reply was
lost would apply twice. The caller backs off and carries on; work it could not report is handed
back by `reclaim_expired` once its leases expire.

Decisions the contract leaves open (the same as `SqliteStore` unless noted):
* Seen entries are keyed by xxh3-64 of the URL (16 hex digits). Each stores the caller's `now`; an
  entry exactly `seen_ttl` old is still seen. Redis expires it `seen_ttl + 1 s` after it was written
  (real time), which only garbage-collects: callers' clocks are assumed not to run slower than real
  time.
* `host_limits` is asked only for hosts Redis has never seen, once per host across all processes.
  Learning that costs one more EVALSHA: the script reports the unknown hosts without writing
  anything, and the call is repeated with their limits.
* Hosts due at the same time are claimed in host-name order (SQLite: creation order).
* A URL over its host's budget is not marked seen; a stale outcome's links are still added; retries
  keep their place; `next_due` is `math.inf` when every host with queued URLs is at its concurrency
  limit; `release` and `reclaim_expired` delete the lease, so its token is stale from then on.
* Requeued dead letters get new ids (the tail of their queue) and attempts 0.
* Recrawl: `fetched` is keyed by "<depth> <host> <url>", so a URL fetched at two depths is listed twice
  (queued once, at the depth of its older fetch). Validators live apart (`valid`, only for pages that had
  any, replaced or deleted by each done outcome).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from redis.asyncio import ConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, ResponseError
from redis.retry import Retry

from crawler.core.urlitem import UrlItem
from frontier.redis import codec
from frontier.redis.client import CountingRedis, RedisTraffic
from frontier.redis.codec import (
    fetched_member,
    items_json,
    lease_of,
    limit_args,
    limits_json,
    payload,
    url_hash,
)
from frontier.redis.keys import StoreKeys, is_store_key
from frontier.store import (
    AddResult,
    Counts,
    DeadLetter,
    Fenced,
    HostLimits,
    HostLimitsFn,
    KeptRobots,
    Lease,
    Outcome,
    Recrawled,
)

__all__ = ["SCRIPTS", "RedisStore"]

_LUA = Path(__file__).resolve().parent / "lua"
#: The scripts, one per atomic step; each is `common.lua` followed by `<name>.lua`.
SCRIPTS = (
    "add",
    "claim",
    "complete",
    "release",
    "reclaim",
    "next_due",
    "set_limits",
    "requeue_dead",
    "top_hosts",
    "recrawl",
)
_KIND = {"done": "d", "retry": "r", "dead": "x"}
_COUNTERS = ("queued", "leased", "done", "dead", "hosts")
#: Hosts one `top_hosts` script call reads (bounds how long it holds Redis).
TOP_HOSTS_SLICE = 2000
# Seen entries outlive seen_ttl a little in Redis: the stored `now` decides, the TTL only cleans up.
_SEEN_GRACE_MS = 1000


class RedisStore:
    """`FrontierStore` on Redis; see the module docstring for durability, failures and open decisions."""

    def __init__(
        self,
        client: CountingRedis,
        pool: ConnectionPool,
        keys: StoreKeys,
        host_limits: HostLimitsFn,
        seen_ttl: float,
        lease_ttl: float,
    ) -> None:
        # Use `RedisStore.open`; this only wires an already connected client.
        self._r = client
        self._pool = pool
        self.keys = keys
        self._host_limits = host_limits
        self._seen_ttl = seen_ttl
        self._seen_px = max(1, math.ceil(seen_ttl * 1000)) + _SEEN_GRACE_MS
        self._lease_ttl = lease_ttl
        self._sources = {name: _source(name) for name in SCRIPTS}
        self._shas: dict[str, str] = {}
        self._closed = False
        self._fence: tuple[str, str] | None = None

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        job: str,
        host_limits: HostLimitsFn,
        seen_ttl: float = 7 * 86400,
        lease_ttl: float = 600,
        fresh: bool = False,
    ) -> RedisStore:
        """Connect to `url` (`redis://` or `rediss://`, password allowed) and load the scripts for `job`.

        `fresh=True` first deletes this job's store keys (SCAN + UNLINK); other jobs and the job's
        coordination keys are left alone.
        """
        keys = StoreKeys(job)
        pool = ConnectionPool.from_url(
            url,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 0),
        )
        client = CountingRedis(connection_pool=pool)
        store = cls(client, pool, keys, host_limits, seen_ttl, lease_ttl)
        try:
            if fresh:
                await store._delete_job()
            await store._load_scripts()
        except BaseException:
            await store.close()
            raise
        return store

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def flush(self) -> None:
        """No-op: every call is applied by Redis before it returns."""

    async def close(self) -> None:
        """Close the connection pool this store owns; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._r.aclose()
        await self._pool.disconnect()

    @property
    def traffic(self) -> RedisTraffic:
        """What this store sent to Redis (every command, script call and pipeline of its own client)."""
        return self._r.traffic

    @property
    def round_trips(self) -> int:
        """Requests sent to Redis by this store (one per call, plus one per NOSCRIPT reload or host discovery)."""
        return self._r.traffic.round_trips

    def fence(self, key: str, holder: str) -> None:
        """From now on every script runs only while `key` holds `holder` (the frontier leader's key and id);
        otherwise it changes nothing and raises `Fenced`."""
        self._fence = (key, holder)

    async def ping(self) -> None:
        """Check that Redis answers; raises `redis.exceptions.ConnectionError` if not."""
        await self._r.ping()

    async def info(self) -> dict[str, int]:
        """Sizes for monitoring: queued, leased, done, dead, hosts, and seen (entries written, expiry ignored)."""
        fields = (*_COUNTERS, "seen")
        values = await self._r.hmget(self.keys.counters, fields)
        return {name: int(v or 0) for name, v in zip(fields, values, strict=True)}

    # ---------------------------------------------------------------- contract

    async def add(self, items: Sequence[UrlItem], now: float) -> AddResult:
        """Queue each item whose URL is not seen (or whose seen entry expired), and mark it seen."""
        if not items:
            return AddResult()
        section, intra_dups = items_json(items)
        res = await self._with_limits("add", [now, now - self._seen_ttl, self._seen_px], section)
        _, queued, dups, over = res
        return AddResult(queued=int(queued), duplicates=intra_dups + int(dups), over_budget=int(over))

    async def claim(self, now: float, limit: int) -> list[Lease]:
        """Lease up to `limit` URLs from due hosts, at most one per host, oldest-due host first."""
        if limit <= 0:
            return []
        expires_at = now + self._lease_ttl
        res = await self._eval("claim", [now, expires_at, int(limit)])
        return [lease_of(int(res[i]), res[i + 1], expires_at) for i in range(0, len(res), 2)]

    async def complete(self, outcomes: Sequence[Outcome], now: float) -> int:
        """Apply outcomes; returns how many were stale (token mismatch) and ignored."""
        if not outcomes:
            return 0
        flat: list[Any] = []
        links: list[UrlItem] = []
        for o in outcomes:
            kind = _KIND.get(o.kind)
            if kind is None:
                raise ValueError(f"unknown outcome kind {o.kind!r}")
            item = o.lease.item
            h = valid = ""
            if kind == "d" and item.kind:
                data = ""  # a sitemap is not recrawled as such: its host's robots.txt names it again
            elif kind == "d":
                data = fetched_member(item)
                h = url_hash(item.url)
                if o.validators is not None:
                    valid = orjson.dumps([o.validators.etag, o.validators.last_modified]).decode()
            elif kind == "r":
                data = payload(item, item.attempts + 1, o.lease.validators).decode()
            else:
                etype = None if o.error is None else o.error.get("type")
                dead = [item.url, item.host, item.depth, item.attempts + 1, o.error, now, etype, *item.extras()]
                data = orjson.dumps(dead).decode()
            flat += [int(o.lease.token), kind, float(o.host_due), float(o.retry_at), data, h, valid]
            links.extend(o.links)
        section, _ = items_json(links)
        head = [now, now - self._seen_ttl, self._seen_px, orjson.dumps(flat)]
        res = await self._with_limits("complete", head, section)
        seen = [u for o in outcomes for u in o.seen]
        if seen:
            # Fetched already (redirect targets): seen like an added URL (same key and expiry), not queued.
            async with self._r.pipeline(transaction=False) as pipe:
                for url in seen:
                    pipe.set(self.keys.seen(url_hash(url)), repr(now), px=self._seen_px)
                await pipe.execute()
        return int(res[1])

    async def release(self, leases: Sequence[Lease], now: float) -> None:
        """Give leases back unfetched, at their old place (the head) of their host queue."""
        await self.release_tokens([x.token for x in leases])

    async def release_tokens(self, tokens: Sequence[int]) -> int:
        """`release` by token alone (unknown tokens are ignored); returns how many were released."""
        if not tokens:
            return 0
        return int(await self._eval("release", [int(t) for t in tokens]))

    async def lease_tokens(self) -> list[int]:
        """Tokens of every lease out now (for a new leader's reconciliation; small: leases in flight)."""
        return [int(t) for t in await self._r.hkeys(self.keys.lease)]

    async def reclaim_expired(self, now: float) -> int:
        """Requeue leases whose `expires_at` is at or before `now`; returns how many."""
        return int(await self._eval("reclaim", [now]))

    async def next_due(self, now: float) -> float | None:
        """Earliest time a claim could succeed (`now` if already), None when nothing is queued.

        `math.inf` when URLs are queued but all their hosts are at their concurrency limit.
        """
        res = await self._eval("next_due", [])
        if res is None:
            return None
        return max(float(res), now)

    async def recrawl(self, now: float, batch: int = 1000) -> Recrawled:
        """Queue again every fetched URL whose fetch and seen entry are older than `seen_ttl`, with its validators.

        Reads `fetched` oldest first, `batch` members per script call (each call atomic on its own).
        """
        threshold = now - self._seen_ttl
        queued = conditional = 0
        while True:
            members = await self._r.zrangebyscore(self.keys.fetched, "-inf", f"({threshold!r}", start=0, num=batch)
            if not members:
                break
            flat: list[str] = []
            for raw in members:
                member = raw.decode()
                depth, host, url = member.split(" ", 2)
                item = UrlItem(url, host, int(depth))
                flat += [member, url_hash(url), host, payload(item, 0).decode()]
            n, with_validators = await self._eval("recrawl", [now, threshold, self._seen_px, orjson.dumps(flat)])
            queued += int(n)
            conditional += int(with_validators)
            if len(members) < batch:
                break
        return Recrawled(queued, conditional)

    async def set_host_limits(self, host: str, limits: HostLimits) -> None:
        """Change a host's limits (robots Crawl-delay learned, operator override)."""
        await self._eval("set_limits", limit_args(host, limits))

    async def counts(self) -> Counts:
        """Current queue sizes."""
        values = await self._r.hmget(self.keys.counters, _COUNTERS)
        queued, leased, done, dead, hosts = (int(v or 0) for v in values)
        return Counts(queued=queued, leased=leased, done=done, dead=dead, hosts=hosts)

    async def top_hosts(self, limit: int) -> list[tuple[str, int]]:
        """The `limit` hosts with the most URLs queued (retries included), most first, ties by name.

        Reads every active host, TOP_HOSTS_SLICE per script call so Redis is never held for long (~3 µs a
        host: ~7 ms a call, ~0.33 s of Redis time for 100,000 hosts): for monitoring, not per page. Not
        a snapshot: a host whose queue changes meanwhile may be counted before or after the change.
        Unfenced: it changes nothing, so a standby frontier may call it too.
        """
        if limit <= 0:
            return []
        found: dict[str, int] = {}
        start = 0
        while True:
            more, *flat = await self._eval("top_hosts", [int(limit), start, TOP_HOSTS_SLICE], fenced=False)
            found.update((flat[i].decode(), int(flat[i + 1])) for i in range(0, len(flat), 2))
            if not int(more):
                break
            start += TOP_HOSTS_SLICE
        _, *flat = await self._eval("top_hosts", [int(limit), 0, 0], fenced=False)  # hosts at their limit
        found.update((flat[i].decode(), int(flat[i + 1])) for i in range(0, len(flat), 2))
        return sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    async def dead_letters(self, limit: int = 1000, error_type: str | None = None) -> list[DeadLetter]:
        """Dead-lettered URLs (only `error_type` when given, filtered before the limit), oldest first."""
        if limit <= 0:
            return []
        out: list[DeadLetter] = []
        # Without a filter one LRANGE of `limit` suffices; with one, matches may be sparse, so the list is
        # read in pages until `limit` matches are found or it ends (an operator command, not a hot path).
        page = limit if error_type is None else max(limit, 1000)
        start = 0
        while len(out) < limit:
            raws = await self._r.lrange(self.keys.dead, start, start + page - 1)
            for raw in raws:
                url, host, depth, attempts, error, died_at, _, *extras = orjson.loads(raw)
                if error_type is not None and (error or {}).get("type") != error_type:
                    continue
                out.append(DeadLetter(UrlItem(url, host, depth, attempts, *extras), error, died_at))
                if len(out) >= limit:
                    break
            if len(raws) < page or error_type is None:
                break
            start += page
        return out

    async def requeue_dead(self, error_type: str | None, now: float) -> int:
        """Move dead letters (optionally only of one error type) to the tail of their queues, attempts 0."""
        args = [now, "0", ""] if error_type is None else [now, "1", str(error_type)]
        return int(await self._eval("requeue_dead", args))

    async def get_meta(self, key: str) -> str | None:
        """Read a small value kept with the frontier (e.g. the output log's committed offset)."""
        value = await self._r.hget(self.keys.meta, key)
        return None if value is None else value.decode()

    async def set_meta(self, key: str, value: str) -> None:
        """Write a small value; Redis has it once this returns (`flush` is not needed)."""
        await self._r.hset(self.keys.meta, key, value)

    async def keep_robots(self, robots: KeptRobots, ttl: float) -> None:
        """Keep a robots.txt answer for every worker to use, expiring `ttl` seconds from now (real time)."""
        key = self.keys.robots(url_hash(robots.url))
        await self._r.set(key, codec.encode_robots(robots), px=max(1, math.ceil(ttl * 1000)))

    async def kept_robots(self, url: str) -> KeptRobots | None:
        """The robots.txt answer kept for `url`, or None (never kept, or expired)."""
        raw = await self._r.get(self.keys.robots(url_hash(url)))
        return None if raw is None else codec.decode_robots(url, raw)

    # ---------------------------------------------------------------- internals

    async def _with_limits(self, name: str, head: list[Any], items_json: bytes) -> list[Any]:
        """Run an add-type script; if it names hosts Redis does not know, repeat it with their limits."""
        limits: dict[str, HostLimits] = {}
        while True:
            res = await self._eval(name, [*head, limits_json(limits), items_json])
            if int(res[0]) == 0:
                return res
            # Nothing was written; ask host_limits (user code, may raise) before trying again.
            for raw in res[1:]:
                host = raw.decode()
                if host not in limits:
                    limits[host] = self._host_limits(host)

    async def _eval(self, name: str, args: list[Any], *, fenced: bool = True) -> Any:
        """One EVALSHA of script `name` with the job prefix in front of `args` (fenced if `fence` was set)."""
        if self._closed:
            raise RuntimeError("frontier store is closed")
        fence = self._fence if fenced else None
        head: tuple[Any, ...] = (0,) if fence is None else (1, fence[0])
        tail: tuple[Any, ...] = () if fence is None else (fence[1],)
        try:
            try:
                return await self._r.evalsha(self._shas[name], *head, self.keys.prefix, *args, *tail)
            except NoScriptError:
                # Redis lost its script cache (restart, SCRIPT FLUSH); the script did not run.
                self._shas[name] = await self._r.script_load(self._sources[name])
                return await self._r.evalsha(self._shas[name], *head, self.keys.prefix, *args, *tail)
        except ResponseError as exc:
            if str(exc).startswith("FENCED"):
                raise Fenced(str(exc)) from None
            raise

    async def _load_scripts(self) -> None:
        async with self._r.pipeline(transaction=False) as pipe:
            for name in SCRIPTS:
                pipe.script_load(self._sources[name])
            shas = await pipe.execute()
        self._shas = dict(zip(SCRIPTS, shas, strict=True))

    async def _delete_job(self) -> None:
        prefix = self.keys.prefix
        batch: list[bytes] = []
        async for key in self._r.scan_iter(match=prefix + "*", count=1000):
            if is_store_key(prefix, key.decode("utf-8", "surrogateescape")):
                batch.append(key)
                if len(batch) >= 1000:
                    await self._r.unlink(*batch)
                    batch.clear()
        if batch:
            await self._r.unlink(*batch)


def _source(name: str) -> str:
    """The text of script `name`: the shared helpers, then the step itself."""
    return (_LUA / "common.lua").read_text() + "\n" + (_LUA / f"{name}.lua").read_text()
