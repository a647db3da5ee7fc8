"""Ingest: every URL (seed, link or redirect target) enters the frontier through here.

normalize → scope and trap rules → dedup. Dedup has three layers, cheapest first: a Bloom filter
(a miss proves the URL is new to this process), a bounded exact cache of recently admitted URLs (a
hit proves a duplicate without touching the store: most links on a page are navigation repeats),
and the store's exact seen-set with a TTL, which is the truth and catches everything else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from crawler.core.config import Config
from crawler.core.errors import CrawlError, ErrorType
from crawler.core.ports import port_refusal
from crawler.core.stats import Counter, Stats
from crawler.core.urlitem import UrlItem
from crawler.core.urlnorm import ParamStripper, host_key, normalize
from crawler.ingest.bloom import SeenBloom
from crawler.ingest.scope import OUT_OF_SCOPE, Scope


class Ingest:
    """Turns raw hrefs into `UrlItem`s worth offering to the store; counts what it drops and why."""

    def __init__(
        self,
        config: Config,
        scope: Scope,
        stats: Stats,
        *,
        bloom: SeenBloom | None = None,
        recent_size: int = 200_000,
        clock: Callable[[], float] = time.time,
        defer_scope: bool = False,
    ) -> None:
        self.config = config
        self.scope = scope
        self.stats = stats
        self.strip = ParamStripper(list(config.crawl.strip_params))
        self.bloom = bloom if bloom is not None else SeenBloom(capacity=1_000_000, error_rate=0.001)
        self._recent: dict[str, float] = {}
        self._recent_size = recent_size
        self._ttl = config.crawl.seen_ttl
        self._clock = clock
        # A cluster worker's copy of the job's scope may lag a submission: a link outside it is passed on
        # (unmarked by dedup) to the frontier, which holds the job's scope, instead of being dropped here.
        self.defer_scope = defer_scope

    def normalize_links(self, hrefs: Iterable[str], base: str, limit: int | None = None) -> list[str]:
        """Absolute, normalized, unique links of a page (invalid ones counted and dropped)."""
        return self.page_links(hrefs, base, limit)[0]

    def page_links(self, hrefs: Iterable[str], base: str, limit: int | None = None) -> tuple[list[str], int]:
        """A page's first `limit` distinct normalized links, and how many more distinct ones were cut.

        The cap counts distinct URLs, not raw hrefs: an index page repeating 500 URLs in 14,000 anchors
        (with fragments) keeps all 500. Every href is still normalized, so the cut count is exact; a raw
        href seen before on the page skips normalization (repeats are most of a navigation-heavy page).
        """
        out: dict[str, None] = {}
        raw: set[str] = set()
        cut: set[str] = set()
        strip = self.strip
        for href in hrefs:
            if href in raw:
                continue
            raw.add(href)
            try:
                url = normalize(href, base, strip)
            except CrawlError:
                self.stats.skip("invalid_url")
                continue
            if url in out:
                continue
            if limit is not None and len(out) >= limit:
                cut.add(url)
            else:
                out[url] = None
        return list(out), len(cut)

    def reason(self, url: str, host: str, depth: int) -> str | None:
        """Why `url` at `depth` is out of bounds (depth, scope, trap rules), or None: the one scope authority."""
        why = self._reason(url, host, depth)
        return None if why == OUT_OF_SCOPE and self.defer_scope else why

    def _reason(self, url: str, host: str, depth: int) -> str | None:
        limits = self.config.for_host(host)
        if port_refusal(host, limits.allow_ports) is not None:
            return ErrorType.BAD_PORT.value
        if depth > limits.max_depth:
            return "max_depth"
        return self.scope.reason(
            url,
            host,
            depth,
            max_url_length=limits.max_url_length,
            max_repeated_segments=limits.max_repeated_segments,
            max_path_segments=limits.max_path_segments,
        )

    def admit(self, urls: Iterable[str], depth: int) -> list[UrlItem]:
        """Keep the normalized URLs that are in scope at `depth` and not known duplicates."""
        items: list[UrlItem] = []
        now = self._clock()
        stats = self.stats
        for url in urls:
            host = host_key(url)
            reason = self._reason(url, host, depth)
            if reason is not None:
                if reason == OUT_OF_SCOPE and self.defer_scope:
                    items.append(UrlItem(url, host, depth))
                    continue
                stats.skip(reason)
                continue
            if not self._first_sight(url, now):
                continue
            items.append(UrlItem(url, host, depth))
        return items

    def _first_sight(self, key: str, now: float) -> bool:
        """Remember `key` as seen now; False (and counted) when it was seen within the TTL already."""
        recent = self._recent
        if self.bloom.add(key):
            seen_at = recent.get(key)
            if seen_at is not None and now - seen_at < self._ttl:
                self.stats.incr(Counter.DUPLICATE_URLS)
                return False
        recent[key] = now
        if len(recent) > self._recent_size:
            del recent[next(iter(recent))]
        return True

    def admit_items(self, items: Iterable[UrlItem]) -> list[UrlItem]:
        """`admit` for items made elsewhere (a sitemap's, or links a worker sent on), each judged at its own
        depth and deduplicated by its `seen_key`; kept items are returned as they are (kind, lastmod)."""
        kept: list[UrlItem] = []
        now = self._clock()
        stats = self.stats
        for item in items:
            reason = self._reason(item.url, item.host, item.depth)
            if reason is not None:
                if reason == OUT_OF_SCOPE and self.defer_scope:
                    kept.append(item)
                    continue
                stats.skip(reason)
                continue
            if not self._first_sight(item.seen_key, now):
                continue
            kept.append(item)
        return kept

    def mark_seen(self, urls: Iterable[str]) -> None:
        """Remember URLs fetched without being admitted (a same-host redirect's target) as just admitted,
        so this process drops later links to them before they reach the store (which marks them seen too)."""
        now = self._clock()
        recent = self._recent
        for url in urls:
            self.bloom.add(url)
            recent[url] = now
            if len(recent) > self._recent_size:
                del recent[next(iter(recent))]

    def forget(self, urls: Iterable[str]) -> None:
        """Undo `admit` for URLs (seen keys) the store never received (a failed write), so offering them
        again works."""
        for url in urls:
            self._recent.pop(url, None)

    def admit_seeds(self, urls: Iterable[str]) -> list[UrlItem]:
        """Seeds skip scope (they define it) but still pass dedup bookkeeping."""
        items = []
        now = self._clock()
        for url in urls:
            self.bloom.add(url)
            self._recent[url] = now
            items.append(UrlItem(url, host_key(url), 0))
        return items
