"""The frontier service against a real Redis: a batch that fails midway is applied again, nothing lost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from crawler.cluster.messages import encode_lease, encode_outcome
from crawler.cluster.remote import LiveDomains
from crawler.cluster.scripts import ClusterScripts
from crawler.cluster.service import FrontierService
from crawler.core.config import Config
from crawler.core.stats import Stats
from crawler.core.urlitem import UrlItem
from crawler.ingest.admit import Ingest
from crawler.ingest.scope import Scope
from frontier.redis.keys import ClusterKeys
from frontier.redis.store import RedisStore
from frontier.store import Fenced, HostLimits, Outcome
from tests.redis_server import RedisServer

pytest_plugins = ["redis_server"]


class FailsOnceOnAdd:
    """The real store, except that its first `add` fails as if Redis had gone away mid-batch."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.failed = False

    async def add(self, items: Any, now: float) -> Any:
        if not self.failed:
            self.failed = True
            raise RedisConnectionError("Connection closed by server.")
        return await self.store.add(items, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_a_failed_batch_is_applied_again_with_its_links(redis_server: RedisServer, redis_job: str) -> None:
    keys = ClusterKeys(redis_job)
    redis = aioredis.from_url(redis_server.url)
    store = await RedisStore.open(redis_server.url, job=redis_job, host_limits=lambda h: HostLimits())
    try:
        now = time.time()
        await store.add([UrlItem("http://a.test/", "a.test", 0)], now)
        (lease,) = await store.claim(now, 10)
        link = UrlItem("http://a.test/next", "a.test", 1)
        await redis.rpush(keys.outcomes, encode_outcome(Outcome(lease, "done", now, links=[link]), "w1"))
        ingest = Ingest(
            Config(), Scope(["a.test"], max_depth=None, max_url_length=2048, max_repeated_segments=3), Stats()
        )
        service = FrontierService(redis, FailsOnceOnAdd(store), keys, ingest, LiveDomains(redis, keys, Config()))  # type: ignore[arg-type]
        await service._lead()
        assert service.leader
        try:
            await service._apply_outcomes()
            raise AssertionError("the first application should have failed")
        except RedisConnectionError:
            pass
        assert await redis.llen(keys.outcomes) == 1  # not trimmed: it will be applied again
        assert await service._apply_outcomes() == 1
        assert await redis.llen(keys.outcomes) == 0
        counts = await store.counts()
        assert (counts.done, counts.queued) == (1, 1)
        (again,) = await store.claim(time.time() + 10, 10)
        assert again.item.url == "http://a.test/next"
    finally:
        await store.close()
        await redis.aclose()


def _ingest() -> Ingest:
    return Ingest(Config(), Scope(["a.test"], max_depth=None, max_url_length=2048, max_repeated_segments=3), Stats())


async def test_a_deposed_leader_changes_nothing(redis_server: RedisServer, redis_job: str) -> None:
    """A leader that lost its key mid-pass (paused) can neither apply, trim, claim nor dispatch."""
    keys = ClusterKeys(redis_job)
    redis = aioredis.from_url(redis_server.url)
    old_store = await RedisStore.open(redis_server.url, job=redis_job, host_limits=lambda h: HostLimits())
    new_store = await RedisStore.open(redis_server.url, job=redis_job, host_limits=lambda h: HostLimits())
    try:
        now = time.time()
        await old_store.add([UrlItem("http://a.test/", "a.test", 0), UrlItem("http://a.test/2", "a.test", 0)], now)
        old = FrontierService(redis, old_store, keys, _ingest(), LiveDomains(redis, keys, Config()))
        await old._lead()
        (lease,) = await old_store.claim(now, 10)
        link = UrlItem("http://a.test/next", "a.test", 1)
        await redis.rpush(keys.outcomes, encode_outcome(Outcome(lease, "done", now, links=[link]), "w1"))
        # The old leader pauses past its key's TTL; another frontier takes over.
        await redis.delete(keys.leader)
        new = FrontierService(redis, new_store, keys, _ingest(), LiveDomains(redis, keys, Config()))
        await new._lead()
        assert new.leader
        assert await old.turn() is False  # refused inside Redis: it notices and stands by
        assert not old.leader
        with pytest.raises(Fenced):
            await old._apply_outcomes()
        with pytest.raises(Fenced):
            await old_store.claim(now + 100, 10)
        assert await redis.llen(keys.outcomes) == 1  # nothing trimmed by the deposed leader
        counts = await new_store.counts()
        assert (counts.done, counts.leased, counts.queued) == (0, 1, 1)
        assert await new._apply_outcomes() == 1  # the new leader applies the answer once
        counts = await new_store.counts()
        assert (counts.done, counts.leased, counts.queued) == (1, 0, 2)
    finally:
        await old_store.close()
        await new_store.close()
        await redis.aclose()


async def test_a_new_leader_releases_leases_no_worker_holds(redis_server: RedisServer, redis_job: str) -> None:
    """Leases claimed by a frontier that died before dispatching them are released at takeover, not at lease TTL."""
    keys = ClusterKeys(redis_job)
    redis = aioredis.from_url(redis_server.url)
    store = await RedisStore.open(redis_server.url, job=redis_job, host_limits=lambda h: HostLimits(), lease_ttl=3600)
    try:
        now = time.time()
        await store.add([UrlItem(f"http://h{i}.test/", f"h{i}.test", 0) for i in range(3)], now)
        held, orphan, _ = await store.claim(now, 3)  # as if a frontier claimed, then died before pushing two
        await redis.hset(keys.workers, "w1", "{}")
        await redis.hset(keys.assigned("w1"), str(held.token), b"x")
        service = FrontierService(redis, store, keys, _ingest(), LiveDomains(redis, keys, Config()))
        await service._lead()
        await service.members.release_orphans()
        assert sorted(await store.lease_tokens()) == [held.token]
        counts = await store.counts()
        assert (counts.leased, counts.queued) == (1, 2)
        assert orphan.token not in await store.lease_tokens()
    finally:
        await store.close()
        await redis.aclose()


async def test_bury_waits_for_answers_and_a_dead_worker_cannot_rejoin_or_answer(
    redis_server: RedisServer, redis_job: str
) -> None:
    """bury runs only once the heartbeat key is gone and no answer waits; a dead incarnation's beat and ack
    are refused inside Redis."""
    keys = ClusterKeys(redis_job)
    redis = aioredis.from_url(redis_server.url)
    store = await RedisStore.open(redis_server.url, job=redis_job, host_limits=lambda h: HostLimits())
    try:
        scripts = ClusterScripts(redis)
        assert await scripts.beat(keys=[keys.alive("w1"), keys.workers], args=["w1", 200, "{}", "1"]) == 1
        assert await scripts.ack(keys=[keys.alive("w1"), keys.outcomes], args=[b"m1"]) == 1
        now = time.time()
        await store.add([UrlItem("http://a.test/", "a.test", 0)], now)
        (lease,) = await store.claim(now, 1)
        await redis.hset(keys.assigned("w1"), str(lease.token), encode_lease(lease))
        service = FrontierService(redis, store, keys, _ingest(), LiveDomains(redis, keys, Config()))
        await service._lead()
        await asyncio.sleep(0.3)  # the heartbeat key expires
        assert await scripts.beat(keys=[keys.alive("w1"), keys.workers], args=["w1", 200, "{}", "0"]) == 0
        assert await scripts.ack(keys=[keys.alive("w1"), keys.outcomes], args=[b"m2"]) == 0
        assert await redis.lrange(keys.outcomes, 0, -1) == [b"m1"]
        service.members.capacity["w1"] = 2
        await service.members.bury("w1")  # an answer still waits: not yet
        assert "w1" in service.members.capacity and await redis.hexists(keys.workers, "w1")
        await redis.delete(keys.outcomes)
        await service.members.bury("w1")
        assert "w1" not in service.members.capacity and not await redis.hexists(keys.workers, "w1")
        assert await store.lease_tokens() == []  # its lease went back with a new token
        assert (await store.counts()).queued == 1
    finally:
        await store.close()
        await redis.aclose()
