"""Which workers are alive, and what each holds: the ring, burial of the dead, leases nobody holds.

Part of the frontier service (`crawler.cluster.service`): every change it makes runs only while the
service leads the job (`fenced`), so a deposed leader cannot bury a worker or release its leases.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson
import redis.asyncio as aioredis

from crawler.cluster.messages import decode_lease
from crawler.cluster.scripts import ClusterScripts
from frontier.redis.keys import ClusterKeys
from frontier.redis.store import RedisStore
from frontier.ring import HashRing
from frontier.store import Lease

log = logging.getLogger("crawler.frontier")


class Membership:
    """The live workers on the ring, their dispatch capacity and the leases assigned to each."""

    def __init__(
        self,
        redis: aioredis.Redis,
        store: RedisStore,
        keys: ClusterKeys,
        holder: str,
        *,
        prefetch: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.store = store
        self.keys = keys
        self.holder = holder  # the leader id that fences every change
        self.prefetch = prefetch
        self.clock = clock
        self.ring = HashRing()
        self.capacity: dict[str, int] = {}  # worker → leases it may hold (dispatched, unanswered)
        self.assigned: dict[str, int] = {}
        self.grace_until = 0.0  # no worker is declared dead before this (monotonic) time
        self._suspects: dict[tuple[str, int], int] = {}  # (worker, token) → heartbeat number when first missed
        self._scripts = ClusterScripts(redis)

    async def fenced(self, commands: list[list[object]]) -> None:
        """Run Redis commands atomically, only while this service still leads the job."""
        if commands:
            await self._scripts.fenced(keys=[self.keys.leader], args=[self.holder, orjson.dumps(commands)])

    async def refresh(self) -> None:
        """Live workers (heartbeat keys) form the ring; the dead are buried; lost leases reconciled."""
        beats = await self.redis.hgetall(self.keys.workers)
        ids = [w.decode() for w in beats]
        alive = await self.redis.mget([self.keys.alive(w) for w in ids]) if ids else []
        live: set[str] = set()
        backlog = await self.redis.llen(self.keys.outcomes)
        for worker, flag in zip(ids, alive, strict=True):
            # A worker that left cleanly may have answers still queued: apply them before burying it.
            if flag is None and time.monotonic() >= self.grace_until and not backlog:
                await self.bury(worker)
                continue
            live.add(worker)
            info = orjson.loads(beats[worker.encode()])
            self.capacity[worker] = max(1, int(info.get("concurrency", 1))) * self.prefetch
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
            await self.fenced([["HDEL", self.keys.assigned(w), *[str(le.token) for le in leases]]])
            log.warning("worker %s lost %d leases (a reply lost with Redis?); released them", w, len(leases))

    async def _hlen_all(self, workers: list[str]) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for w in workers:
                pipe.hlen(self.keys.assigned(w))
            lens = await pipe.execute()
        return dict(zip(workers, (int(n) for n in lens), strict=True))

    async def bury(self, worker: str) -> None:
        """A worker's heartbeat expired: forget it (atomically, only if no answer of it waits), then give its
        leases back with new tokens so their hosts go to other workers."""
        k = self.keys
        held = await self._scripts.bury(
            keys=[k.leader, k.alive(worker), k.outcomes, k.assigned(worker), k.inbox(worker), k.workers],
            args=[self.holder, worker],
        )
        if held is None:
            return  # its answers are still queued: apply them first
        leases = [decode_lease(r) for r in held]
        # Between the two steps the leases are claimed but assigned to nobody: a new leader sweeps those.
        await self.store.release(leases, self.clock())
        self.ring.remove(worker)
        self.capacity.pop(worker, None)
        self.assigned.pop(worker, None)
        log.warning("worker %s is gone: %d leases released to other workers", worker, len(leases))

    async def release_orphans(self) -> None:
        """Release leases claimed but assigned to no worker: a leader died (or was deposed) between claiming
        and dispatching them, or between burying a worker and releasing its leases."""
        leased = set(await self.store.lease_tokens())
        if not leased:
            return
        workers = [w.decode() for w in await self.redis.hkeys(self.keys.workers)]
        held: set[int] = set()
        if workers:
            async with self.redis.pipeline(transaction=True) as pipe:
                for w in workers:
                    pipe.hkeys(self.keys.assigned(w))
                for tokens in await pipe.execute():
                    held.update(int(t) for t in tokens)
        orphans = sorted(leased - held)
        if orphans:
            released = await self.store.release_tokens(orphans)
            log.warning("released %d leases that no worker held (claimed by a frontier that stopped)", released)
