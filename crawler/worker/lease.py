"""One lease, start to end: fetch through the host's slot, build the record, decide the outcome.

`LeaseRunner.run` returns what the lease came to (a record to write, if any, and the outcome for
the frontier); it writes nothing itself, so it can be tested in-process with an injected clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from crawler.core.config import Config, HostSettings
from crawler.core.errors import RETRYABLE, CrawlError, ErrorType
from crawler.core.exchange import Exchange
from crawler.core.recent import RecentDict
from crawler.core.record import Record, iso_utc
from crawler.core.stats import Counter, Stats
from crawler.core.urlitem import SITEMAP_PROBE, UrlItem, is_sitemap
from crawler.core.urlnorm import origin
from crawler.core.validators import Validators
from crawler.fetch.http import Response
from crawler.fetch.pages import PageFetch, PageFetcher
from crawler.ingest.admit import Ingest
from crawler.worker.analyze import PageAnalyzer
from crawler.worker.frontier import WorkerFrontier
from crawler.worker.retry import POLICIES, Failure, Policy, classify, failure_of, retry_at
from crawler.worker.sitemaps import SitemapReader
from crawler.worker.slot import HOST_MEMORY, HostSlots
from crawler.worker.subfetch import sub_fetcher
from frontier.store import HostLimits, Lease, Outcome, OutcomeKind


@dataclass(slots=True)
class Finished:
    """What a lease came to: the record to write (None for a retry) and the outcome for the frontier."""

    record: Record | None
    outcome: Outcome
    exchange: Exchange | None = None  # the record's final response on the wire (with an archive only)
    dom: str | None = None  # the rendered DOM, when a browser rendered the page


class LeaseRunner:
    """Fetches, analyzes and judges one lease at a time (many run concurrently on one event loop)."""

    def __init__(
        self,
        *,
        config: Config,
        fetcher: PageFetcher,
        analyzer: PageAnalyzer,
        ingest: Ingest,
        slots: HostSlots,
        frontier: WorkerFrontier,
        stats: Stats,
        host_settings: Callable[[str], HostSettings],
        sitemaps: SitemapReader,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = lambda: random.uniform(0.8, 1.2),
    ) -> None:
        self.config = config
        self.fetcher = fetcher
        self.analyzer = analyzer
        self.ingest = ingest
        self.slots = slots
        self.frontier = frontier
        self.stats = stats
        self.host_settings = host_settings
        self.sitemaps = sitemaps
        self.clock = clock
        self.jitter = jitter
        self._told: RecentDict[str, HostLimits] = RecentDict(HOST_MEMORY)

    async def run(self, lease: Lease) -> Finished:
        """Fetch the lease's URL and decide: done (record), retry (no record yet) or dead (record).

        Raises `NotDue` when the host will not be due before the lease expires (hand the lease back).
        """
        item = lease.item
        settings = self.host_settings(item.host)
        started = self.clock()
        cap = self.sitemaps.max_bytes if item.kind and is_sitemap(item.kind) else None
        try:
            # Wait no longer than the lease lasts: past it, the frontier may hand the URL to another fetch.
            pf = await self.fetcher.fetch(
                item.url, item.depth, until=lease_deadline(lease, started), validators=lease.validators, max_bytes=cap
            )
        except CrawlError as exc:  # defensive: the fetcher reports errors in its result
            pf = PageFetch(url=item.url, final_url=item.url, error=exc)
        resp = pf.response
        # Before any await: a 429's hold must be in place before the next request to the host may start.
        if resp is not None:
            self.slots.answered(item.host, resp.status, resp.retry_after)
            self.stats.incr(Counter.FETCHED)
            self.stats.incr(Counter.BYTES, len(resp.body))
            if lease.validators is not None:  # a response means the first request, the conditional one, was answered
                self.stats.incr(Counter.CONDITIONAL)
        elif pf.error is not None and pf.error.type in RETRYABLE:
            self.slots.answered(item.host, None)  # a network failure counts towards the host's breaker
        await self._tell_store(item.host, settings)
        # The host's sitemaps, when this fetch read its robots.txt anew: they ride on this lease's outcome,
        # whatever it is, so they reach the frontier once.
        found = self.sitemaps.discover(pf, settings)
        finished = await self._judge(lease, pf, started, settings)
        if found:
            finished.outcome.links = [*found, *finished.outcome.links]
        return finished

    async def _judge(self, lease: Lease, pf: PageFetch, started: float, settings: HostSettings) -> Finished:
        """What the fetch comes to: a retry, a dead letter, or a record (analyzed when it is a 2xx)."""
        item = lease.item
        resp = pf.response
        if pf.robots_unavailable and pf.rules is not None:
            # Retry when robots.txt may be fetched again; until then the host is not leased. A short outage
            # (a deploy, a blip) must not cost the site its URLs: they wait out `robots_give_up` whatever
            # their attempts; past it, the crawl of an unreachable site ends with dead letters.
            expires = pf.rules.expires_at
            outage = self.fetcher.robots.outage(origin(pf.final_url))
            patient = outage is not None and self.clock() - outage.since < self.config.politeness.robots_give_up
            used_up = lease.item.attempts + 1 >= self.config.fetch.max_attempts
            return await self._retry_or_die(
                lease, pf, started, host_due=expires, at=None if used_up and not patient else expires
            )
        failure = failure_of(
            pf.error,
            resp.status if resp is not None else None,
            resp.retry_after if resp is not None else None,
            now=self.clock(),
            cap=self.config.politeness.retry_after_max,
        )
        policy = classify(failure)
        # The failure matrix (crawler.worker.retry) decides; a guessed /sitemap.xml that is not there is an answer.
        if policy is not None and policy.retries and not _no_sitemap(item, resp):
            host_due = self.slots.due(item.host)
            return await self._retry_or_die(
                lease, pf, started, host_due=host_due, at=self._when(policy, lease, failure, host_due)
            )
        try:
            rec, follow, items, dom = await self._record(item, pf, started, settings)
        except CrawlError as exc:  # the browser failed: try the page again later
            pf.error = exc
            host_due = self.slots.due(item.host)
            failure = failure_of(exc, None, None, now=self.clock(), cap=0.0)
            policy = classify(failure) or POLICIES["network"]
            return await self._retry_or_die(
                lease, pf, started, host_due=host_due, at=self._when(policy, lease, failure, host_due)
            )
        # The host's due time is read after the render: its subrequests count as requests to the host.
        return self._finish(lease, rec, follow, self.slots.due(item.host), "done", pf, dom, items)

    async def _tell_store(self, host: str, settings: HostSettings) -> None:
        """Crawl-delay learned or a live override: the store's spacing for the host follows."""
        limits = settings.limits(self.slots.crawl_delay(host))
        if self._told.get(host) != limits:
            self._told[host] = limits
            await self.frontier.set_host_limits(host, limits)

    def _when(self, policy: Policy, lease: Lease, failure: Failure, host_due: float) -> float | None:
        """The failure matrix's retry time for this lease's next attempt (None: attempts used up)."""
        attempts = lease.item.attempts + 1
        return retry_at(
            self.config.fetch, policy, attempts, failure, host_due=host_due, now=self.clock(), jitter=self.jitter()
        )

    async def _retry_or_die(
        self, lease: Lease, pf: PageFetch, started: float, *, host_due: float, at: float | None
    ) -> Finished:
        """A retry at `at` (no record yet), or, with `at` None, a dead-letter record of the failure."""
        if at is not None:
            self.stats.incr(Counter.RETRIES)
            return Finished(None, Outcome(lease, "retry", host_due, retry_at=at))
        rec, _, _, _ = await self._record(lease.item, pf, started)
        rec.dead_letter = True
        self.stats.incr(Counter.DEAD_LETTERS)
        return self._finish(lease, rec, [], host_due, "dead", pf)

    async def _record(
        self, item: UrlItem, pf: PageFetch, started: float, settings: HostSettings | None = None
    ) -> tuple[Record, list[str], list[UrlItem], str | None]:
        """The record of a fetch, analyzed when it is a 2xx page or read when it is a sitemap; returns it
        with the links to follow, for a sitemap the items it lists (already admitted), and the rendered DOM."""
        rec = base_record(item, pf, started)
        resp = pf.response
        error = pf.error
        follow: list[str] = []
        items: list[UrlItem] = []
        dom = None
        if pf.redirect_to is not None:
            rec.links = [pf.redirect_to]
            rec.links_followed = True
            self.stats.incr(Counter.REDIRECTS)
            if item.kind and is_sitemap(item.kind):
                items = self.sitemaps.moved(item, pf.redirect_to)
            else:
                follow = [pf.redirect_to]
        elif resp is not None and error is None:
            if resp.status >= 400:
                if not _no_sitemap(item, resp):
                    error = CrawlError(ErrorType.HTTP_ERROR, f"HTTP {resp.status}")
            elif 200 <= resp.status < 300 and item.kind and is_sitemap(item.kind):
                max_outlinks = settings.max_outlinks if settings is not None else self.config.crawl.max_outlinks
                error, items = await self.sitemaps.read(rec, resp, pf.final_url, item, max_outlinks)
            elif resp.status == 304:
                if pf.conditional:  # unchanged since the last fetch: nothing new to parse or follow
                    rec.unchanged = True
                    self.stats.incr(Counter.UNCHANGED)
                else:  # "not modified" since what? No validators were sent: the server is wrong
                    error = CrawlError(ErrorType.HTTP_ERROR, "HTTP 304 Not Modified to a request without validators")
            elif 200 <= resp.status < 300:
                error, follow, dom = await self.analyzer.analyze(
                    rec,
                    resp,
                    pf.final_url,
                    host=item.host,
                    render_mode=settings.render if settings is not None else "never",
                    fetch_sub=sub_fetcher(item.host, self.fetcher, self.slots, self.stats)
                    if settings is not None
                    else None,
                    max_outlinks=settings.max_outlinks if settings is not None else None,
                    follow_near_duplicates=settings.follow_near_duplicates if settings is not None else None,
                )
        if error is not None:
            rec.error = error.as_dict()
            self.stats.error(error.type.value)
            if error.type is ErrorType.ROBOTS_DISALLOWED:
                self.stats.incr(Counter.ROBOTS_DISALLOWED)
        return rec, follow, items, dom

    def _finish(
        self,
        lease: Lease,
        rec: Record,
        follow: list[str],
        host_due: float,
        kind: OutcomeKind,
        pf: PageFetch,
        dom: str | None = None,
        items: list[UrlItem] | None = None,
    ) -> Finished:
        page = not lease.item.kind
        # A sitemap's redirect hops are not marked seen: the seen-set holds pages, and it was no page fetch.
        seen = fetched_besides(lease.item.url, rec) if page else ()
        if seen:
            # Before the page's own links are admitted: a redirect target's self-link is a duplicate already.
            self.ingest.mark_seen(seen)
        links = self.ingest.admit(follow, lease.item.depth + 1) if follow else []
        if items:
            links = items + links
        exchange = pf.response.exchange if pf.response is not None else None
        # Kept for the next recrawl (a sitemap is not recrawled as such: robots.txt names it again).
        validators = page_validators(lease, pf) if kind == "done" and page else None
        outcome = Outcome(lease, kind, host_due, error=rec.error, links=links, seen=seen, validators=validators)
        return Finished(rec, outcome, exchange, dom)


def fetched_besides(url: str, rec: Record) -> tuple[str, ...]:
    """The URLs a fetch of `url` requested besides `url` itself: same-host redirect hops and the final URL.

    They were fetched under this lease, so they are marked seen (not queued): `/a` → 301 → `/b` and a link
    to `/b` must not request `/b` twice. A cross-host `redirect_to` target was not requested: not included.
    """
    if not rec.redirects:
        return ()
    out = dict.fromkeys(str(hop["url"]) for hop in rec.redirects[1:])
    out[rec.final_url] = None
    out.pop(url, None)
    return tuple(out)


def page_validators(lease: Lease, pf: PageFetch) -> Validators | None:
    """The validators to keep for a recrawl: those of a 2xx answered by the URL itself (no redirect), or of a
    304 to our conditional request (its own, else the ones we sent). None for everything else."""
    resp = pf.response
    if resp is None or pf.error is not None or pf.hops:
        return None
    if 200 <= resp.status < 300:
        return Validators.from_headers(resp.headers)
    if resp.status == 304 and pf.conditional:
        sent = lease.validators
        fresh = Validators.from_headers(resp.headers)
        if fresh is None or sent is None:
            return fresh or sent
        return Validators(fresh.etag or sent.etag, fresh.last_modified or sent.last_modified)
    return None


def _no_sitemap(item: UrlItem, resp: Response | None) -> bool:
    """A guessed `/sitemap.xml` answered with an error status: the host has none there (not a failure)."""
    return item.kind == SITEMAP_PROBE and resp is not None and resp.status >= 400


def lease_deadline(lease: Lease, now: float) -> float:
    """When a request for `lease` must have started: before it expires, with a margin for the answer."""
    left = lease.expires_at - now
    return lease.expires_at - min(10.0, max(left, 0.0) / 4)


def base_record(item: UrlItem, pf: PageFetch, started: float) -> Record:
    """The fields every record has, from the fetch alone (page fields are filled by the analyzer)."""
    resp = pf.response
    return Record(
        url=item.url,
        final_url=pf.final_url,
        status=resp.status if resp is not None else None,
        content_type=resp.content_type if resp is not None else None,
        depth=item.depth,
        fetched_at=iso_utc(started),
        elapsed_ms=round(resp.elapsed_ms, 1) if resp is not None else None,
        redirects=pf.hops,
        redirect_to=pf.redirect_to,
        bytes=len(resp.body) if resp is not None else 0,
        attempts=item.attempts + 1,
        sitemap_urls=0 if item.kind and is_sitemap(item.kind) else None,
    )
