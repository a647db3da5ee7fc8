"""Composition roots of the distributed crawl: `frontier`, `worker`, `submit`, `status`, `domain`.

Each opens its resources (Redis client, store, HTTP session) in one exit stack. The job's
configuration lives in Redis (set by `crawler submit -c`); local files and flags override it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio as aioredis

from crawler.app.builder import Stopper, build_worker, make_scope
from crawler.app.metrics_http import open_metrics
from crawler.cluster.remote import (
    LiveDomains,
    RedisNearDup,
    RemoteFrontier,
    parse_domain_settings,
    shared_robots,
    with_redis_retry,
)
from crawler.cluster.service import FrontierService, ServiceTiming
from crawler.core.config import Config, MetricsSettings, config_from_dict, load_config_data
from crawler.core.errors import ConfigError
from crawler.core.stats import Counter, Stats
from crawler.core.urlitem import UrlItem
from crawler.core.urlnorm import host_key
from crawler.ingest.admit import Ingest
from crawler.ingest.scope import Scope, seed_domains
from frontier.redis.client import CountingRedis
from frontier.redis.keys import ClusterKeys
from frontier.redis.store import RedisStore
from frontier.store import AddResult, Recrawled

if TYPE_CHECKING:
    from crawler.app.metrics import Metrics

log = logging.getLogger("crawler.app.distributed")


@dataclass(frozen=True)
class ClusterOptions:
    """What every distributed command shares: where Redis is, which job, local config."""

    redis_url: str
    job: str = "default"
    config_paths: list[Path] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    heartbeat_ttl: float = 10.0
    redis_deadline: float = 60.0
    lease_ttl: float = 300.0

    @property
    def keys(self) -> ClusterKeys:
        """Key names of this job."""
        return ClusterKeys(self.job)


def connect(url: str) -> CountingRedis:
    """A Redis client with bounded timeouts, owned by the caller (close with `aclose`); it counts its traffic."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"--redis: expected a redis:// or rediss:// URL, got {url!r}")
    return CountingRedis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10)


def local_metrics(opts: ClusterOptions) -> MetricsSettings:
    """This process's `[metrics]` from its own files and flags: a job's stored configuration has none."""
    return config_from_dict(load_config_data(opts.config_paths, opts.overrides)).metrics


async def job_config(redis: aioredis.Redis, opts: ClusterOptions) -> Config:
    """The job's stored configuration, overridden by local files and flags.

    The first Redis call of every command: it waits for Redis up to `--redis-deadline` (a worker may
    start before Redis does), then fails with RedisUnavailable.
    """
    raw = await with_redis_retry(lambda: redis.get(opts.keys.config), opts.redis_deadline, "reading the job")
    base = orjson.loads(raw) if raw else {}
    return config_from_dict(load_config_data(opts.config_paths, opts.overrides, base))


async def _scope(redis: aioredis.Redis, keys: ClusterKeys, cfg: Config) -> Scope:
    """The job's scope: configured domains, else every submitted seed's domain (shared in Redis)."""
    return make_scope(cfg, [m.decode() for m in await redis.smembers(keys.scope)])


async def _open(stack: AsyncExitStack, opts: ClusterOptions) -> tuple[CountingRedis, Config, RedisStore]:
    redis = connect(opts.redis_url)
    stack.push_async_callback(redis.aclose)
    cfg = await job_config(redis, opts)
    store = await RedisStore.open(
        opts.redis_url, job=opts.job, host_limits=cfg.host_limits, seen_ttl=cfg.crawl.seen_ttl, lease_ttl=opts.lease_ttl
    )
    stack.push_async_callback(store.close)
    return redis, cfg, store


async def _every(seconds: float, fn: Callable[[], Awaitable[None]]) -> None:
    """Run `fn` every `seconds` until cancelled; a failing call is logged, not fatal."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await fn()
        except Exception as exc:  # a refresh failing (Redis away) must not kill the crawl
            log.warning("periodic task failed: %s", exc)


async def run_frontier(
    opts: ClusterOptions,
    *,
    until_done: bool = False,
    timing: ServiceTiming | None = None,
    stopper: Stopper | None = None,
    metrics: Metrics | None = None,
) -> None:
    """`crawler frontier`: serve the job until a signal or `stop` (or done, with `until_done`).

    `metrics`: the process's endpoint when the caller opened one (`crawl --redis`), else its own if configured.
    """
    async with AsyncExitStack() as stack:
        metrics = metrics or await open_metrics(stack, local_metrics(opts))
        redis, cfg, store = await _open(stack, opts)
        stats = Stats()
        ingest = Ingest(cfg, await _scope(redis, opts.keys, cfg), stats)
        domains = LiveDomains(redis, opts.keys, cfg)
        await domains.refresh()
        timing = timing or ServiceTiming(heartbeat_ttl=opts.heartbeat_ttl)
        service = FrontierService(
            redis,
            store,
            opts.keys,
            ingest,
            domains,
            timing=timing,
            scope_of=lambda names: make_scope(cfg, names),
            max_pages=cfg.crawl.max_pages,
        )
        if metrics is not None:
            metrics.watch_stats(stats)
            metrics.watch_redis(redis.traffic)
            metrics.watch_redis(store.traffic)
            metrics.watch_frontier(
                lambda: service.leader, lambda: len(service.members.ring.members) if service.leader else 0
            )
            metrics.watch_store(stack, store)
        (stopper or Stopper().install(stack)).listen(lambda _reason: service.stop())
        await _with_backoff(
            lambda: service.run(until_done=until_done), opts.redis_deadline, "frontier", on_error=service.after_outage
        )


async def _with_backoff(
    run: Callable[[], Awaitable[None]], deadline: float, what: str, on_error: Callable[[], None] | None = None
) -> None:
    """Re-enter `run` after Redis errors, backing off, until it returns or Redis stays away too long."""
    from crawler.cluster.remote import REDIS_ERRORS, RedisUnavailable

    failing_since: float | None = None
    last_error = 0.0
    delay = 0.1
    while True:
        try:
            await run()
            return
        except REDIS_ERRORS as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # a cancelled Redis call can surface as a connection error: stop, do not retry
            now = time.monotonic()
            if now - last_error > 10.0:  # it worked for a while since the last error: a new outage
                failing_since, delay = now, 0.1
            last_error = now
            failing_since = failing_since or now
            if now - failing_since > deadline:
                raise RedisUnavailable(f"{what}: Redis unreachable for {now - failing_since:.0f}s: {exc}") from exc
            log.warning("%s: Redis error (%s); retrying in %.1fs", what, exc, delay)
            if on_error is not None:
                on_error()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def run_worker(
    opts: ClusterOptions,
    *,
    worker_id: str | None = None,
    out: Path = Path("crawl-out"),
    exit_when_done: bool = False,
    stopper: Stopper | None = None,
    metrics: Metrics | None = None,
) -> dict[str, Any]:
    """`crawler worker`: fetch the leases the frontier sends this worker; records to OUT/pages-ID.jsonl.

    `metrics`: the process's endpoint when the caller opened one (`crawl --redis`), else its own if configured.
    """
    wid = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    keys = opts.keys
    async with AsyncExitStack() as stack:
        metrics = metrics or await open_metrics(stack, local_metrics(opts))
        redis, cfg, store = await _open(stack, opts)
        if metrics is not None:
            metrics.watch_redis(redis.traffic)
            metrics.watch_redis(store.traffic)
        stats = Stats()
        domains = LiveDomains(redis, keys, cfg)
        await domains.refresh()
        remote = RemoteFrontier(
            redis,
            keys,
            store,
            wid,
            heartbeat_ttl=opts.heartbeat_ttl,
            redis_deadline=opts.redis_deadline,
            exit_when_done=exit_when_done,
        )
        out.mkdir(parents=True, exist_ok=True)
        built = await build_worker(
            stack,
            # max_pages is the job's, counted by the frontier service: not per worker.
            replace(cfg, crawl=replace(cfg.crawl, max_pages=0)),
            frontier=remote,
            scope=await _scope(redis, keys, cfg),
            stats=stats,
            neardup=RedisNearDup(redis, keys, cfg.crawl.near_duplicate_distance, opts.redis_deadline),
            sink_path=out / f"pages-{wid}.jsonl",
            stats_path=out / f"stats-{wid}.json",
            host_settings=domains.for_host,
            share_robots=shared_robots(redis, keys, cfg.politeness.robots_ttl, opts.redis_deadline),
            defer_scope=True,  # the frontier holds the job's scope; this copy is only refreshed every 2 s
            metrics=metrics,
            worker_id=wid,
        )
        worker = built.worker
        (stopper or Stopper().install(stack)).listen(worker.stop)

        remote.describe = lambda: stats.snapshot(
            concurrency=cfg.crawl.concurrency, in_flight=len(worker.tasks), tokens=worker.held_tokens()
        )

        async def beat() -> None:
            if not await remote.beat():
                log.warning("worker %s was declared dead (paused or cut off too long)", remote.worker_id)

        async def refresh() -> None:
            await domains.refresh()
            built.ingest.scope = await _scope(redis, keys, cfg)

        await beat()
        tasks = [
            asyncio.create_task(_every(max(0.2, opts.heartbeat_ttl / 5), beat)),
            asyncio.create_task(_every(2.0, refresh)),
        ]
        try:
            await worker.run()
            await remote.drain_inbox()
        finally:
            for t in tasks:
                t.cancel()
            with contextlib.suppress(Exception):
                await beat()  # the final numbers, for `crawler status`
                await remote.leave()
        log.info("worker %s stopped: %d pages", remote.worker_id, stats.c[Counter.PAGES])
        return stats.snapshot(worker=remote.worker_id, finished=worker.finished, stopped=worker.stop_reason)


async def submit(opts: ClusterOptions, seeds: list[str], *, store_config: bool) -> tuple[AddResult, Recrawled]:
    """`crawler submit`: record the job's config (if given) and scope, queue again the pages fetched more than
    `crawl.seen_ttl` ago (a recrawl), then queue the seeds (idempotent)."""
    async with AsyncExitStack() as stack:
        redis = connect(opts.redis_url)
        stack.push_async_callback(redis.aclose)
        if store_config:
            data = load_config_data(opts.config_paths, opts.overrides)
            config_from_dict(data)  # validate before storing
            data.pop("metrics", None)  # each process's own (two workers on one machine need two ports)
            await redis.set(opts.keys.config, orjson.dumps(data))
        cfg = await job_config(redis, opts)
        domains = seed_domains(seeds)
        if domains:
            # Before the seeds are queued, so the frontier knows the domains before it judges any link
            # found from them (it reads the version with each batch of outcomes).
            async with redis.pipeline(transaction=True) as pipe:
                pipe.sadd(opts.keys.scope, *sorted(domains))
                pipe.incr(opts.keys.scope_version)
                await pipe.execute()
        store = await RedisStore.open(
            opts.redis_url,
            job=opts.job,
            host_limits=cfg.host_limits,
            seen_ttl=cfg.crawl.seen_ttl,
            lease_ttl=opts.lease_ttl,
        )
        stack.push_async_callback(store.close)
        recrawled = await store.recrawl(time.time())
        result = await store.add([UrlItem(u, host_key(u), 0) for u in seeds], time.time())
        if result.queued or recrawled.queued:
            await redis.hset(opts.keys.state, mapping={"done": "0", "updated": time.time()})
        return result, recrawled


async def status(opts: ClusterOptions) -> dict[str, Any]:
    """`crawler status`: frontier sizes, workers with their rates and owned share, job state."""
    async with AsyncExitStack() as stack:
        redis, _cfg, store = await _open(stack, opts)
        keys = opts.keys
        counts = await store.counts()
        beats = {k.decode(): orjson.loads(v) for k, v in (await redis.hgetall(keys.workers)).items()}
        alive = await redis.mget([keys.alive(w) for w in beats]) if beats else []
        state = {k.decode(): v.decode() for k, v in (await redis.hgetall(keys.state)).items()}
        leader = await redis.get(keys.leader)
        live = [w for w, a in zip(beats, alive, strict=True) if a is not None]
        owned = orjson.loads(state.pop("owned", "{}"))
        frontier_stats = orjson.loads(state.pop("frontier_stats", "{}"))
        workers = {}
        for w, beat in beats.items():
            workers[w] = {
                "alive": w in live,
                "pages": beat.get("pages", 0),
                "pages_per_s": beat.get("pages_per_s", 0.0),
                "in_flight": beat.get("in_flight", 0),
                "failed": beat.get("failed", 0),
                "hosts_owned": owned.get(w, 0),
            }
        return {
            "job": opts.job,
            "done": state.get("done") == "1",
            "queued": counts.queued,
            "in_flight": counts.leased,
            "recorded": counts.done + counts.dead,
            "dead_letters": counts.dead,
            "hosts": counts.hosts,
            "frontier_leader": leader.decode() if leader else None,
            "duplicate_urls": frontier_stats.get("duplicate_urls", 0),
            "skipped": frontier_stats.get("skipped", {}),
            "workers": workers,
        }


async def domain_command(opts: ClusterOptions, action: str, host: str | None, values: dict[str, Any]) -> Any:
    """`crawler domain set|show|list`: live per-domain politeness in Redis."""
    async with AsyncExitStack() as stack:
        redis = connect(opts.redis_url)
        stack.push_async_callback(redis.aclose)
        keys = opts.keys
        if action == "list":
            return {k.decode(): orjson.loads(v) for k, v in (await redis.hgetall(keys.domains)).items()}
        if not host:
            raise ConfigError(f"crawler domain {action}: a HOST is needed")
        name = host.lower().strip(".")
        if action == "show":
            raw = await redis.hget(keys.domains, name)
            return orjson.loads(raw) if raw else {}
        current = orjson.loads(await redis.hget(keys.domains, name) or b"{}")
        current.update({k: v for k, v in values.items() if v is not None})
        parse_domain_settings(current, name)  # validated like a [domains."…"] table
        await redis.hset(keys.domains, name, orjson.dumps(current))
        return current


async def run_combined(opts: ClusterOptions, seeds: list[str], *, out: Path, worker_id: str | None = None) -> dict:
    """`crawler crawl --redis`: submit (a recrawl too, seeds or not), then a frontier and a worker in one process
    until the job is done."""
    job_overrides = {k: v for k, v in opts.overrides.items() if k != "metrics"}
    async with AsyncExitStack() as stack:
        # One endpoint for the process, opened before anything else (a port in use stops us first).
        metrics = await open_metrics(stack, local_metrics(opts))
        _, recrawled = await submit(opts, seeds, store_config=bool(opts.config_paths or job_overrides))
        if recrawled.queued:
            log.info("recrawl: %d pages queued again (%d with validators)", recrawled.queued, recrawled.conditional)
        stopper = Stopper().install(stack)  # one registration: a signal stops the worker and the frontier
        frontier = asyncio.create_task(run_frontier(opts, stopper=stopper, metrics=metrics))
        worker = asyncio.create_task(
            run_worker(opts, worker_id=worker_id, out=out, exit_when_done=True, stopper=stopper, metrics=metrics)
        )
        try:
            done, _ = await asyncio.wait({frontier, worker}, return_when=asyncio.FIRST_COMPLETED)
            if frontier in done and worker not in done and stopper.reason is None:
                frontier.result()  # the frontier failed: say why rather than wait forever
                raise RuntimeError("the frontier service stopped before the crawl was done")
            return await worker
        finally:
            if stopper.reason is None:
                stopper.stop("done")  # the worker is done: the frontier stops too
            for task in (worker, frontier):
                if not task.done():
                    try:
                        await asyncio.wait_for(asyncio.shield(task), 10.0)
                    except (TimeoutError, Exception):
                        task.cancel()
                        await asyncio.gather(task, return_exceptions=True)
