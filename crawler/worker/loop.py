"""The owning worker: claims due hosts from the frontier, fetches, extracts, records, acknowledges.

Delivery: a record is appended to the output log first; the lease's outcome is applied to the
store only after the log was flushed, and the store commits the log offset with it. A crash
therefore leaves the store at most *behind* the log; the records past the committed offset are
read back on start (`replay`) and finish their URLs without a second fetch or a second record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from crawler.core.config import Config, HostSettings
from crawler.core.errors import RETRYABLE, CrawlError, ErrorType
from crawler.core.recent import RecentDict
from crawler.core.stats import Stats, write_json_atomic
from crawler.core.urlitem import UrlItem
from crawler.core.urlnorm import host_key, normalize, origin
from crawler.fetch.pages import PageFetch, PageFetcher
from crawler.fetch.robots import RobotsRules
from crawler.ingest.admit import Ingest
from crawler.output.sink import RecordLog
from crawler.render.types import SubFetch, SubResponse
from crawler.worker.analyze import PageAnalyzer
from frontier.politeness import HostPace, PaceRules, next_due
from frontier.store import AddResult, Counts, HostLimits, Lease, Outcome, OutcomeKind

log = logging.getLogger("crawler.worker.loop")

#: HTTP statuses worth another attempt (RFC 9110: the server may succeed later).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Errors raised before any request reached the host.
NO_REQUEST = frozenset({ErrorType.ROBOTS_DISALLOWED, ErrorType.PRIVATE_ADDRESS, ErrorType.INVALID_URL})
HOST_MEMORY = 100_000  # hosts whose politeness state a worker remembers (most recently active)
ACK_INTERVAL = 0.05  # seconds between applying finished leases to the store
COMMIT_INTERVAL = 0.5  # seconds between durable commits (and stats.json writes)


def iso_utc(ts: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-28T02:13:37.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


class WorkerFrontier(Protocol):
    """The part of the frontier a worker uses: the store itself, or its remote view in a cluster."""

    async def claim(self, now: float, limit: int) -> list[Lease]: ...
    async def add(self, items: Sequence[UrlItem], now: float) -> AddResult: ...
    async def complete(self, outcomes: Sequence[Outcome], now: float) -> int: ...
    async def release(self, leases: Sequence[Lease], now: float) -> None: ...
    async def next_due(self, now: float) -> float | None: ...
    async def set_host_limits(self, host: str, limits: HostLimits) -> None: ...
    async def counts(self) -> Counts: ...
    async def set_meta(self, key: str, value: str) -> None: ...
    async def flush(self) -> None: ...


class Worker:
    """Runs the claim → fetch → extract → record → ack loop until the frontier is empty or stopped."""

    def __init__(
        self,
        *,
        config: Config,
        store: WorkerFrontier,
        fetcher: PageFetcher,
        ingest: Ingest,
        analyzer: PageAnalyzer,
        sink: RecordLog,
        stats: Stats,
        stats_path: Any = None,
        replay: dict[str, dict[str, Any]] | None = None,
        host_settings: Callable[[str], HostSettings] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.fetcher = fetcher
        self.ingest = ingest
        self.analyzer = analyzer
        self.sink = sink
        self.stats = stats
        self.stats_path = stats_path
        self.replay = replay or {}
        # Live per-domain overrides (distributed crawl) sit on top of the config here.
        self.host_settings = host_settings or config.for_host
        self.clock = clock
        self.tasks: dict[asyncio.Task[None], Lease] = {}
        self._pending: list[Outcome] = []
        self._paces: RecentDict[str, HostPace] = RecentDict(HOST_MEMORY)
        self._crawl_delays: RecentDict[str, tuple[float | None, HostSettings]] = RecentDict(HOST_MEMORY)
        self._last_hit: RecentDict[str, float] = RecentDict(HOST_MEMORY)  # end of the host's last request
        self._gates: RecentDict[str, asyncio.Lock] = RecentDict(HOST_MEMORY)
        self._next_start: RecentDict[str, float] = RecentDict(HOST_MEMORY)  # next start slot (concurrency > 1)
        self._wake = asyncio.Event()
        self._stopping = False
        self.finished = False

    # ---- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; `run` drains what is in flight and returns."""
        self._stopping = True
        self._wake.set()

    def held_tokens(self) -> list[int]:
        """Tokens of the leases this worker holds: in flight, or finished but not yet acknowledged."""
        return [lease.token for lease in self.tasks.values()] + [o.lease.token for o in self._pending]

    def _limit_reached(self) -> bool:
        cap = self.config.crawl.max_pages
        return bool(cap) and self.stats.c["pages"] + len(self.tasks) >= cap

    async def run(self, drain_timeout: float = 10.0) -> None:
        """Crawl until nothing is queued (or max_pages / stop); always leaves the store committed."""
        committer = asyncio.create_task(self._commit_loop())
        try:
            await self._claim_loop()
            if self.tasks:
                _done, _ = await asyncio.wait(list(self.tasks), timeout=drain_timeout)
        finally:
            leftover = [lease for task, lease in self.tasks.items() if not task.done()]
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
            await self._apply_pending()
            if leftover:
                await self.store.release(leftover, self.clock())
            await self.commit()

    async def _claim_loop(self) -> None:
        concurrency = self.config.crawl.concurrency
        while not self._stopping:
            await self._apply_pending()
            now = self.clock()
            free = concurrency - len(self.tasks)
            cap = self.config.crawl.max_pages
            if cap:
                free = min(free, cap - self.stats.c["pages"] - len(self.tasks))
            leases = await self.store.claim(now, free) if free > 0 else []
            for lease in leases:
                task = asyncio.create_task(self._process(lease))
                self.tasks[task] = lease
                task.add_done_callback(self._task_done)
            if leases and len(leases) == free:
                await asyncio.sleep(0)
                continue
            if self._limit_reached() and not self.tasks:
                self.finished = True
                return
            wait = 1.0
            if free > 0:
                due = await self.store.next_due(now)
                if due is None and not self.tasks and not self._pending:
                    self.finished = True
                    return
                if due is not None:
                    wait = min(wait, max(due - now, 0.005 if not leases else 0.0))
            self._wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("worker task failed", exc_info=task.exception())
        self._wake.set()

    async def _commit_loop(self) -> None:
        last_commit = 0.0
        while True:
            await asyncio.sleep(ACK_INTERVAL)
            try:
                await self._apply_pending()
                if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                    await self.commit()
                    last_commit = time.monotonic()
            except Exception:
                # Without commits nothing becomes durable: stop the crawl loudly rather than run on.
                log.exception("committing the crawl state failed; stopping")
                self.stop()
                raise

    async def _apply_pending(self) -> None:
        if not self._pending:
            return
        offset = self.sink.flush()  # records reach the log before their leases are acknowledged
        outcomes, self._pending = self._pending, []
        links = [item for o in outcomes for item in o.links]
        for o in outcomes:
            o.links = ()
        now = self.clock()
        await self.store.complete(outcomes, now)
        if links:  # added separately (same commit) so the store's verdicts reach the counters
            added = await self.store.add(links, now)
            self.stats.incr("duplicate_urls", added.duplicates)
            if added.over_budget:
                self.stats.skip("over_budget", added.over_budget)
        await self.store.set_meta("log_offset", str(offset))
        self._wake.set()

    async def commit(self) -> None:
        """Flush the log, commit the store with the log offset and counters, write stats.json."""
        await self._apply_pending()
        offset = self.sink.flush()
        snap = self.stats.snapshot()
        await self.store.set_meta("log_offset", str(offset))
        await self.store.set_meta("stats", orjson.dumps(snap).decode())
        await self.store.flush()
        if self.stats_path is not None:
            counts = await self.store.counts()
            snap.update(queued=counts.queued, in_flight=counts.leased, hosts=counts.hosts, finished=self.finished)
            write_json_atomic(self.stats_path, snap)

    # ---- one lease -------------------------------------------------------------------------

    def _pace_rules(self, settings: HostSettings, crawl_delay: float | None) -> PaceRules:
        p = self.config.politeness
        return PaceRules(
            settings.delay,
            crawl_delay,
            p.retry_after_max,
            p.max_backoff_delay,
            p.breaker_failures,
            p.breaker_cooldown,
            p.breaker_max_cooldown,
        )

    async def _process(self, lease: Lease) -> None:
        try:
            await self._process_lease(lease)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or an infrastructure failure (Redis gone past its deadline) must not orphan the
            # lease: hand it back untouched so it is fetched again, by us or another worker.
            log.exception("processing %s failed; releasing its lease", lease.item.url)
            await self.store.release([lease], self.clock())

    async def _process_lease(self, lease: Lease) -> None:
        item = lease.item
        record = self.replay.pop(item.url, None)
        if record is not None:
            self._finish_replayed(lease, record)
            return
        settings = self.host_settings(item.host)
        pace = self._paces.get(item.host, HostPace())

        def delay_for(rules: RobotsRules) -> float:
            return self._pace_rules(settings, rules.crawl_delay).base_delay + pace.backoff

        if settings.concurrency > 1:
            await self._space_start(item.host, settings)
        started = self.clock()
        try:
            pf = await self.fetcher.fetch(item.url, item.depth, delay_for)
        except CrawlError as exc:  # defensive: the fetcher reports errors in its result
            pf = PageFetch(url=item.url, final_url=item.url, error=exc)
        now = self.clock()
        crawl_delay = pf.rules.crawl_delay if pf.rules else None
        await self._learn_crawl_delay(item.host, settings, crawl_delay)
        resp = pf.response
        if resp is not None:
            self.stats.incr("fetched")
            self.stats.incr("bytes", len(resp.body))
        host_due = now  # no request went out (refused before connecting): the host owes no gap
        rules = self._pace_rules(settings, crawl_delay)
        if resp is not None or (pf.error is not None and pf.error.type in RETRYABLE):
            host_due, pace = next_due(
                rules,
                pace,
                now=now,
                status=resp.status if resp is not None else None,
                retry_after=resp.retry_after if resp is not None else None,
            )
            self._paces[item.host] = pace
        elif pf.error is not None and pf.error.type not in NO_REQUEST:
            host_due = now + rules.base_delay + pace.backoff  # e.g. too_large, tls_error: a request went out
        if host_due > now:
            self._last_hit[item.host] = now
        if pf.robots_unavailable and pf.rules is not None:
            await self._retry_or_die(lease, pf, started, host_due=pf.rules.expires_at, retry_at=pf.rules.expires_at)
            return
        retryable = (pf.error is not None and pf.error.type in RETRYABLE) or (
            pf.error is None and resp is not None and resp.status in RETRY_STATUSES
        )
        if retryable:
            await self._retry_or_die(lease, pf, started, host_due=host_due)
            return
        try:
            rec, links = await self._build_record(item, pf, started, settings)
        except CrawlError as exc:  # the browser failed: try the page again later
            pf.error = exc
            await self._retry_or_die(lease, pf, started, host_due=self._after_render(item.host, host_due, rules, pace))
            return
        self._write(lease, rec, links, self._after_render(item.host, host_due, rules, pace), kind="done")

    async def _space_start(self, host: str, settings: HostSettings) -> None:
        """Keep request starts on a host `delay` apart when several leases of it run at once.

        The store spaces claims, but leases can wait (in a worker's inbox) and then start together.
        A start slot is reserved before sleeping, so concurrent tasks line up instead of colliding.
        """
        now = self.clock()
        known = self._crawl_delays.get(host)
        spacing = max(settings.delay, (known[0] or 0.0) if known else 0.0)
        start = max(now, self._next_start.get(host, 0.0))
        self._next_start[host] = start + spacing
        if start > now:
            await asyncio.sleep(start - now)

    def _after_render(self, host: str, host_due: float, rules: PaceRules, pace: HostPace) -> float:
        """A render's subrequests hit the host after the page: the next fetch waits from the last of them."""
        last = self._last_hit.get(host)
        return host_due if last is None else max(host_due, last + rules.base_delay + pace.backoff)

    async def _learn_crawl_delay(self, host: str, settings: HostSettings, crawl_delay: float | None) -> None:
        # Keyed on the settings too: a live override (`crawler domain set`) must not drop Crawl-delay.
        if self._crawl_delays.get(host) == (crawl_delay, settings):
            return
        self._crawl_delays[host] = (crawl_delay, settings)
        await self.store.set_host_limits(host, settings.limits(crawl_delay))

    async def _retry_or_die(
        self, lease: Lease, pf: PageFetch, started: float, *, host_due: float, retry_at: float | None = None
    ) -> None:
        item = lease.item
        attempts = item.attempts + 1
        fetch = self.config.fetch
        if attempts < fetch.max_attempts:
            if retry_at is None:
                backoff = (
                    fetch.retry_backoff[min(attempts, len(fetch.retry_backoff)) - 1] if fetch.retry_backoff else 0.0
                )
                retry_at = max(host_due, self.clock() + backoff * random.uniform(0.8, 1.2))
            self.stats.incr("retries")
            self._pending.append(Outcome(lease, "retry", host_due, retry_at=retry_at))
            return
        rec, _ = await self._build_record(item, pf, started)
        rec["dead_letter"] = True
        self.stats.incr("dead_letters")
        self._write(lease, rec, [], host_due, kind="dead")

    async def _build_record(
        self, item: UrlItem, pf: PageFetch, started: float, settings: HostSettings | None = None
    ) -> tuple[dict[str, Any], list[str]]:
        resp = pf.response
        error = pf.error
        rec: dict[str, Any] = {
            "url": item.url,
            "final_url": pf.final_url,
            "status": resp.status if resp is not None else None,
            "content_type": resp.content_type if resp is not None else None,
            "depth": item.depth,
            "fetched_at": iso_utc(started),
            "elapsed_ms": round(resp.elapsed_ms, 1) if resp is not None else None,
            "title": None,
            "description": None,
            "canonical": None,
            "meta_robots": None,
            "links": [],
            "links_followed": False,
            "simhash": None,
            "text_chars": 0,
            "near_duplicate_of": None,
            "rendered": False,
            "render_reason": None,
            "redirects": pf.hops,
            "redirect_to": pf.redirect_to,
            "bytes": len(resp.body) if resp is not None else 0,
            "error": None,
            "attempts": item.attempts + 1,
            "dead_letter": False,
        }
        follow: list[str] = []
        if pf.redirect_to is not None:
            follow = [pf.redirect_to]
            rec["links"] = follow
            rec["links_followed"] = True
            self.stats.incr("redirects")
        elif resp is not None and error is None:
            if resp.status >= 400:
                error = CrawlError(ErrorType.HTTP_ERROR, f"HTTP {resp.status}")
            elif 200 <= resp.status < 300:
                error, follow = await self.analyzer.analyze(
                    rec,
                    resp,
                    pf.final_url,
                    host=item.host,
                    render_mode=settings.render if settings is not None else "never",
                    fetch_sub=self._sub_fetcher(item.host, settings) if settings is not None else None,
                    max_outlinks=settings.max_outlinks if settings is not None else None,
                )
        if error is not None:
            rec["error"] = error.as_dict()
            self.stats.errors[error.type.value] += 1
            if error.type is ErrorType.ROBOTS_DISALLOWED:
                self.stats.incr("robots_disallowed")
        return rec, follow

    def _sub_fetcher(self, host: str, settings: HostSettings) -> SubFetch:
        """What a rendering page may fetch: same host, robots-allowed, paced like any request to the host."""
        fetcher = self.fetcher
        known = self._crawl_delays.get(host)
        pace_rules = self._pace_rules(settings, known[0] if known else None)

        async def fetch_sub(url: str, resource_type: str) -> SubResponse | None:
            try:
                url = normalize(url)
            except CrawlError:
                return None
            if host_key(url) != host:
                return None
            rules = await fetcher.robots.get(origin(url))
            if not rules.allowed(url):
                self.stats.incr("render_refused")
                return None
            async with self._host_gate(host):
                wait = self._last_hit.get(host, 0.0) + pace_rules.base_delay - self.clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    resp = await fetcher.http.fetch(url)
                except CrawlError:
                    return None
                finally:
                    self._last_hit[host] = self.clock()
            self.stats.incr("render_subrequests")
            return SubResponse(resp.status, dict(resp.headers), resp.body)

        return fetch_sub

    def _host_gate(self, host: str) -> asyncio.Lock:
        lock = self._gates.get(host) or asyncio.Lock()
        self._gates[host] = lock  # written on every use, so a busy host's lock is never evicted
        return lock

    def _write(self, lease: Lease, rec: dict[str, Any], follow: list[str], host_due: float, kind: OutcomeKind) -> None:
        self.sink.write(rec)
        self._count_record(rec)
        links = self.ingest.admit(follow, lease.item.depth + 1) if follow else []
        self._pending.append(Outcome(lease, kind, host_due, error=rec["error"], links=links))

    def _count_record(self, rec: dict[str, Any]) -> None:
        self.stats.incr("pages")
        if rec.get("error") is not None:
            self.stats.incr("failed")
        if rec.get("near_duplicate_of"):
            self.stats.incr("near_duplicates")

    def _finish_replayed(self, lease: Lease, rec: dict[str, Any]) -> None:
        """A record written before a crash whose ack was lost: finish it without refetching."""
        self._count_record(rec)
        follow = rec.get("links") or [] if rec.get("links_followed") else []
        links = self.ingest.admit(follow, lease.item.depth + 1) if follow else []
        kind = "dead" if rec.get("dead_letter") else "done"
        self._pending.append(Outcome(lease, kind, self.clock(), error=rec.get("error"), links=links))
