"""What a rendering page may fetch: its own host only, robots-allowed, through the host's slot."""

from __future__ import annotations

from crawler.core.errors import CrawlError
from crawler.core.stats import Counter, Stats
from crawler.core.urlnorm import host_key, normalize, origin
from crawler.fetch.pages import PageFetcher
from crawler.render.types import SubFetch, SubResponse
from crawler.worker.slot import HostSlots
from frontier.politeness import SLOW_DOWN


def sub_fetcher(host: str, fetcher: PageFetcher, slots: HostSlots, stats: Stats) -> SubFetch:
    """The `fetch_sub` the browser pool calls for a page of `host` (scripts, XHR, fetch)."""

    async def fetch_sub(url: str, resource_type: str) -> SubResponse | None:
        try:
            url = normalize(url)
        except CrawlError:
            return None
        if host_key(url) != host:
            return None
        rules = await fetcher.robots.get(origin(url))
        if not rules.allowed(url):
            stats.incr(Counter.RENDER_REFUSED)
            return None
        try:
            async with slots.request(host):
                resp = await fetcher.http.fetch(url)
        except CrawlError:
            return None
        stats.incr(Counter.RENDER_SUBREQUESTS)
        if resp.status in SLOW_DOWN:
            slots.answered(host, resp.status, resp.retry_after)  # "too fast" from a script request counts too
        return SubResponse(resp.status, dict(resp.headers), resp.body)

    return fetch_sub
