"""A worker's view of the distributed frontier, plus what workers share through Redis.

`RemoteFrontier` gives `crawler.worker.loop.Worker` the store interface it already uses: claims come from
this worker's inbox (filled by the frontier service with leases for the hosts it owns on the ring),
outcomes go back on the outcomes list. `RedisNearDup` and `shared_robots` make SimHash lookups and
robots.txt bodies cluster-wide; `LiveDomains` applies `crawler domain set` while the crawl runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
import xxhash
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import frontier.redis
from crawler.cluster.faults import fault_point
from crawler.cluster.messages import decode_lease, encode_links, encode_outcome
from crawler.cluster.scripts import ClusterScripts
from crawler.core.config import Config, DomainSettings, HostSettings, config_from_dict
from crawler.core.errors import ConfigError, LeasesLost
from crawler.core.urlitem import UrlItem
from crawler.extract.neardup import block_keys
from crawler.fetch.robots import RobotsFetch, RobotsResponse
from frontier.redis.keys import ClusterKeys
from frontier.redis.store import RedisStore
from frontier.store import Counts, HostLimits, Lease, Outcome

log = logging.getLogger("crawler.cluster.remote")
_NEARDUP_LUA = Path(frontier.redis.__file__).resolve().parent / "lua" / "neardup.lua"
T = TypeVar("T")
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisUnavailable(Exception):
    """Redis stayed unreachable past the configured deadline."""


async def with_redis_retry(op: Callable[[], Awaitable[T]], deadline: float, what: str) -> T:
    """Run `op`, backing off (0.1 s doubling to 5 s, no spinning) while Redis is unreachable.

    Raises RedisUnavailable after `deadline` seconds without success.
    """
    started = time.monotonic()
    delay = 0.1
    warned = False
    while True:
        try:
            return await op()
        except REDIS_ERRORS as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # a cancelled Redis call can surface as a connection error: do not retry it
            waited = time.monotonic() - started
            if waited >= deadline:
                raise RedisUnavailable(f"Redis unreachable for {waited:.0f}s during {what}: {exc}") from exc
            if not warned:
                log.warning("Redis unreachable during %s (%s); backing off", what, exc)
                warned = True
            await asyncio.sleep(min(delay, max(0.0, deadline - waited)))
            delay = min(delay * 2, 5.0)


class RemoteFrontier:
    """`WorkerFrontier` served by the cluster's frontier service through Redis.

    Claims come from this worker's inbox (the service fills it with leases of the hosts this worker
    owns on the ring); outcomes and links go back on the outcomes list in one push, where the service
    applies them, judges staleness and dedups the links (so `finish` cannot report verdicts: None).

    Fencing: the worker's leases are its own only while its heartbeat key lives. `valid()` turns false
    at a local monotonic deadline (the last acknowledged heartbeat's send time plus the TTL, less a
    margin), before the key can have expired; Redis itself refuses the answers (`ack.lua`) and the
    heartbeats (`beat.lua`) of a worker whose key expired. A worker that lost its leases drops its work
    and `rejoin`s under a new incarnation id, with a new inbox.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: ClusterKeys,
        store: RedisStore,
        worker_id: str,
        *,
        heartbeat_ttl: float = 10.0,
        redis_deadline: float = 60.0,
        exit_when_done: bool = False,
        poll_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.store = store
        self.base_id = worker_id
        self.worker_id = worker_id
        self.incarnation = 0
        self.ttl = heartbeat_ttl
        self.margin = max(0.2, heartbeat_ttl * 0.15)
        self.deadline = redis_deadline
        self.exit_when_done = exit_when_done
        self.poll = poll_interval
        self._clock = clock
        self._valid_until = -math.inf  # nothing is ours before the first acknowledged heartbeat
        self._joined = False
        self._scripts = ClusterScripts(redis)
        self.beats = 0
        #: What each heartbeat carries (counters, held lease tokens); set by the composition root.
        self.describe: Callable[[], dict[str, Any]] = dict

    def valid(self) -> bool:
        """Whether this worker's leases are surely still its own (see the class docstring)."""
        return self._clock() < self._valid_until

    async def beat(self) -> bool:
        """Renew the heartbeat (joining on the first call); False when this incarnation was declared dead.

        Heartbeats are numbered and list the leases held (`describe`): the frontier releases dispatched
        leases that are in neither the inbox nor that list (a reply lost with Redis).
        """
        self.beats += 1
        heartbeat = {**self.describe(), "seq": self.beats, "at": time.time()}
        sent = self._clock()
        ok = await with_redis_retry(
            lambda: self._scripts.beat(
                keys=[self.keys.alive(self.worker_id), self.keys.workers],
                args=[self.worker_id, int(self.ttl * 1000), orjson.dumps(heartbeat), "0" if self._joined else "1"],
            ),
            self.deadline,
            "heartbeat",
        )
        if int(ok) == 1:
            self._joined = True
            self._valid_until = sent + self.ttl - self.margin
            return True
        self._valid_until = -math.inf
        return False

    async def rejoin(self) -> None:
        """Start a new incarnation (new id, so a new inbox) after this one's leases were lost, and join."""
        self.incarnation += 1
        self.worker_id = f"{self.base_id}~{self.incarnation}"
        self._joined = False
        self._valid_until = -math.inf
        log.warning("worker %s lost its leases; joining again as %s", self.base_id, self.worker_id)
        await self.beat()

    async def claim(self, now: float, limit: int) -> list[Lease]:
        """Take up to `limit` leases from this worker's inbox (none while its leases may be lost)."""
        if not self.valid():
            return []
        inbox = self.keys.inbox(self.worker_id)
        raw = await with_redis_retry(lambda: self.redis.lpop(inbox, limit), self.deadline, "claim")
        return [decode_lease(r) for r in raw or []]

    async def finish(self, outcomes: Sequence[Outcome], links: Sequence[UrlItem], now: float) -> None:
        """Send outcomes, then the links found, in one push; raises LeasesLost when Redis refuses them."""
        fault_point("worker:stop-before-ack")
        msgs = [encode_outcome(o, self.worker_id) for o in outcomes]
        if links:
            msgs.append(encode_links(links, self.worker_id))
        await self._ack(msgs, "ack")

    async def release(self, leases: Sequence[Lease], now: float) -> None:
        """Hand leases back unfetched (a lost incarnation's leases are released by the frontier instead)."""
        if leases and self.valid():
            with contextlib.suppress(LeasesLost):
                await self._ack([encode_outcome(lease, self.worker_id) for lease in leases], "release")

    async def _ack(self, msgs: list[bytes], what: str) -> None:
        if not msgs:
            return
        if not self.valid():
            raise LeasesLost(f"worker {self.worker_id}: heartbeat may have expired")
        keys = [self.keys.alive(self.worker_id), self.keys.outcomes]
        ok = await with_redis_retry(lambda: self._scripts.ack(keys=keys, args=msgs), self.deadline, what)
        if int(ok) != 1:
            self._valid_until = -math.inf
            raise LeasesLost(f"worker {self.worker_id} was declared dead")

    async def drain_inbox(self) -> int:
        """On the way out: hand back the leases still waiting in this worker's inbox."""
        if not self.valid():
            return 0
        inbox = self.keys.inbox(self.worker_id)
        waiting = await with_redis_retry(lambda: self.redis.lpop(inbox, 100_000), self.deadline, "release")
        await self.release([decode_lease(r) for r in waiting or []], 0.0)
        return len(waiting or [])

    async def leave(self) -> None:
        """A clean exit: delete the heartbeat key, so the frontier need not wait for it to expire."""
        await self.redis.delete(self.keys.alive(self.worker_id))

    async def next_due(self, now: float) -> float | None:
        """Poll again shortly; None (finish) only in exit-when-done mode once the job is done."""
        if self.exit_when_done:
            state = await with_redis_retry(lambda: self.redis.hget(self.keys.state, "done"), self.deadline, "state")
            if state == b"1":
                inbox = self.keys.inbox(self.worker_id)
                if not await with_redis_retry(lambda: self.redis.llen(inbox), self.deadline, "state"):
                    return None
        return now + self.poll

    async def set_host_limits(self, host: str, limits: HostLimits) -> None:
        """Crawl-delay learned by this worker: the shared store's spacing follows."""
        await with_redis_retry(lambda: self.store.set_host_limits(host, limits), self.deadline, "limits")

    async def checkpoint(self, log_offset: int, stats: dict[str, Any]) -> None:
        """Nothing to make durable here: outcomes were pushed to Redis as they were finished, and the
        heartbeat publishes the counters. (A cluster worker's log is not replayed: a lease it did not
        hand back is given to another worker, which fetches the URL again.)"""

    async def counts(self) -> Counts:
        """The shared frontier's sizes."""
        return await with_redis_retry(self.store.counts, self.deadline, "counts")


class RedisNearDup:
    """SimHash near-duplicate lookup shared by all workers: permuted blocks (Manku et al.) in Redis sets.

    Lookup and insert are one Lua script (`frontier/redis/lua/neardup.lua`), so two workers seeing near
    duplicates at the same moment cannot both record theirs as the original.
    """

    def __init__(self, redis: aioredis.Redis, keys: ClusterKeys, max_distance: int = 3, deadline: float = 60.0) -> None:
        self.redis = redis
        self.keys = keys
        self.k = max_distance
        self.deadline = deadline
        self._script = redis.register_script(_NEARDUP_LUA.read_text())

    async def check(self, fp: int, url: str) -> str | None:
        """URL of a stored fingerprint within distance k; else store this one (one round trip)."""
        names = [self.keys.simhash_block(i, v) for i, v in block_keys(fp, self.k)]
        found = await with_redis_retry(
            lambda: self._script(keys=names, args=[f"{fp:016x}", url, self.k]), self.deadline, "near-duplicate check"
        )
        return found.decode() if found else None


def shared_robots(
    redis: aioredis.Redis, keys: ClusterKeys, ttl: float, deadline: float = 60.0
) -> Callable[[RobotsFetch], RobotsFetch]:
    """Wrap a robots.txt fetch so each URL is fetched once per TTL for the whole cluster.

    Only answers are shared (2xx, 3xx, 4xx other than 429); failures are not, so the next worker retries.
    """

    def wrap(fetch: RobotsFetch) -> RobotsFetch:
        async def shared(url: str) -> RobotsResponse:
            key = keys.robots(xxhash.xxh3_64_hexdigest(url.encode()))
            raw = await with_redis_retry(lambda: redis.get(key), deadline, "robots.txt cache")
            if raw is not None:
                head, _, body = raw.partition(b"\n")
                status, location = orjson.loads(head)
                return RobotsResponse(status=status, body=body, location=location)
            resp = await fetch(url)
            if resp.status < 500 and resp.status != 429:
                value = orjson.dumps([resp.status, resp.location]) + b"\n" + resp.body
                await with_redis_retry(lambda: redis.set(key, value, ex=int(ttl)), deadline, "robots.txt cache")
            return resp

        return shared

    return wrap


class LiveDomains:
    """Per-domain politeness overrides that `crawler domain set` changes while the crawl runs."""

    def __init__(self, redis: aioredis.Redis, keys: ClusterKeys, config: Config) -> None:
        self.redis = redis
        self.keys = keys
        self.config = config
        self.overrides: dict[str, DomainSettings] = {}
        self.version = 0

    async def refresh(self) -> bool:
        """Reload the overrides; True when they changed."""
        raw = await self.redis.hgetall(self.keys.domains)
        fresh: dict[str, DomainSettings] = {}
        for name, value in raw.items():
            try:
                fresh[name.decode()] = parse_domain_settings(orjson.loads(value), name.decode())
            except (ConfigError, orjson.JSONDecodeError) as exc:
                log.warning("ignoring bad live override for %s: %s", name, exc)
        if fresh != self.overrides:
            self.overrides = fresh
            self.version += 1
            return True
        return False

    def for_host(self, host: str) -> HostSettings:
        """Config settings of a host with the most specific live override applied on top."""
        base = self.config.for_host(host)
        if not self.overrides:
            return base
        labels = host.rsplit(":", 1)[0].split(".")
        for i in range(len(labels)):
            hit = self.overrides.get(".".join(labels[i:]))
            if hit is not None:
                return replace(base, **hit.overrides())
        return base


def parse_domain_settings(data: dict[str, Any], name: str) -> DomainSettings:
    """Validate one override table like a `[domains."name"]` section of the config."""
    return config_from_dict({"domains": {name: data}}).domains[name.lower().strip(".")]
