"""Builds the per-process fetch pipeline (HTTP, robots, fetcher, ingest, analyzer) once, for any mode."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from crawler.core.config import Config
from crawler.core.stats import Stats
from crawler.fetch.http import HttpFetcher
from crawler.fetch.net import AddressPolicy
from crawler.fetch.pages import PageFetcher, robots_fetcher
from crawler.fetch.robots import RobotsCache, RobotsFetch
from crawler.ingest.admit import Ingest
from crawler.ingest.scope import Scope
from crawler.worker.analyze import NearDupChecker, PageAnalyzer


@dataclass(slots=True)
class Pipeline:
    """The objects one crawling process shares between all its fetches."""

    policy: AddressPolicy
    http: HttpFetcher
    robots: RobotsCache
    ingest: Ingest
    fetcher: PageFetcher
    analyzer: PageAnalyzer


async def open_pipeline(
    stack: AsyncExitStack,
    cfg: Config,
    scope: Scope,
    stats: Stats,
    neardup: NearDupChecker,
    *,
    share_robots: Callable[[RobotsFetch], RobotsFetch] | None = None,
) -> Pipeline:
    """Open the HTTP session on `stack` and wire the rest around it.

    `share_robots` wraps the robots.txt fetch (the distributed crawl shares robots.txt bodies in Redis).
    """
    policy = AddressPolicy(cfg.network.resolve, allow_private=cfg.network.allow_private)
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
        )
    )
    p = cfg.politeness
    fetch_robots = robots_fetcher(http)
    if share_robots is not None:
        fetch_robots = share_robots(fetch_robots)
    robots = RobotsCache(
        fetch_robots,
        product_token=cfg.crawl.product_token,
        ttl=p.robots_ttl,
        error_ttl=p.robots_error_ttl,
        max_crawl_delay=p.max_crawl_delay,
        # ~8 KiB per parsed file: 20k origins bound the cache near 160 MiB; an evicted origin's
        # robots.txt is simply fetched again (the store's politeness still applies to that request).
        max_entries=20_000,
    )
    ingest = Ingest(cfg, scope, stats)
    fetcher = PageFetcher(http, robots, ingest, ingest.strip, max_redirects=f.max_redirects)
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
    return Pipeline(policy, http, robots, ingest, fetcher, analyzer)
