"""What workers share through a real Redis: near-duplicate lookup, robots.txt bodies, live overrides."""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis

from crawler.cluster.messages import decode_lease, decode_outcome, encode_lease, encode_outcome
from crawler.cluster.remote import LiveDomains, RedisNearDup, RemoteFrontier, shared_robots
from crawler.core.config import Config
from crawler.core.errors import LeasesLost
from crawler.core.limits import HostLimits
from crawler.core.urlitem import UrlItem
from crawler.core.validators import Validators
from crawler.extract.neardup import hamming
from crawler.fetch.robots import RobotsResponse
from crawler.worker.frontier import WorkerFrontier
from frontier.redis.keys import ClusterKeys
from frontier.redis.store import RedisStore
from frontier.store import Lease, Outcome
from tests.redis_server import RedisServer

pytest_plugins = ["redis_server"]


def _flip(fp: int, bits: list[int]) -> int:
    for b in bits:
        fp ^= 1 << b
    return fp


async def test_near_duplicates_found_across_clients_and_far_ones_not(redis_server: RedisServer, redis_job: str) -> None:
    keys = ClusterKeys(redis_job)
    a, b = aioredis.from_url(redis_server.url), aioredis.from_url(redis_server.url)
    try:
        one, two = RedisNearDup(a, keys), RedisNearDup(b, keys)
        fp = random.Random(1).getrandbits(64)
        assert await one.check(fp, "http://a.test/1") is None
        assert await two.check(_flip(fp, [0, 31, 63]), "http://b.test/2") == "http://a.test/1"  # distance 3
        assert await two.check(_flip(fp, [1, 17, 40, 62]), "http://b.test/3") is None  # distance 4
        assert await one.check(fp, "http://a.test/1") is None  # a page is not its own duplicate
        rng = random.Random(2)
        stored = [rng.getrandbits(64) for _ in range(300)]
        for i, s in enumerate(stored):
            await one.check(s, f"http://x.test/{i}")
        for _ in range(200):
            probe = rng.getrandbits(64)
            near = [i for i, s in enumerate(stored) if hamming(s, probe) <= 3]
            found = await two.check(probe, "http://probe.test/")
            assert (found is not None) == bool(near)
    finally:
        await a.aclose()
        await b.aclose()


async def test_concurrent_near_duplicates_have_exactly_one_original(redis_server: RedisServer, redis_job: str) -> None:
    keys = ClusterKeys(redis_job)
    clients = [aioredis.from_url(redis_server.url) for _ in range(4)]
    try:
        fp = random.Random(3).getrandbits(64)
        checks = [
            RedisNearDup(clients[i % 4], keys).check(_flip(fp, [i % 64]), f"http://h{i}.test/") for i in range(20)
        ]
        results = await asyncio.gather(*checks)
        assert sum(r is None for r in results) == 1
    finally:
        for c in clients:
            await c.aclose()


async def test_robots_bodies_are_fetched_once_for_all_workers(redis_server: RedisServer, redis_job: str) -> None:
    client = aioredis.from_url(redis_server.url)
    calls: list[str] = []

    async def origin_fetch(url: str) -> RobotsResponse:
        calls.append(url)
        return RobotsResponse(200 if "ok" in url else 503, b"User-agent: *\nDisallow: /x\n", None)

    try:
        share = shared_robots(client, ClusterKeys(redis_job), ttl=60)
        first, second = share(origin_fetch), share(origin_fetch)
        assert (await first("http://ok.test/robots.txt")).body == (await second("http://ok.test/robots.txt")).body
        await first("http://down.test/robots.txt")
        await second("http://down.test/robots.txt")
        assert calls == ["http://ok.test/robots.txt", "http://down.test/robots.txt", "http://down.test/robots.txt"]
    finally:
        await client.aclose()


async def test_live_domain_overrides_apply_to_subdomains(redis_server: RedisServer, redis_job: str) -> None:
    client = aioredis.from_url(redis_server.url)
    keys = ClusterKeys(redis_job)
    try:
        live = LiveDomains(client, keys, Config())
        assert not await live.refresh()
        await client.hset(keys.domains, "example.com", b'{"delay": 7.5, "concurrency": 2}')
        await client.hset(keys.domains, "bad.test", b'{"delay": "slow"}')
        assert await live.refresh()
        assert live.for_host("shop.example.com:8080").delay == 7.5
        assert live.for_host("shop.example.com").concurrency == 2
        assert live.for_host("other.org").delay == Config().politeness.delay
        assert live.for_host("bad.test").delay == Config().politeness.delay  # invalid override ignored
    finally:
        await client.aclose()


def test_messages_carry_validators_only_when_there_are_some() -> None:
    """A recrawled lease's validators reach the worker; a done page's new ones reach the frontier."""
    v = Validators('"e1"', "Wed, 21 Oct 2015 07:28:00 GMT")
    plain = Lease(UrlItem("http://a.test/1", "a.test", 1, 2), 7, 99.0)
    recrawled = Lease(UrlItem("http://a.test/2", "a.test", 3, 0), 8, 99.0, v)
    assert decode_lease(encode_lease(plain)) == plain
    assert decode_lease(encode_lease(recrawled)) == recrawled
    assert len(encode_lease(plain)) < len(encode_lease(recrawled))  # ordinary leases pay nothing
    _, got = decode_outcome(encode_outcome(Outcome(recrawled, "done", 5.0, validators=Validators(etag='"e2"')), "w1"))
    assert isinstance(got, Outcome) and got.validators == Validators(etag='"e2"') and got.lease.validators == v
    _, got = decode_outcome(encode_outcome(Outcome(plain, "done", 5.0), "w1"))
    assert isinstance(got, Outcome) and got.validators is None


async def test_remote_frontier_is_the_worker_frontier_contract(redis_server: RedisServer, redis_job: str) -> None:
    """Claims come from the inbox; outcomes then links go back in one push; verdicts are the service's (None)."""
    keys = ClusterKeys(redis_job)
    client = aioredis.from_url(redis_server.url)
    store = await RedisStore.open(redis_server.url, job=redis_job, host_limits=lambda h: HostLimits())
    try:
        remote = RemoteFrontier(client, keys, store, "w1", exit_when_done=True)
        frontier: WorkerFrontier = remote
        assert not frontier.valid()  # nothing is ours before the first heartbeat
        assert await remote.beat() and frontier.valid()
        assert await client.exists(keys.alive("w1")) and await client.hexists(keys.workers, "w1")
        leases = [Lease(UrlItem(f"http://a.test/{i}", "a.test", 1), token=i + 1, expires_at=99.0) for i in range(3)]
        await client.rpush(keys.inbox("w1"), *[encode_lease(lease) for lease in leases])
        assert [lease.token for lease in await frontier.claim(0.0, 2)] == [1, 2]
        assert [lease.token for lease in await frontier.claim(0.0, 5)] == [3]
        done = Outcome(leases[0], "done", host_due=12.5, error=None)
        links = [UrlItem("http://a.test/new", "a.test", 2)]
        assert await frontier.finish([done], links, 1.0) is None  # the frontier service judges links
        await frontier.release([leases[1]], 1.0)
        raw = await client.lrange(keys.outcomes, 0, -1)
        decoded = [decode_outcome(r) for r in raw]
        assert decoded[0][0] == "w1" and isinstance(decoded[0][1], Outcome) and decoded[0][1].host_due == 12.5
        assert decoded[1] == ("w1", links)  # links after their page's outcome, in the same push
        assert decoded[2] == ("w1", leases[1])  # a release is a bare lease
        await frontier.checkpoint(123, {"pages": 1})  # nothing to make durable: outcomes are already in Redis
        assert await client.llen(keys.outcomes) == 3
        assert await frontier.next_due(5.0) == 5.0 + remote.poll  # the job is not done: poll again
        await client.hset(keys.state, "done", "1")
        assert await frontier.next_due(5.0) is None  # done and the inbox empty: this worker may finish
        await frontier.set_host_limits("a.test", HostLimits(2, 0.5))
        counts = await frontier.counts()
        assert counts is not None and counts.queued == 0 and counts.leased == 0
    finally:
        await store.close()
        await client.aclose()


async def test_a_worker_whose_heartbeat_expired_is_fenced_and_rejoins_afresh(
    redis_server: RedisServer, redis_job: str
) -> None:
    """Past the local deadline nothing is claimed or sent; Redis refuses a dead incarnation; rejoin starts anew."""
    keys = ClusterKeys(redis_job)
    client = aioredis.from_url(redis_server.url)
    store = await RedisStore.open(redis_server.url, job=redis_job, host_limits=lambda h: HostLimits())
    try:
        now = [100.0]
        remote = RemoteFrontier(client, keys, store, "w1", heartbeat_ttl=0.5, clock=lambda: now[0])
        assert await remote.beat() and remote.valid()
        lease = Lease(UrlItem("http://a.test/", "a.test", 0), token=7, expires_at=99.0)
        await client.rpush(keys.inbox("w1"), encode_lease(lease))
        now[0] += 0.5 - remote.margin  # the local deadline: before the key can have expired in Redis
        assert not remote.valid()
        assert await remote.claim(0.0, 5) == []  # the lease stays in the inbox for the frontier to take back
        with pytest.raises(LeasesLost):
            await remote.finish([Outcome(lease, "done", 1.0)], [], 1.0)
        await asyncio.sleep(0.6)  # the key expires in Redis
        now[0] = 200.0
        assert not await remote.beat()  # a dead incarnation cannot re-join silently
        remote._valid_until = now[0] + 10  # even if its clock were wrong, Redis refuses its answers
        with pytest.raises(LeasesLost):
            await remote.finish([Outcome(lease, "done", 1.0)], [], 1.0)
        assert await client.llen(keys.outcomes) == 0
        await remote.rejoin()
        assert remote.worker_id == "w1~1" and remote.valid()
        assert await client.exists(keys.alive("w1~1"))
        await remote.finish([Outcome(lease, "done", 1.0)], [], 1.0)
        assert [decode_outcome(r)[0] for r in await client.lrange(keys.outcomes, 0, -1)] == ["w1~1"]
    finally:
        await store.close()
        await client.aclose()
