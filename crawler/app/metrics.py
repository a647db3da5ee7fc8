"""What one process shows on its Prometheus endpoint, read from the objects that already count.

Nothing here runs per page. `Stats` (crawler/core/stats.py), the robots cache, the browser pool, the
Redis clients and the two histograms (`crawler.core.histogram`) count on the event loop's thread as the
crawl goes; the collector reads them when Prometheus scrapes, on the HTTP server's thread
(`crawler.app.metrics_http`). What needs I/O (queue sizes, the deepest host queues) is read on the loop
when a scrape asks, waited for at most SCRAPE_WAIT, and shown as last read. Each process has its own
registry; the frontier and the worker of `crawl --redis` share their process's, each adding its parts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from crawler.core.config import MetricsSettings
from crawler.core.errors import ErrorType
from crawler.core.histogram import FETCH_BUCKETS, WAIT_BUCKETS, Histogram
from crawler.core.stats import STATUS_CLASSES, Counter, Stats
from crawler.fetch.robots import RobotsCache
from frontier.redis.client import RedisTraffic
from frontier.store import Counts, FrontierStore

if TYPE_CHECKING:
    from crawler.render.renderer import Renderer  # Playwright loads only for crawls that may render

log = logging.getLogger("crawler.metrics")

SCRAPE_WAIT = 1.0  # seconds a scrape waits for the loop to read queue sizes; then it shows the last ones
#: At most this share of the time goes to scanning for the deepest host queues: a scan taking 30 ms
#: (100,000 hosts, SQLite) runs again 3 s later at the earliest, one of 0.6 s (Redis) a minute later.
TOP_HOSTS_SHARE = 0.01

#: Help text of the `Stats` counters exported as `crawler_<name>_total` (`pages` is split by status class).
_COUNTER_HELP = {
    Counter.FETCHED: "HTTP responses received for pages (any status, retries included; robots.txt excluded)",
    Counter.FAILED: "Records written with an error",
    Counter.ROBOTS_DISALLOWED: "URLs refused by robots.txt",
    Counter.DUPLICATE_URLS: "Links dropped because their URL was already seen",
    Counter.NEAR_DUPLICATES: "Pages whose text is a near-duplicate of an earlier page (SimHash)",
    Counter.BYTES: "Decoded body bytes of every page response received (retries included)",
    Counter.RETRIES: "Fetches to be tried again later (failure matrix)",
    Counter.DEAD_LETTERS: "URLs that used up their attempts and went to the dead letters",
    Counter.REDIRECTS: "Redirects to another host handed to the frontier as links",
    Counter.RENDER_SUBREQUESTS: "Requests rendering pages made through their host's politeness gate",
    Counter.RENDER_REFUSED: "Requests of rendering pages that robots.txt refused",
    Counter.CONDITIONAL: "Recrawl requests sent with the page's validators (If-None-Match / If-Modified-Since)",
    Counter.UNCHANGED: "304 Not Modified answers to them: recorded as unchanged, not parsed again",
}


@dataclass(slots=True)
class _Worker:
    """The parts of a crawling process (`build_worker`) the endpoint reads."""

    robots: RobotsCache
    renderer: Renderer | None
    in_flight: Callable[[], int]


@dataclass(slots=True)
class _Frontier:
    """A frontier service's view: does it lead, how many workers are on its ring."""

    leader: Callable[[], bool]
    workers_alive: Callable[[], int]


class Metrics:
    """The metrics of one process: its registry, the histograms it hands out, and what it watches."""

    def __init__(self, settings: MetricsSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=False)
        self.fetch_seconds = Histogram(FETCH_BUCKETS)
        self.politeness_wait = Histogram(WAIT_BUCKETS)
        self.stats: list[Stats] = []
        self.workers: list[_Worker] = []
        self.frontiers: list[_Frontier] = []
        self.traffic: list[RedisTraffic] = []
        # Read from the stores when a scrape asks (`refresh`); shown as last read.
        self.readers: list[_StoreReader] = []
        self.counts: Counts | None = None
        self.top_hosts: list[tuple[str, int]] = []
        self.scan_seconds = 0.0
        ProcessCollector(registry=self.registry)  # CPU seconds, resident memory, open files
        self.registry.register(_Collector(self))

    def watch_stats(self, stats: Stats) -> None:
        """Show `stats` (summed with any other part's, e.g. the frontier's and the worker's)."""
        self.stats.append(stats)

    def watch_worker(self, robots: RobotsCache, renderer: Renderer | None, in_flight: Callable[[], int]) -> None:
        """Show a crawling part: robots cache hits, browser pages in use, leases in flight."""
        self.workers.append(_Worker(robots, renderer, in_flight))

    def watch_frontier(self, leader: Callable[[], bool], workers_alive: Callable[[], int]) -> None:
        """Show a frontier service: whether it leads, and the live workers on its ring."""
        self.frontiers.append(_Frontier(leader, workers_alive))

    def watch_redis(self, traffic: RedisTraffic) -> None:
        """Count a Redis client's requests (`CountingRedis.traffic`)."""
        self.traffic.append(traffic)

    def watch_store(self, stack: AsyncExitStack, store: FrontierStore) -> None:
        """Show the store's queue sizes and deepest host queues until `stack` closes (register it after
        the store, so that reading stops before the store closes)."""
        reader = _StoreReader(store, self.settings.top_hosts, self)
        self.readers.append(reader)
        stack.push_async_callback(reader.close)

    def refresh(self) -> None:
        """Bring the store gauges up to date for a scrape (called on the scrape's thread)."""
        for reader in list(self.readers):
            reader.refresh()


class _StoreReader:
    """Reads a store's sizes when a scrape asks (nothing runs between scrapes).

    The store belongs to the event loop, so the read runs there; the scrape's thread waits for it at most
    SCRAPE_WAIT, then shows the last values (the loop is busy) and lets the read finish for the next scrape.
    """

    def __init__(self, store: FrontierStore, top_n: int, into: Metrics) -> None:
        self.store: FrontierStore | None = store
        self.top_n = top_n
        self.into = into
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.lock = asyncio.Lock()
        self.next_scan = 0.0

    def refresh(self) -> None:
        if self.store is None or threading.get_ident() == self.loop_thread:
            return  # closed, or asked on the loop itself (which must not wait for itself)
        try:
            future = asyncio.run_coroutine_threadsafe(self._read(), self.loop)
        except RuntimeError:  # the loop is closed: the process is ending
            return
        try:
            future.result(SCRAPE_WAIT)
        except concurrent.futures.TimeoutError:
            log.debug("metrics: the event loop is busy; queue sizes shown as last read")
        except Exception as exc:  # Redis away, say: the gauges keep their last values meanwhile
            log.debug("metrics: reading the frontier store failed: %s", exc)

    async def _read(self) -> None:
        async with self.lock:  # two scrapes at once read once each, not interleaved
            store = self.store
            if store is None:
                return
            self.into.counts = await store.counts()
            if self.top_n and time.monotonic() >= self.next_scan:
                started = time.monotonic()
                self.into.top_hosts = await store.top_hosts(self.top_n)
                self.into.scan_seconds = time.monotonic() - started
                self.next_scan = started + self.into.scan_seconds / TOP_HOSTS_SHARE

    async def close(self) -> None:
        """Stop reading; a read under way finishes first (the store closes next)."""
        async with self.lock:
            self.store = None


class _Collector(Collector):
    """Turns what `Metrics` watches into metric families at scrape time (on the server's thread)."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        self.m.refresh()
        yield from self._stats()
        yield _histogram(
            "crawler_fetch_duration_seconds",
            "HTTP responses received, request start to last body byte",
            self.m.fetch_seconds,
        )
        yield _histogram(
            "crawler_politeness_wait_seconds",
            "How long each request waited at its host's politeness gate before it started",
            self.m.politeness_wait,
        )
        yield from self._workers()
        yield from self._frontier()
        yield from self._redis()

    def _stats(self) -> Iterator[Metric]:
        parts = list(self.m.stats)
        if not parts:
            return
        pages = CounterMetricFamily("crawler_pages", "Records written, by HTTP status class", labels=["status_class"])
        page_bytes = CounterMetricFamily(
            "crawler_page_bytes", "Body bytes of the records written, by HTTP status class", labels=["status_class"]
        )
        for cls in STATUS_CLASSES:
            pages.add_metric([cls], sum(s.pages_by_status[cls] for s in parts))
            page_bytes.add_metric([cls], sum(s.bytes_by_status[cls] for s in parts))
        yield pages
        yield page_bytes
        for name in Counter:
            if name is Counter.PAGES:
                continue
            help_text = _COUNTER_HELP.get(name, f"The `{name.value}` counter of stats.json")
            yield CounterMetricFamily(f"crawler_{name.value}", help_text, value=sum(s.c[name] for s in parts))
        errors = CounterMetricFamily("crawler_errors", "Records written with an error, by type", labels=["type"])
        # Every type, zeros included, so a rate() has a series before the first error of a kind.
        seen = _sum_counters(s.errors for s in parts)
        for etype in ErrorType:
            errors.add_metric([etype.value], seen.pop(etype.value, 0))
        for other, n in sorted(seen.items()):
            errors.add_metric([other], n)
        yield errors
        skipped = CounterMetricFamily(
            "crawler_skipped_urls", "Links not queued, by reason (scope, depth, trap rules, budget)", labels=["reason"]
        )
        for reason, n in sorted(_sum_counters(s.skipped for s in parts).items()):
            skipped.add_metric([reason], n)
        yield skipped

    def _workers(self) -> Iterator[Metric]:
        parts = list(self.m.workers)
        if not parts:
            return
        yield CounterMetricFamily(
            "crawler_robots_cache_hits",
            "robots.txt lookups answered from the cache",
            value=sum(w.robots.hits for w in parts),
        )
        yield CounterMetricFamily(
            "crawler_robots_cache_misses",
            "robots.txt lookups not in this process's cache (fetched, or read from a cluster's shared copy)",
            value=sum(w.robots.misses for w in parts),
        )
        pools = [w.renderer.pool for w in parts if w.renderer is not None and w.renderer.pool is not None]
        yield GaugeMetricFamily(
            "crawler_browser_pages_in_use",
            "Pages rendering in the browser pool now",
            value=sum(p.in_use for p in pools),
        )
        yield GaugeMetricFamily(
            "crawler_browser_pool_size",
            "Pages the browser pool may render at once (0: not started)",
            value=sum(p.size for p in pools),
        )
        yield GaugeMetricFamily(
            "crawler_leases_in_flight", "URLs being fetched now", value=sum(w.in_flight() for w in parts)
        )

    def _frontier(self) -> Iterator[Metric]:
        counts = self.m.counts
        if counts is not None:
            urls = GaugeMetricFamily("crawler_frontier_urls", "URLs in the frontier, by state", labels=["state"])
            for state in ("queued", "leased", "done", "dead"):
                urls.add_metric([state], getattr(counts, state))
            yield urls
            yield GaugeMetricFamily("crawler_frontier_hosts", "Hosts with URLs queued or leased", value=counts.hosts)
            top = GaugeMetricFamily(
                "crawler_host_queued_urls",
                f"URLs queued for the {self.m.settings.top_hosts} hosts with the most (others not shown)",
                labels=["host"],
            )
            for host, n in list(self.m.top_hosts):
                top.add_metric([host], n)
            yield top
            yield GaugeMetricFamily(
                "crawler_host_queue_scan_seconds",
                "How long the last scan for the deepest host queues took",
                value=self.m.scan_seconds,
            )
        fronts = list(self.m.frontiers)
        if fronts:
            yield GaugeMetricFamily(
                "crawler_frontier_leader",
                "1 while this frontier service leads the job",
                value=sum(f.leader() for f in fronts),
            )
            yield GaugeMetricFamily(
                "crawler_workers_alive",
                "Live workers on the leader's ring",
                value=sum(f.workers_alive() for f in fronts),
            )

    def _redis(self) -> Iterator[Metric]:
        clients = list(self.m.traffic)
        if not clients:
            return
        requests = CounterMetricFamily(
            "crawler_redis_requests",
            "Round trips to Redis, by kind (a command, a script call, a pipeline)",
            labels=["kind"],
        )
        requests.add_metric(["command"], sum(t.commands for t in clients))
        requests.add_metric(["script"], sum(t.scripts for t in clients))
        requests.add_metric(["pipeline"], sum(t.pipelines for t in clients))
        yield requests
        yield CounterMetricFamily(
            "crawler_redis_pipelined_commands",
            "Commands sent inside pipelines",
            value=sum(t.pipelined_commands for t in clients),
        )


def _histogram(name: str, help_text: str, hist: Histogram) -> HistogramMetricFamily:
    buckets, total = hist.cumulative()
    family = HistogramMetricFamily(name, help_text)
    family.add_metric([], [(floatToGoString(le), n) for le, n in buckets], total)
    return family


def _sum_counters(counters: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for counter in counters:
        # One C-level copy of the items: the loop's thread may add a key while this thread reads.
        for key, n in list(counter.items()):
            out[key] = out.get(key, 0) + n
    return out
