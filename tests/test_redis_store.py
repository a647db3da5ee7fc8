"""What only the Redis backend has: key layout, isolation of jobs, script reloading, persistence,
failures, TTLs, round trips, several processes on one job, and agreement with the SQLite backend.

The behavioural contract itself runs in test_store_contract.py (param `redis`).
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio as aredis
from redis.exceptions import AuthenticationError, ConnectionError

from crawler.core.errors import CrawlError, ErrorType
from crawler.core.urlitem import UrlItem
from frontier.redis.codec import url_hash
from frontier.redis.keys import StoreKeys, is_store_key, job_prefix
from frontier.redis.store import RedisStore
from frontier.sqlite.store import SqliteStore
from frontier.store import FrontierStore, HostLimits, Lease, Outcome

if TYPE_CHECKING:
    from redis_server import RedisServer

# The fixtures (a session redis-server, private servers, unique job names) live in tests/redis_server.py.
pytest_plugins = ["redis_server"]

T0 = 1_700_000_000.0


def url(host: str, path: str, depth: int = 0) -> UrlItem:
    """A UrlItem on `host`."""
    return UrlItem(f"http://{host}/{path}", host, depth)


def unlimited(_host: str) -> HostLimits:
    """Default limits."""
    return HostLimits()


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[aredis.Redis]:
    """A plain client on the session's server, for looking at keys and stats."""
    client = aredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def job_keys(client: aredis.Redis, job: str) -> list[str]:
    """Every key under the job's prefix."""
    return sorted([k.decode() async for k in client.scan_iter(match=job_prefix(job) + "*", count=1000)])


async def evalsha_calls(client: aredis.Redis) -> int:
    """How many EVALSHA commands the server has run so far."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_jobs_share_a_redis_without_seeing_each_other(redis_server: RedisServer, admin: aredis.Redis) -> None:
    one = await RedisStore.open(redis_server.url, job="iso-a", host_limits=unlimited, fresh=True)
    two = await RedisStore.open(redis_server.url, job="iso-b", host_limits=unlimited, fresh=True)
    async with one, two:
        assert (await one.add([url("a.test", "1"), url("a.test", "2")], T0)).queued == 2
        assert (await two.add([url("a.test", "1")], T0)).queued == 1  # not seen in this job
        [lease] = await one.claim(T0, 10)
        await one.complete([Outcome(lease, "dead", host_due=T0)], T0)
        await one.set_meta("k", "one")
        assert await two.get_meta("k") is None
        assert (await two.counts()).queued == 1
        assert await two.dead_letters() == []
        assert await two.info() == {"queued": 1, "leased": 0, "done": 0, "dead": 0, "hosts": 1, "seen": 1}
        assert (await one.info())["dead"] == 1
        keys = [k.decode() async for k in admin.scan_iter(match="crawl:{iso-*", count=1000)]
        assert keys and all(k.startswith(("crawl:{iso-a}:", "crawl:{iso-b}:")) for k in keys)
        a_keys = await job_keys(admin, "iso-a")
        assert all(is_store_key(job_prefix("iso-a"), k) for k in a_keys)
        k = StoreKeys("iso-a")
        expected = {k.seen(url_hash("http://a.test/1")), k.queue("a.test"), k.host("a.test"), k.due, k.items}
        expected |= {k.dead, k.meta, k.counters}
        assert expected <= set(a_keys)


async def test_fresh_deletes_only_its_own_store_keys(redis_server: RedisServer, admin: aredis.Redis) -> None:
    async with await RedisStore.open(redis_server.url, job="fr-a", host_limits=unlimited, fresh=True) as a:
        await a.add([url("a.test", str(i)) for i in range(5)], T0)
        await a.claim(T0, 10)
    async with await RedisStore.open(redis_server.url, job="fr-b", host_limits=unlimited, fresh=True) as b:
        await b.add([url("a.test", "1")], T0)
    # Coordination state of the job (not the store's) must survive a fresh store.
    await admin.set("crawl:{fr-a}:workers", "keep")
    async with await RedisStore.open(redis_server.url, job="fr-a", host_limits=unlimited, fresh=True) as a:
        assert await job_keys(admin, "fr-a") == ["crawl:{fr-a}:workers"]
        assert (await a.counts()).queued == 0
        assert (await a.add([url("a.test", "1")], T0)).queued == 1
    async with await RedisStore.open(redis_server.url, job="fr-b", host_limits=unlimited) as b:
        assert (await b.counts()).queued == 1
    with pytest.raises(ValueError, match="job name"):
        await RedisStore.open(redis_server.url, job="x*", host_limits=unlimited)


async def test_scripts_survive_script_flush(redis_server: RedisServer, admin: aredis.Redis, redis_job: str) -> None:
    async with await RedisStore.open(redis_server.url, job=redis_job, host_limits=unlimited) as store:
        await store.add([url("a.test", "1")], T0)
        await admin.script_flush()
        [lease] = await store.claim(T0, 10)
        await admin.script_flush()
        assert await store.complete([Outcome(lease, "done", host_due=T0)], T0) == 0
        assert (await store.counts()).done == 1


async def test_state_survives_redis_restart_with_aof(make_redis_server: Callable[..., RedisServer]) -> None:
    server = make_redis_server(appendonly=True)
    store = await RedisStore.open(server.url, job="aof", host_limits=unlimited, lease_ttl=60)
    async with store:
        await store.add([url("a.test", "1"), url("a.test", "2"), url("b.test", "1")], T0)
        leases = await store.claim(T0, 10)
        await store.set_meta("offset", "42")
        server.kill()  # a crash: appendfsync always kept every acknowledged write
        with pytest.raises(ConnectionError):
            await store.counts()
        server.start()
        assert await store.get_meta("offset") == "42"
        c = await store.counts()
        assert (c.queued, c.leased, c.hosts) == (1, 2, 2)
        assert (await store.add([url("a.test", "1")], T0)).duplicates == 1
        # The scripts were lost with the process; the store reloads them.
        assert await store.complete([Outcome(leases[0], "done", host_due=T0)], T0) == 0
        assert await store.reclaim_expired(T0 + 60) == 1
        assert {x.item.url for x in await store.claim(T0 + 60, 10)} == {"http://a.test/2", "http://b.test/1"}


async def test_connection_errors_surface_and_store_recovers(make_redis_server: Callable[..., RedisServer]) -> None:
    server = make_redis_server()
    async with await RedisStore.open(server.url, job="down", host_limits=unlimited) as store:
        await store.add([url("a.test", "1")], T0)
        server.stop()
        for call in (
            store.ping(),
            store.claim(T0, 10),
            store.add([url("b.test", "1")], T0),
            store.next_due(T0),
            store.counts(),
        ):
            with pytest.raises(ConnectionError):
                await call
        server.start()  # no AOF: an empty Redis
        await store.ping()
        assert (await store.add([url("b.test", "1")], T0)).queued == 1
        assert [x.item.url for x in await store.claim(T0, 10)] == ["http://b.test/1"]
    with pytest.raises(ConnectionError):
        server.stop()
        await RedisStore.open(server.url, job="down", host_limits=unlimited)


async def test_password_url(make_redis_server: Callable[..., RedisServer]) -> None:
    server = make_redis_server()
    with redis.Redis(port=server.port) as admin:
        admin.config_set("requirepass", "s3cret")
    with pytest.raises(AuthenticationError):
        await RedisStore.open(f"redis://:wrong@127.0.0.1:{server.port}/0", job="pw", host_limits=unlimited)
    url_ = f"redis://:s3cret@127.0.0.1:{server.port}/0"
    async with await RedisStore.open(url_, job="pw", host_limits=unlimited) as store:
        assert (await store.add([url("a.test", "1")], T0)).queued == 1


async def test_seen_entries_carry_the_ttl(redis_server: RedisServer, admin: aredis.Redis, redis_job: str) -> None:
    async with await RedisStore.open(redis_server.url, job=redis_job, host_limits=unlimited, seen_ttl=3600) as store:
        await store.add([url("a.test", "1")], T0)
        key = StoreKeys(redis_job).seen(url_hash("http://a.test/1"))
        assert float(await admin.get(key)) == T0
        pttl = await admin.pttl(key)
        assert 3600_000 < pttl <= 3601_000
        # An over-budget URL is not marked seen at all.
        await store.set_host_limits("b.test", HostLimits(budget=0))
        assert (await store.add([url("b.test", "1")], T0)).over_budget == 1
        assert not await admin.exists(StoreKeys(redis_job).seen(url_hash("http://b.test/1")))


async def test_each_call_is_one_round_trip(redis_server: RedisServer, admin: aredis.Redis, redis_job: str) -> None:
    async with await RedisStore.open(redis_server.url, job=redis_job, host_limits=unlimited) as store:
        hosts = [f"h{i}.test" for i in range(10)]
        # First sight of hosts: the script reports them, and runs again with their limits.
        before = await evalsha_calls(admin)
        await store.add([url(h, "seed") for h in hosts], T0)
        assert await evalsha_calls(admin) - before == 2

        async def costs(call: Awaitable[object]) -> int:
            start = await evalsha_calls(admin)
            await call
            return await evalsha_calls(admin) - start

        links = [url(hosts[i % 10], f"p{i}") for i in range(100)]
        assert await costs(store.add(links, T0)) == 1
        leases = await store.claim(T0, 5)
        assert len(leases) == 5
        assert await costs(store.claim(T0, 100)) == 1
        outcomes = [
            Outcome(x, "done", host_due=T0, links=[*links, url("h0.test", f"n{i}")]) for i, x in enumerate(leases)
        ]
        assert await costs(store.complete(outcomes, T0)) == 1
        assert await costs(store.next_due(T0)) == 1
        assert await costs(store.reclaim_expired(T0)) == 1
        assert await costs(store.release(await store.claim(T0, 3), T0)) == 1
        assert await costs(store.requeue_dead(None, T0)) == 1
        # Plain reads are one command, not a script.
        assert await costs(store.counts()) == 0
        trips = store.round_trips
        await store.counts()
        await store.get_meta("x")
        assert store.round_trips == trips + 2


async def test_host_limits_asked_once_across_processes(redis_server: RedisServer, redis_job: str) -> None:
    asked: list[str] = []

    def host_limits(host: str) -> HostLimits:
        asked.append(host)
        return HostLimits(spacing=30)

    one = await RedisStore.open(redis_server.url, job=redis_job, host_limits=host_limits)
    two = await RedisStore.open(redis_server.url, job=redis_job, host_limits=host_limits)
    async with one, two:
        await one.add([url("a.test", "1")], T0)
        await two.add([url("a.test", "2"), url("b.test", "1")], T0)
        await two.add([url("b.test", "2")], T0)
        assert sorted(asked) == ["a.test", "b.test"]
        await one.claim(T0, 10)
        assert await two.next_due(T0) == math.inf


async def test_failing_host_limits_writes_nothing(redis_server: RedisServer, redis_job: str) -> None:
    def host_limits(host: str) -> HostLimits:
        if host == "bad.test":
            raise RuntimeError("no limits for you")
        return HostLimits()

    async with await RedisStore.open(redis_server.url, job=redis_job, host_limits=host_limits) as store:
        with pytest.raises(RuntimeError):
            await store.add([url("a.test", "1"), url("bad.test", "1")], T0)
        assert (await store.counts()).queued == 0
        assert (await store.add([url("a.test", "1")], T0)).queued == 1
        [lease] = await store.claim(T0, 10)
        with pytest.raises(RuntimeError):
            await store.complete([Outcome(lease, "done", host_due=T0, links=[url("bad.test", "2")])], T0)
        c = await store.counts()
        assert (c.leased, c.done) == (1, 0)


async def test_reclaim_by_another_process_fences_the_late_result(redis_server: RedisServer, redis_job: str) -> None:
    worker = await RedisStore.open(redis_server.url, job=redis_job, host_limits=unlimited, lease_ttl=30)
    reaper = await RedisStore.open(redis_server.url, job=redis_job, host_limits=unlimited, lease_ttl=30)
    async with worker, reaper:
        await worker.add([url("a.test", "1")], T0)
        [old] = await worker.claim(T0, 10)
        assert await reaper.reclaim_expired(T0 + 30) == 1
        [new] = await reaper.claim(T0 + 31, 10)
        assert new.token > old.token
        assert await worker.complete([Outcome(old, "done", host_due=T0 + 31, links=[url("b.test", "1")])], T0) == 1
        assert await reaper.complete([Outcome(new, "done", host_due=T0 + 32)], T0 + 32) == 0
        c = await worker.counts()
        assert (c.queued, c.leased, c.done) == (1, 0, 1)


# ------------------------------------------------------------------ agreement with the SQLite backend

_LIMITS = {
    "a.test": HostLimits(),
    "b.test": HostLimits(concurrency=3),
    "c.test": HostLimits(spacing=5, budget=8),
    "d.test": HostLimits(concurrency=2, spacing=2.5),
    "é.test": HostLimits(spacing=0.1),
}


@pytest.mark.parametrize("seed", range(3))
async def test_same_answers_as_sqlite(redis_server: RedisServer, redis_job: str, tmp_path: Path, seed: int) -> None:
    """Random operations on both backends give equal answers (claims compared as sets of URLs)."""
    rng = random.Random(seed)
    lite = await SqliteStore.open(tmp_path, host_limits=_LIMITS.__getitem__, seen_ttl=200, lease_ttl=40)
    red = await RedisStore.open(
        redis_server.url, job=redis_job, host_limits=_LIMITS.__getitem__, seen_ttl=200, lease_ttl=40
    )
    stores: tuple[FrontierStore, FrontierStore] = (lite, red)
    pool = [url(h, f"p{i}/ü?q={i}", depth=i % 3) for h in _LIMITS for i in range(15)]
    leases: list[tuple[Lease, Lease]] = []  # (sqlite lease, redis lease) of the same URL
    now = T0
    errors = [CrawlError(ErrorType.TIMEOUT, "slow"), CrawlError(ErrorType.DNS, "nx")]

    async def both(name: str, *args: object) -> object:
        a, b = [await getattr(s, name)(*args) for s in stores]
        assert a == b, (name, args)
        return a

    async with lite, red:
        for _ in range(300):
            op = rng.random()
            if op < 0.2:
                await both("add", rng.sample(pool, rng.randint(1, 8)), now)
            elif op < 0.45:
                a, b = await lite.claim(now, 100), await red.claim(now, 100)
                assert sorted((x.item.url, x.item.depth, x.item.attempts, x.expires_at) for x in a) == sorted(
                    (x.item.url, x.item.depth, x.item.attempts, x.expires_at) for x in b
                )
                by_url = {x.item.url: x for x in b}
                leases += [(x, by_url[x.item.url]) for x in a]
            elif op < 0.7 and leases:
                chosen = rng.sample(leases, rng.randint(1, len(leases)))
                pairs: list[tuple[Outcome, Outcome]] = []
                for pair in chosen:
                    kind = rng.choice(["done", "retry", "dead"])
                    due, retry_at = now + rng.choice([0, 1, 7]), now + rng.choice([0, 3, 9])
                    error = rng.choice(errors).as_dict() if kind == "dead" else None
                    links = rng.sample(pool, rng.randint(0, 4))
                    pairs.append(
                        (
                            Outcome(pair[0], kind, due, retry_at, error, links),  # type: ignore[arg-type]
                            Outcome(pair[1], kind, due, retry_at, error, links),  # type: ignore[arg-type]
                        )
                    )
                if rng.random() < 0.3:
                    pairs.append(pairs[0])
                assert await lite.complete([p[0] for p in pairs], now) == await red.complete([p[1] for p in pairs], now)
                if rng.random() < 0.8:  # keep some around: their late completion must be stale on both
                    leases = [x for x in leases if x not in chosen]
            elif op < 0.75 and leases:
                pair = leases.pop(rng.randrange(len(leases)))
                await lite.release([pair[0]], now)
                await red.release([pair[1]], now)
            elif op < 0.8:
                await both("reclaim_expired", now)
            elif op < 0.83:
                await both("requeue_dead", rng.choice([None, "timeout", "dns_error"]), now)
            elif op < 0.86:
                host = rng.choice(list(_LIMITS))
                new = HostLimits(
                    concurrency=rng.randint(1, 3), spacing=rng.choice([0, 1.5]), budget=rng.choice([None, 12])
                )
                await both("set_host_limits", host, new)
            elif op < 0.93:
                due = await both("next_due", now)
                if isinstance(due, float) and due != math.inf and rng.random() < 0.5:
                    now = due
            else:
                now += rng.choice([0.5, 1, 3, 10, 60, 150])
            await both("counts")
            await both("dead_letters")
