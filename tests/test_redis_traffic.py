"""`CountingRedis` counts every command, script call and pipeline a process sends, checked against what
a real redis-server says it ran (`INFO commandstats`); and `RedisStore.top_hosts` merges its slices."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aredis

import frontier.redis.store as redis_store
from crawler.core.urlitem import UrlItem
from frontier.redis.client import CountingRedis
from frontier.redis.store import RedisStore
from frontier.store import HostLimits

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

T0 = 1_700_000_000.0


async def _server_calls(admin: aredis.Redis) -> int:
    stats = await admin.info("commandstats")
    # The INFO command of this very call is counted by Redis too; leave out the admin's own traffic.
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat"))


async def test_counts_match_what_the_server_ran(make_redis_server: Callable[..., RedisServer]) -> None:
    server = make_redis_server()  # its own server: the session's one serves other tests' commands too
    admin = aredis.Redis.from_url(server.url)
    client = CountingRedis.from_url(server.url)
    try:
        await client.ping()  # connect first, so connection setup (HELLO, CLIENT SETINFO) is out of the count
        await admin.config_resetstat()
        await client.set("a", "1")
        await client.get("a")
        async with client.pipeline(transaction=False) as pipe:
            pipe.incr("n").incr("n").get("n")
            await pipe.execute()
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr("n").get("n")
            await pipe.execute()
        script = client.register_script("return ARGV[1]")  # no commands inside: Redis would count those
        assert await script(args=["x"]) == b"x"  # NOSCRIPT, SCRIPT LOAD, EVALSHA: three requests
        assert await script(args=["y"]) == b"y"
        t = client.traffic
        assert (t.commands, t.scripts, t.pipelines, t.pipelined_commands) == (4, 3, 2, 5)  # PING included
        assert t.round_trips == 9
        # The server ran the same commands (the NOSCRIPT one included), less the PING before the reset,
        # plus the MULTI and EXEC around the transaction.
        assert await _server_calls(admin) == (t.commands - 1) + t.scripts + t.pipelined_commands + 2
    finally:
        await client.aclose()
        await admin.aclose()


async def test_store_round_trips_come_from_its_client(redis_server: RedisServer, redis_job: str) -> None:
    async with await RedisStore.open(redis_server.url, job=redis_job, host_limits=lambda h: HostLimits()) as store:
        before = store.traffic.scripts
        await store.add([UrlItem("http://a.test/1", "a.test", 0)], T0)  # unknown host: two script calls
        await store.counts()
        assert store.traffic.scripts == before + 2
        assert store.round_trips == store.traffic.round_trips


async def test_top_hosts_merges_slices(
    redis_server: RedisServer, redis_job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "TOP_HOSTS_SLICE", 3)
    async with await RedisStore.open(
        redis_server.url, job=redis_job, host_limits=lambda h: HostLimits(), fresh=True
    ) as store:
        sizes = {f"h{i}.test": (i * 7) % 5 + 1 for i in range(11)}
        await store.add([UrlItem(f"http://{h}/{j}", h, 0) for h, n in sizes.items() for j in range(n)], T0)
        # Two hosts at their concurrency limit (one lease each): out of `due`, found through their leases.
        leases = await store.claim(T0, 2)
        for lease in leases:
            sizes[lease.item.host] -= 1
        expected = sorted(((h, n) for h, n in sizes.items() if n), key=lambda kv: (-kv[1], kv[0]))
        before = store.traffic.scripts
        assert await store.top_hosts(4) == expected[:4]
        assert store.traffic.scripts - before == 4 + 1  # 11 hosts in `due` in slices of 3, then the leased
        assert await store.top_hosts(100) == expected
