"""`crawler frontier`: the asyncio service that feeds workers on a consistent-hash ring.

One loop, repeated every few milliseconds while there is work:
  1. membership: live workers (heartbeat keys) form the ring; a worker whose heartbeat expired has its
     dispatched leases released (which bumps their fencing tokens, so a late answer is discarded);
  2. outcomes: workers' answers are applied to the store in one batch; their links pass this process's
     Bloom filter and recent cache before the store's exact seen-set;
  3. dispatch: due leases are claimed and pushed to the inbox of their host's owner, up to each worker's
     capacity; a lease whose owner is full goes straight back.
Two services for one job do not corrupt it: a leader key (SET NX PX, renewed) lets one act while the
other stands by and takes over when the leader's key expires.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from crawler.cluster.faults import fault_point
from crawler.cluster.messages import decode_lease, decode_outcome, encode_lease
from crawler.cluster.remote import LiveDomains
from crawler.core.recent import RecentDict
from crawler.core.stats import Counter
from crawler.core.urlitem import UrlItem
from crawler.ingest.admit import Ingest
from frontier.redis.keys import ClusterKeys
from frontier.ring import HashRing
from frontier.store import FrontierStore, Lease, Outcome

log = logging.getLogger("crawler.frontier")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class ServiceTiming:
    """How often the service looks at things, and how long a leader keeps its key."""

    tick: float = 0.02  # idle sleep between loop turns
    membership_every: float = 0.5
    leader_ttl: float = 10.0
    reclaim_every: float = 5.0
    domains_every: float = 2.0
    prefetch: int = 2  # leases dispatched per unit of a worker's concurrency
    heartbeat_ttl: float = 10.0  # after a Redis outage, heartbeats get this long to come back


class FrontierService:
    """Dispatches leases to ring owners and applies their outcomes; see the module docstring."""

    def __init__(
        self,
        redis: aioredis.Redis,
        store: FrontierStore,
        keys: ClusterKeys,
        ingest: Ingest,
        domains: LiveDomains,
        *,
        timing: ServiceTiming = ServiceTiming(),
        service_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.store = store
        self.keys = keys
        self.ingest = ingest
        self.domains = domains
        self.timing = timing
        self.id = service_id or uuid.uuid4().hex[:12]
        self.clock = clock
        self.ring = HashRing()
        self.capacity: dict[str, int] = {}  # worker → leases it may hold (dispatched, unanswered)
        self.assigned: dict[str, int] = {}
        self.leader = False
        self._stopping = False
        self._renew = redis.register_script(_RENEW)
        self._applied: RecentDict[str, int] = RecentDict(500_000)  # host → LiveDomains version applied
        self._last = {"members": 0.0, "reclaim": 0.0, "domains": 0.0, "leader": 0.0}
        self.done = False
        self.grace_until = 0.0  # no worker is declared dead before this (monotonic) time
        self._suspects: dict[tuple[str, int], int] = {}  # (worker, token) → heartbeat number when first missed
        self.known_hosts: RecentDict[str, None] = RecentDict(500_000)  # recently dispatched, for `status`

    def stop(self) -> None:
        """Finish the current turn and return from `run`."""
        self._stopping = True

    def after_outage(self) -> None:
        """Redis was unreachable: heartbeat keys may have expired meanwhile, so give workers time to beat."""
        self.grace_until = time.monotonic() + self.timing.heartbeat_ttl * 1.5

    async def run(self, *, until_done: bool = False) -> None:
        """Serve until stopped (or, with `until_done`, until the job has nothing queued or in flight)."""
        try:
            while not self._stopping:
                busy = await self.turn()
                if until_done and self.done:
                    return
                if not busy:
                    await asyncio.sleep(self.timing.tick)
        finally:
            if self.leader:
                with contextlib.suppress(Exception):  # best effort: Redis may be what stopped us
                    await self._publish_ownership()

    async def turn(self) -> bool:
        """One pass of the loop; True when it moved anything."""
        now = time.monotonic()
        if now - self._last["leader"] >= min(2.0, self.timing.leader_ttl / 4) or not self.leader:
            self._last["leader"] = now
            await self._lead()
        if not self.leader:
            await asyncio.sleep(0.5)
            return False
        if now - self._last["members"] >= self.timing.membership_every:
            self._last["members"] = now
            await self._membership()
        if now - self._last["domains"] >= self.timing.domains_every:
            self._last["domains"] = now
            await self.domains.refresh()
            await self._publish_ownership()
        if now - self._last["reclaim"] >= self.timing.reclaim_every:
            self._last["reclaim"] = now
            await self.store.reclaim_expired(self.clock())
        applied = await self._apply_outcomes()
        dispatched = await self._dispatch()
        if not applied and not dispatched:
            await self._check_done()
        return bool(applied or dispatched)

    async def _lead(self) -> None:
        ttl_ms = int(self.timing.leader_ttl * 1000)
        if self.leader:
            self.leader = bool(await self._renew(keys=[self.keys.leader], args=[self.id, ttl_ms]))
            if not self.leader:
                log.warning("lost the frontier leadership; standing by")
            return
        if await self.redis.set(self.keys.leader, self.id, nx=True, px=ttl_ms):
            self.leader = True
            log.info("frontier %s is the leader for job %s", self.id, self.keys.job)

    async def _membership(self) -> None:
        beats = await self.redis.hgetall(self.keys.workers)
        ids = [w.decode() for w in beats]
        alive = await self.redis.mget([self.keys.alive(w) for w in ids]) if ids else []
        live: set[str] = set()
        backlog = await self.redis.llen(self.keys.outcomes)
        for worker, flag in zip(ids, alive, strict=True):
            # A worker that left cleanly may have answers still queued: apply them before burying it.
            if flag is None and time.monotonic() >= self.grace_until and not backlog:
                await self._bury(worker)
                continue
            live.add(worker)
            info = orjson.loads(beats[worker.encode()])
            self.capacity[worker] = max(1, int(info.get("concurrency", 1))) * self.timing.prefetch
        for gone in self.ring.members - live:
            self.ring.remove(gone)
        for new in live - self.ring.members:
            self.ring.add(new)
            log.info("worker %s joined (%d live)", new, len(live))
        if live:
            counts = await self._hlen_all(sorted(live))
            self.assigned.update(counts)
            await self._reconcile({w: orjson.loads(beats[w.encode()]) for w in live})

    async def _reconcile(self, beats: dict[str, dict]) -> None:
        """Release leases a live worker lost: dispatched to it, gone from its inbox, yet never in its hands.

        That happens when Redis dies after running a worker's LPOP but before answering it. A lease is
        lost when the worker's inbox does not hold it and a heartbeat taken surely after we first missed
        it (two beats later: beats are numbered, so no clocks are compared) does not list it either.
        Judged only while no outcome is waiting, so an answered lease is never taken back.
        """
        workers = sorted(w for w, beat in beats.items() if "tokens" in beat)
        if not workers:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.llen(self.keys.outcomes)
            for w in workers:
                pipe.hgetall(self.keys.assigned(w))
                pipe.lrange(self.keys.inbox(w), 0, -1)
            snap = await pipe.execute()
        if snap[0]:
            return
        lost: dict[str, list[Lease]] = {}
        still: dict[tuple[str, int], int] = {}
        for i, w in enumerate(workers):
            assigned, inbox = snap[1 + 2 * i], snap[2 + 2 * i]
            waiting = {decode_lease(m).token for m in inbox}
            reported = set(beats[w]["tokens"])
            for tok, msg in assigned.items():
                token = int(tok)
                if token in waiting or token in reported:
                    continue
                seq = int(beats[w].get("seq", 0))
                first = self._suspects.get((w, token), seq)
                if seq >= first + 2:
                    lost.setdefault(w, []).append(decode_lease(msg))
                else:
                    still[(w, token)] = first
        self._suspects = still
        for w, leases in lost.items():
            await self.store.release(leases, self.clock())
            await self.redis.hdel(self.keys.assigned(w), *[str(le.token) for le in leases])
            log.warning("worker %s lost %d leases (a reply lost with Redis?); released them", w, len(leases))

    async def _hlen_all(self, workers: list[str]) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for w in workers:
                pipe.hlen(self.keys.assigned(w))
            lens = await pipe.execute()
        return dict(zip(workers, (int(n) for n in lens), strict=True))

    async def _bury(self, worker: str) -> None:
        """A worker's heartbeat expired: give its leases back (new tokens) and forget it."""
        raw = await self.redis.hvals(self.keys.assigned(worker))
        leases = [decode_lease(r) for r in raw]
        if leases:
            await self.store.release(leases, self.clock())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.assigned(worker), self.keys.inbox(worker))
            pipe.hdel(self.keys.workers, worker)
            await pipe.execute()
        self.ring.remove(worker)
        self.capacity.pop(worker, None)
        self.assigned.pop(worker, None)
        log.warning("worker %s is gone: %d leases released to other workers", worker, len(leases))

    async def _apply_outcomes(self, batch: int = 1000) -> int:
        # Read, apply, then trim: a Redis error midway leaves the batch to be applied again (stale tokens
        # and the seen-set make that harmless) instead of losing it. Only the leader consumes this list.
        raw = await self.redis.lrange(self.keys.outcomes, 0, batch - 1)
        if not raw:
            return 0
        fault_point("frontier:stop-after-read")
        decoded = [decode_outcome(r) for r in raw]
        outcomes: list[Outcome] = []
        releases: list[Lease] = []
        links: list[UrlItem] = []
        for _, o in decoded:
            if isinstance(o, Lease):
                releases.append(o)
            elif isinstance(o, list):
                links += self._admit(o)
            else:
                links += self._admit(list(o.links))
                o.links = ()
                outcomes.append(o)
        try:
            now = self.clock()
            if releases:
                await self.store.release(releases, now)
            if outcomes:
                await self.store.complete(outcomes, now)
            if links:
                added = await self.store.add(links, now)
                self.ingest.stats.incr(Counter.DUPLICATE_URLS, added.duplicates)
                if added.over_budget:
                    self.ingest.stats.skip("over_budget", added.over_budget)
            async with self.redis.pipeline(transaction=False) as pipe:
                for worker, o in decoded:
                    if isinstance(o, list):
                        continue
                    lease = o if isinstance(o, Lease) else o.lease
                    pipe.hdel(self.keys.assigned(worker), str(lease.token))
                    if worker in self.assigned:
                        self.assigned[worker] = max(0, self.assigned[worker] - 1)
                pipe.ltrim(self.keys.outcomes, len(raw), -1)
                await pipe.execute()
        except BaseException:
            # Nothing of this batch is trimmed, so it is applied again next turn: its links must pass
            # this process's recent-URL cache again, or they would be dropped as already seen.
            self.ingest.forget(item.url for item in links)
            raise
        return len(decoded)

    def _admit(self, items: list[UrlItem]) -> list[UrlItem]:
        """This process's Bloom filter, recent cache and scope, before the store's exact seen-set."""
        by_depth: dict[int, list[str]] = {}
        for item in items:
            by_depth.setdefault(item.depth, []).append(item.url)
        return [admitted for depth, urls in by_depth.items() for admitted in self.ingest.admit(urls, depth)]

    async def _dispatch(self) -> int:
        room = {w: self.capacity.get(w, 0) - self.assigned.get(w, 0) for w in self.ring.members}
        free = sum(max(0, r) for r in room.values())
        if free <= 0:
            return 0
        leases = await self.store.claim(self.clock(), free)
        if not leases:
            return 0
        fault_point("frontier:kill-after-claim")
        if self.done:
            # Say "not done" before any worker can see an inbox that is about to fill.
            self.done = False
            await self.redis.hset(self.keys.state, mapping={"done": "0", "updated": time.time()})
        back: list[Lease] = []
        by_worker: dict[str, list[Lease]] = {}
        for lease in leases:
            owner = self.ring.owner(lease.item.host)
            if owner is None or room.get(owner, 0) <= 0:
                back.append(lease)
                continue
            room[owner] -= 1
            by_worker.setdefault(owner, []).append(lease)
            self.known_hosts[lease.item.host] = None
            await self._apply_live_limits(lease.item.host)
        if back:
            await self.store.release(back, self.clock())
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker, items in by_worker.items():
                msgs = {str(le.token): encode_lease(le) for le in items}
                pipe.hset(self.keys.assigned(worker), mapping=msgs)
                pipe.rpush(self.keys.inbox(worker), *msgs.values())
                self.assigned[worker] = self.assigned.get(worker, 0) + len(items)
            await pipe.execute()
        return len(leases) - len(back)

    async def _apply_live_limits(self, host: str) -> None:
        """`crawler domain set` changed a host's concurrency or delay: the store enforces the new limits."""
        if not self.domains.overrides or self._applied.get(host) == self.domains.version:
            return
        self._applied[host] = self.domains.version
        await self.store.set_host_limits(host, self.domains.for_host(host).limits())

    async def _publish_ownership(self) -> None:
        """How many known hosts each live worker owns now, for `crawler status`."""
        owned = (
            collections.Counter(self.ring.owners(self.known_hosts).values())
            if self.known_hosts
            else collections.Counter()
        )
        await self.redis.hset(
            self.keys.state,
            mapping={"owned": orjson.dumps(dict(owned)), "frontier_stats": orjson.dumps(self.ingest.stats.snapshot())},
        )

    async def _check_done(self) -> None:
        counts = await self.store.counts()
        pending = await self.redis.llen(self.keys.outcomes)
        done = counts.queued == 0 and counts.leased == 0 and pending == 0
        if done != self.done:
            self.done = done
            await self.redis.hset(self.keys.state, mapping={"done": "1" if done else "0", "updated": time.time()})
            log.info("job %s %s", self.keys.job, "is done" if done else "has work")
