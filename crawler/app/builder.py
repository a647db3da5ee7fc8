"""The one composition root: every crawling process (`crawl`, `crawl --redis`, `worker`) is wired here.

Resources are entered on the caller's `AsyncExitStack` (HTTP session, browser pool, record log), so
each is closed by the stack that opened it. The differences between modes are parameters: which
`WorkerFrontier`, which near-duplicate index, whether robots.txt bodies are shared, which per-host
settings (live overrides in a cluster).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.core.config import Config, HostSettings
from crawler.core.stats import Stats
from crawler.core.urlnorm import host_key
from crawler.extract.neardup import NearDupChecker
from crawler.fetch.http import HttpFetcher
from crawler.fetch.net import AddressPolicy
from crawler.fetch.pages import PageFetcher, gated, robots_fetcher
from crawler.fetch.robots import RobotsCache, RobotsFetch
from crawler.ingest.admit import Ingest
from crawler.ingest.scope import Scope
from crawler.ingest.scope import make_scope as make_scope  # the commands' scope, built from config
from crawler.output.sink import RecordLog
from crawler.output.warc import WarcArchive
from crawler.worker.analyze import PageAnalyzer
from crawler.worker.commit import Committer
from crawler.worker.frontier import WorkerFrontier
from crawler.worker.lease import LeaseRunner
from crawler.worker.loop import Worker
from crawler.worker.sitemaps import SitemapReader
from crawler.worker.slot import HostSlots

if TYPE_CHECKING:  # prometheus_client and Playwright load only when a crawl uses them
    from crawler.app.metrics import Metrics
    from crawler.render.renderer import Renderer

#: ~8 KiB per parsed robots.txt: 20k origins bound the cache near 160 MiB; an evicted origin's
#: robots.txt is simply fetched again (through the host's slot like any request).
ROBOTS_CACHE_ENTRIES = 20_000


class Stopper:
    """What SIGINT/SIGTERM stop: installed once per process, with any number of parts listening.

    (An event loop keeps one handler per signal: two parts of one process, such as the frontier and the
    worker of `crawl --redis`, must share one registration or one of them would never hear the signal.)
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._listeners: list[Callable[[str], None]] = []

    def listen(self, stop: Callable[[str], None]) -> None:
        """Call `stop(reason)` when the process is asked to stop (at once if it already was)."""
        self._listeners.append(stop)
        if self.reason is not None:
            stop(self.reason)

    def stop(self, reason: str) -> None:
        """Stop every listener, e.g. with the signal's name."""
        self.reason = self.reason or reason
        for stop in list(self._listeners):
            stop(reason)

    def install(self, stack: AsyncExitStack) -> Stopper:
        """Route SIGINT/SIGTERM here until the stack closes (then the default handlers return)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop, sig.name)
            stack.callback(loop.remove_signal_handler, sig)
        return self


#: Hosts listed by `Crawling.waits` (published with the counters and in a worker's heartbeat).
MAX_WAITS = 200


@dataclass(slots=True)
class Crawling:
    """What one crawling process is made of (tests and the commands reach into it)."""

    worker: Worker
    ingest: Ingest
    slots: HostSlots
    robots: RobotsCache
    http: HttpFetcher
    renderer: Renderer | None = None

    def waits(self) -> list[dict[str, Any]]:
        """Hosts held back by more than their delay, and why: a robots.txt outage or an open circuit breaker."""
        return hosts_waiting(self.robots, self.slots)


def hosts_waiting(robots: RobotsCache, slots: HostSlots) -> list[dict[str, Any]]:
    """What `Crawling.waits` lists (at most MAX_WAITS hosts): JSON-ready, for `crawler explain`."""
    out: list[dict[str, Any]] = [
        {
            "host": host_key(w.origin),
            "cause": "robots_txt",
            "reason": w.cause,
            "tries": w.failures,
            "since": w.since,
            "until": w.retry_at,
        }
        for w in robots.waiting()[:MAX_WAITS]
    ]
    for host, failures, until in slots.paused()[: MAX_WAITS - len(out)]:
        out.append({"host": host, "cause": "circuit_breaker", "failures": failures, "until": until})
    return out


async def build_worker(
    stack: AsyncExitStack,
    cfg: Config,
    *,
    frontier: WorkerFrontier,
    scope: Scope,
    stats: Stats,
    neardup: NearDupChecker,
    sink_path: Path,
    stats_path: Path | None,
    host_settings: Callable[[str], HostSettings] | None = None,
    share_robots: Callable[[RobotsFetch], RobotsFetch] | None = None,
    replay: dict[str, dict[str, Any]] | None = None,
    defer_scope: bool = False,
    worker_id: str | None = None,
    clock: Callable[[], float] = time.time,
    metrics: Metrics | None = None,
) -> Crawling:
    """Open the HTTP session, the record log (and WARC archive) on `stack`; wire a `Worker` around `frontier`.

    `share_robots` wraps the robots.txt fetch (the cluster shares robots.txt bodies in Redis, the embedded
    crawl keeps them in its store for `crawler explain`: `crawler.worker.robots_keep`); it sits
    outside the host's gate, so an answer found in the shared cache costs the host no request.
    `defer_scope`: links outside this process's copy of the scope go on to the frontier, which judges.
    `metrics`: the process's endpoint, if it has one; it then shows this worker's counters and timings.
    `worker_id` names this process's WARC files (default: hostname-pid).
    """
    settings = host_settings or cfg.for_host
    policy = AddressPolicy(
        cfg.network.resolve,
        allow_private=cfg.network.allow_private,
        allowed_ports=lambda host: settings(host).allow_ports,
    )
    archive = WarcArchive.for_crawl(cfg, sink_path.parent, worker_id)
    f = cfg.fetch
    http = await stack.enter_async_context(
        HttpFetcher(
            policy,
            user_agent=cfg.crawl.user_agent,
            connect_timeout=f.connect_timeout,
            read_timeout=f.read_timeout,
            total_timeout=f.total_timeout,
            max_body_bytes=f.max_body_bytes,
            max_connections=max(cfg.crawl.concurrency, 8),
            latency=metrics.fetch_seconds if metrics is not None else None,
            on_exchange=archive.add_exchange if archive is not None else None,
        )
    )
    slots = HostSlots(
        settings,
        cfg.politeness,
        clock=clock,
        guard=frontier.valid,
        waits=metrics.politeness_wait if metrics is not None else None,
    )
    fetch_robots = gated(robots_fetcher(http), slots)
    if share_robots is not None:
        fetch_robots = share_robots(fetch_robots)
    p = cfg.politeness
    robots = RobotsCache(
        fetch_robots,
        product_token=cfg.crawl.product_token,
        ttl=p.robots_ttl,
        error_ttl=p.robots_error_ttl,
        error_first=p.robots_retry_first,
        max_crawl_delay=p.max_crawl_delay,
        max_entries=ROBOTS_CACHE_ENTRIES,
        clock=clock,
    )
    ingest = Ingest(cfg, scope, stats, clock=clock, defer_scope=defer_scope)
    fetcher = PageFetcher(http, robots, ingest, ingest.strip, slots, max_redirects=f.max_redirects)
    renderer = None
    if cfg.fetch.render != "never" or any(d.render not in (None, "never") for d in cfg.domains.values()):
        from crawler.render.renderer import Renderer  # Playwright loads only for crawls that may render

        renderer = Renderer(cfg, stack, product_token=cfg.crawl.product_token)
    analyzer = PageAnalyzer(
        ingest,
        neardup,
        product_token=cfg.crawl.product_token,
        max_outlinks=cfg.crawl.max_outlinks,
        follow_near_duplicates=cfg.crawl.follow_near_duplicates,
        renderer=renderer,
    )
    sitemaps = SitemapReader(cfg, ingest, stats, settings)
    sink = RecordLog(sink_path)
    stack.callback(sink.close)
    if archive is not None:
        # Entered after the log: it closes first, so records still queued get their pointers.
        await stack.enter_async_context(archive)
    runner = LeaseRunner(
        config=cfg,
        fetcher=fetcher,
        analyzer=analyzer,
        ingest=ingest,
        slots=slots,
        frontier=frontier,
        stats=stats,
        host_settings=settings,
        sitemaps=sitemaps,
        clock=clock,
    )
    committer = Committer(
        frontier,
        sink,
        stats,
        stats_path=stats_path,
        archive=archive,
        clock=clock,
        extra=lambda: {"hosts_waiting": hosts_waiting(robots, slots)},
    )
    worker = Worker(
        config=cfg,
        frontier=frontier,
        runner=runner,
        committer=committer,
        sink=sink,
        ingest=ingest,
        stats=stats,
        replay=replay,
        archive=archive,
        clock=clock,
    )
    if metrics is not None:
        metrics.watch_stats(stats)
        metrics.watch_worker(robots, renderer, lambda: len(worker.tasks))
    return Crawling(worker, ingest, slots, robots, http, renderer)
