"""Sitemaps feed the frontier: found when a host's robots.txt is read, fetched and read like pages.

Discovery: the first time this process holds a robots.txt of an origin (each time it is fetched anew),
its `Sitemap:` lines, or `/sitemap.xml` when it names none, are queued as items of a sitemap kind
(`crawler.core.urlitem`) at depth 0: a site's own list of its pages is an entry point like a seed,
however deep the link that led to the host. They go through ingest and the store's seen-set like any
URL, so a host's sitemaps are queued once per job however many workers read its robots.txt.

Reading: a sitemap lease is fetched by the same `PageFetcher` as a page (robots.txt rules, the host's
gate, redirects, the failure matrix); a 2xx body is read by `crawler.extract.sitemap` and its URLs are
queued at the sitemap's depth + 1, newest `lastmod` first (the stores keep a host's queue in order, so
that order holds), an index's sitemaps as sitemaps up to `sitemap_max_depth`. A sitemap may list URLs
of its own host, and of the host whose robots.txt named it (a cross-submit, sitemaps.org); others are
skipped and counted.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crawler.core.config import Config, HostSettings
from crawler.core.errors import CrawlError
from crawler.core.recent import RecentDict
from crawler.core.record import Record
from crawler.core.stats import Counter, Stats
from crawler.core.urlitem import SITEMAP, SITEMAP_FOR, SITEMAP_PROBE, UrlItem
from crawler.core.urlnorm import ParamStripper, host_key, normalize, origin
from crawler.extract.sitemap import SitemapEntry, parse_sitemap
from crawler.fetch.http import Response
from crawler.fetch.pages import PageFetch
from crawler.ingest.admit import Ingest

__all__ = ["SitemapReader"]

#: Bodies above this are read in a worker thread, so the event loop keeps serving other hosts.
THREAD_READ_BYTES = 256 * 1024
#: Sitemaps read at once in threads by one process (each may hold 50,000 entries).
THREAD_READS = 2
_HOSTS = 100_000  # hosts (and origins) whose sitemap bookkeeping one process remembers


@dataclass(slots=True)
class _Read:
    """A sitemap body turned into normalized items (done off the event loop for big files)."""

    error: CrawlError | None
    found: bool  # the body was a sitemap (of any form)
    entries: int
    links: list[str]  # every listed URL, normalized, in document order
    pages: list[UrlItem]
    sitemaps: list[UrlItem]
    foreign: int  # listed URLs of hosts this sitemap may not speak for
    invalid: int  # listed values that are no absolute http(s) URL


class SitemapReader:
    """Discovers a host's sitemaps and reads fetched ones into frontier items."""

    def __init__(
        self, config: Config, ingest: Ingest, stats: Stats, host_settings: Callable[[str], HostSettings]
    ) -> None:
        c = config.crawl
        self.ingest = ingest
        self.stats = stats
        self.host_settings = host_settings
        self.max_files = c.sitemap_max_files
        self.max_depth = c.sitemap_max_depth
        self.max_urls = c.sitemap_max_urls
        self.max_bytes = c.sitemap_max_bytes
        self.strip: ParamStripper = ingest.strip
        self._offered: RecentDict[str, float] = RecentDict(_HOSTS)  # origin → robots.txt fetched_at offered
        self._files: RecentDict[str, int] = RecentDict(_HOSTS)  # host → sitemap files this process queued
        self._threads = asyncio.Semaphore(THREAD_READS)

    def discover(self, pf: PageFetch, settings: HostSettings) -> list[UrlItem]:
        """The origin's sitemaps when its robots.txt is new to this process (else nothing), admitted."""
        rules = pf.rules
        if rules is None or rules.kind == "disallow_all" or not settings.sitemaps:
            return []
        site = origin(pf.final_url)
        if self._offered.get(site) == rules.fetched_at:
            return []
        self._offered[site] = rules.fetched_at
        host = host_key(pf.final_url)
        if not rules.sitemaps:
            return self._admit([UrlItem(site + "/sitemap.xml", host, 0, kind=SITEMAP_PROBE)])
        items: list[UrlItem] = []
        for raw in rules.sitemaps:
            try:
                url = normalize(raw, site + "/robots.txt", self.strip)
            except CrawlError:
                self.stats.skip("invalid_url")
                continue
            where = host_key(url)
            items.append(UrlItem(url, where, 0, kind=SITEMAP if where == host else SITEMAP_FOR + host))
        return self._admit(items)

    def forget_offers(self) -> None:
        """Offer every origin's sitemaps again (the outcomes that carried some were dropped, leases lost)."""
        self._offered.clear()

    async def read(
        self, rec: Record, resp: Response, final_url: str, item: UrlItem, max_outlinks: int
    ) -> tuple[CrawlError | None, list[UrlItem]]:
        """Fill a sitemap's record from its 2xx body; returns (error, admitted items to queue)."""
        body = resp.body
        if len(body) > THREAD_READ_BYTES:
            async with self._threads:
                got = await asyncio.to_thread(self._read, body, item)
        else:
            got = self._read(body, item)
        self.stats.incr(Counter.SITEMAP_URLS, got.entries)
        if got.foreign:
            self.stats.skip("sitemap_foreign_host", got.foreign)
        if got.invalid:
            self.stats.skip("invalid_url", got.invalid)
        rec.sitemap_urls = got.entries
        rec.links = got.links[:max_outlinks]
        rec.links_followed = True
        if not got.found and item.kind == SITEMAP_PROBE:
            return None, []  # a guess that found no sitemap: an answer, not a failure
        children = got.sitemaps
        if children and item.depth + 1 > self.max_depth:
            self.stats.skip("sitemap_depth", len(children))
            children = []
        # Sitemaps first: each is a request to the host, and the budget should not be spent before them.
        return got.error, self._admit(children) + self.ingest.admit_items(got.pages)

    def moved(self, item: UrlItem, target: str) -> list[UrlItem]:
        """A sitemap redirected to another host: the target is queued as the same sitemap, at its depth."""
        host = host_key(target)
        kind = item.kind
        if kind == SITEMAP:
            kind = SITEMAP_FOR + item.host  # the host that sent us there speaks for the target
        elif kind == SITEMAP_FOR + host:
            kind = SITEMAP
        return self._admit([UrlItem(target, host, item.depth, kind=kind)])

    def _read(self, body: bytes, item: UrlItem) -> _Read:
        parsed = parse_sitemap(body, max_urls=self.max_urls, max_bytes=self.max_bytes)
        own = item.host
        vouched = item.kind[len(SITEMAP_FOR) :] if item.kind.startswith(SITEMAP_FOR) else None
        depth = item.depth + 1
        links: dict[str, None] = {}
        foreign = invalid = 0

        def accept(entries: Sequence[SitemapEntry], make: Callable[[str, str, float | None], UrlItem]) -> list[UrlItem]:
            nonlocal foreign, invalid
            out: list[UrlItem] = []
            for entry in entries:
                try:
                    url = normalize(entry.loc, None, self.strip)  # sitemaps.org: absolute URLs only
                except CrawlError:
                    invalid += 1
                    continue
                if url in links:
                    continue
                links[url] = None
                host = host_key(url)
                if host != own and host != vouched:
                    foreign += 1
                    continue
                out.append(make(url, host, entry.lastmod))
            return out

        def child(url: str, host: str, _: float | None) -> UrlItem:
            # A child on the sitemap's own host keeps its cross-submit; one on the vouching host is that host's.
            kind = item.kind if host == own and vouched is not None else SITEMAP
            return UrlItem(url, host, depth, kind=kind)

        sitemaps = accept(parsed.sitemaps, child)
        pages = accept(parsed.urls, lambda url, host, lastmod: UrlItem(url, host, depth, lastmod=lastmod))
        # Newest first; undated ones after the dated, in document order (the sort is stable).
        pages.sort(key=lambda it: -it.lastmod if it.lastmod is not None else math.inf)
        return _Read(
            parsed.error, parsed.kind is not None, parsed.entries, list(links), pages, sitemaps, foreign, invalid
        )

    def _admit(self, items: list[UrlItem]) -> list[UrlItem]:
        """Sitemap items through ingest, at most `sitemap_max_files` per host in this process."""
        kept: list[UrlItem] = []
        for item in self.ingest.admit_items(items):
            if item.depth + 1 > self.host_settings(item.host).max_depth:
                self.stats.skip("max_depth")  # every URL it lists would be too deep: not worth a request
                continue
            n = self._files.get(item.host, 0)
            if n >= self.max_files:
                self.stats.skip("sitemap_files")
                continue
            self._files[item.host] = n + 1
            kept.append(item)
        return kept
