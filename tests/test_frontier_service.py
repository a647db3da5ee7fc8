"""The frontier service against a real Redis: a batch that fails midway is applied again, nothing lost."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from crawler.cluster.messages import encode_outcome
from crawler.cluster.remote import LiveDomains
from crawler.cluster.service import FrontierService
from crawler.core.config import Config
from crawler.core.stats import Stats
from crawler.core.urlitem import UrlItem
from crawler.ingest.admit import Ingest
from crawler.ingest.scope import Scope
from frontier.redis.keys import ClusterKeys
from frontier.redis.store import RedisStore
from frontier.store import HostLimits, Outcome
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
        service = FrontierService(redis, FailsOnceOnAdd(store), keys, ingest, LiveDomains(redis, keys, Config()))
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
