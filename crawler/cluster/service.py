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
from crawler.cluster.membership import Membership
from crawler.cluster.messages import decode_outcome, encode_lease
from crawler.cluster.remote import LiveDomains
from crawler.core.recent import RecentDict
from crawler.core.stats import Counter
from crawler.core.urlitem import UrlItem
from crawler.ingest.admit import Ingest
from crawler.ingest.scope import Scope
from frontier.redis.keys import ClusterKeys
from frontier.redis.store import RedisStore
from frontier.store import Fenced, Lease, Outcome

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
        store: RedisStore,
        keys: ClusterKeys,
        ingest: Ingest,
        domains: LiveDomains,
        *,
        timing: ServiceTiming = ServiceTiming(),
        service_id: str | None = None,
        clock: Callable[[], float] = time.time,
        scope_of: Callable[[list[str]], Scope] | None = None,
        max_pages: int = 0,
    ) -> None:
        self.redis = redis
        self.store = store
        self.keys = keys
        self.ingest = ingest
        self.domains = domains
        self.timing = timing
        self.id = service_id or uuid.uuid4().hex[:12]
        self.clock = clock
        self.members = Membership(redis, store, keys, self.id, prefetch=timing.prefetch, clock=clock)
        self.leader = False
        self._stopping = False
        self._renew = redis.register_script(_RENEW)
        # Every store step this service takes is fenced by its leadership: once another frontier leads,
        # a late step of this one (it was paused, say) is refused inside Redis instead of applied.
        store.fence(keys.leader, self.id)
        self._orphans_checked = False
        self._applied: RecentDict[str, int] = RecentDict(500_000)  # host → LiveDomains version applied
        self._last = {"members": 0.0, "reclaim": 0.0, "domains": 0.0, "leader": 0.0}
        self.done = False
        self.known_hosts: RecentDict[str, None] = RecentDict(500_000)  # recently dispatched, for `status`
        self._scope_of = scope_of
        self.max_pages = max_pages  # for the whole job: records (done or dead) plus leases out
        self._scope_version: bytes | None = None

    def stop(self) -> None:
        """Finish the current turn and return from `run`."""
        self._stopping = True

    def after_outage(self) -> None:
        """Redis was unreachable: heartbeat keys may have expired meanwhile, so give workers time to beat."""
        self.members.grace_until = time.monotonic() + self.timing.heartbeat_ttl * 1.5
        self._orphans_checked = False  # a step may have failed between claiming and dispatching

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
        try:
            return await self._turn()
        except Fenced:
            # Another frontier leads now (this one was paused or cut off): nothing of this pass was applied.
            log.warning("frontier %s was deposed mid-pass; standing by", self.id)
            self.leader = False
            self._orphans_checked = False
            return False

    async def _turn(self) -> bool:
        now = time.monotonic()
        if now - self._last["leader"] >= min(2.0, self.timing.leader_ttl / 4) or not self.leader:
            self._last["leader"] = now
            await self._lead()
        if not self.leader:
            await asyncio.sleep(0.5)
            return False
        if not self._orphans_checked:
            await self.members.release_orphans()
            self._orphans_checked = True
        if now - self._last["members"] >= self.timing.membership_every:
            self._last["members"] = now
            await self.members.refresh()
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
            self._orphans_checked = False
            log.info("frontier %s is the leader for job %s", self.id, self.keys.job)

    async def _apply_outcomes(self, batch: int = 1000) -> int:
        # Read, apply, then trim: a Redis error midway leaves the batch to be applied again (stale tokens
        # and the seen-set make that harmless) instead of losing it. Only the leader consumes this list.
        # The scope version is read at the same instant as the batch: a submission's domains (added before
        # its seeds were queued) are therefore known before any link found from those seeds is judged.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrange(self.keys.outcomes, 0, batch - 1)
            pipe.get(self.keys.scope_version)
            raw, version = await pipe.execute()
        if not raw:
            return 0
        fault_point("frontier:stop-after-read")
        if version != self._scope_version:
            await self.refresh_scope(version)
        decoded = []
        for r in raw:
            try:
                decoded.append(decode_outcome(r))
            except (ValueError, TypeError) as exc:  # orjson's decode error is a ValueError
                # One malformed message must not stop the job (it would be read again forever): drop it.
                log.error("dropping a malformed message on the outcomes list (%s): %r", exc, r[:200])
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
            answered: dict[str, list[str]] = {}
            for worker, o in decoded:
                if isinstance(o, list):
                    continue
                lease = o if isinstance(o, Lease) else o.lease
                answered.setdefault(worker, []).append(str(lease.token))
            commands: list[list[object]] = [
                ["HDEL", self.keys.assigned(w), *chunk] for w, toks in answered.items() for chunk in _chunks(toks)
            ]
            commands.append(["LTRIM", self.keys.outcomes, len(raw), -1])
            await self.members.fenced(commands)
            for w, toks in answered.items():
                if w in self.members.assigned:
                    self.members.assigned[w] = max(0, self.members.assigned[w] - len(toks))
        except BaseException:
            # Nothing of this batch is trimmed, so it is applied again next turn: its links must pass
            # this process's recent-URL cache again, or they would be dropped as already seen.
            self.ingest.forget(item.seen_key for item in links)
            raise
        return len(raw)

    async def refresh_scope(self, version: bytes | None = None) -> None:
        """Rebuild the job's scope from the domains submitted so far (the scope's one authority)."""
        if self._scope_of is None:
            return
        members = await self.redis.smembers(self.keys.scope)
        self.ingest.scope = self._scope_of(sorted(m.decode() for m in members))
        self._scope_version = version

    def _admit(self, items: list[UrlItem]) -> list[UrlItem]:
        """This process's Bloom filter, recent cache and scope, before the store's exact seen-set."""
        return self.ingest.admit_items(items)

    async def _dispatch(self) -> int:
        room = {w: self.members.capacity.get(w, 0) - self.members.assigned.get(w, 0) for w in self.members.ring.members}
        free = sum(max(0, r) for r in room.values())
        if free > 0 and self.max_pages:
            c = await self.store.counts()
            free = min(free, self.max_pages - (c.done + c.dead + c.leased))
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
            owner = self.members.ring.owner(lease.item.host)
            if owner is None or room.get(owner, 0) <= 0:
                back.append(lease)
                continue
            room[owner] -= 1
            by_worker.setdefault(owner, []).append(lease)
            self.known_hosts[lease.item.host] = None
            await self._apply_live_limits(lease.item.host)
        if back:
            await self.store.release(back, self.clock())
        commands: list[list[object]] = []
        for worker, items in by_worker.items():
            msgs = [(str(le.token), encode_lease(le).decode()) for le in items]
            for chunk in _chunks(msgs):
                commands.append(["HSET", self.keys.assigned(worker), *[x for pair in chunk for x in pair]])
                commands.append(["RPUSH", self.keys.inbox(worker), *[m for _, m in chunk]])
        await self.members.fenced(commands)
        for worker, items in by_worker.items():
            self.members.assigned[worker] = self.members.assigned.get(worker, 0) + len(items)
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
            collections.Counter(self.members.ring.owners(self.known_hosts).values())
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
        budget_spent = bool(self.max_pages) and counts.done + counts.dead >= self.max_pages
        done = (counts.queued == 0 or budget_spent) and counts.leased == 0 and pending == 0
        if done != self.done:
            self.done = done
            await self.redis.hset(self.keys.state, mapping={"done": "1" if done else "0", "updated": time.time()})
            log.info("job %s %s", self.keys.job, "is done" if done else "has work")


def _chunks(items: list, size: int = 500) -> list[list]:
    """Slices of at most `size` (Lua's unpack takes a few thousand values at most)."""
    return [items[i : i + size] for i in range(0, len(items), size)]
