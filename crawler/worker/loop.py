"""The worker's claim loop: claim due leases, run each as a task, write its record, hand on its outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from crawler.core.config import Config
from crawler.core.errors import LeasesLost
from crawler.core.stats import Counter, Stats
from crawler.ingest.admit import Ingest
from crawler.output.sink import RecordLog
from crawler.output.warc import WarcArchive
from crawler.worker.commit import Committer
from crawler.worker.frontier import WorkerFrontier
from crawler.worker.lease import Finished, LeaseRunner
from crawler.worker.slot import NotDue
from frontier.store import Lease, Outcome

log = logging.getLogger("crawler.worker")


class Worker:
    """Runs claim → fetch → record → ack until the frontier is empty, `max_pages` is reached or `stop`."""

    def __init__(
        self,
        *,
        config: Config,
        frontier: WorkerFrontier,
        runner: LeaseRunner,
        committer: Committer,
        sink: RecordLog,
        ingest: Ingest,
        stats: Stats,
        replay: dict[str, dict[str, Any]] | None = None,
        archive: WarcArchive | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.archive = archive
        self.frontier = frontier
        self.runner = runner
        self.committer = committer
        self.sink = sink
        self.ingest = ingest
        self.stats = stats
        self.replay = replay or {}
        self.clock = clock
        self.tasks: dict[asyncio.Task[None], Lease] = {}
        self._wake = asyncio.Event()
        committer.on_applied = self._wake.set  # hosts freed by a batch may be claimable now
        self._stopping = False
        self.finished = False  # nothing left (or max_pages reached): not interrupted
        self.stop_reason: str | None = None

    def stop(self, reason: str = "stopped") -> None:
        """Stop claiming; `run` drains what is in flight and returns."""
        self._stopping = True
        self.stop_reason = self.stop_reason or reason
        self._wake.set()

    def held_tokens(self) -> list[int]:
        """Tokens of the leases this worker holds: in flight, or finished but not yet handed on."""
        return [lease.token for lease in self.tasks.values()] + self.committer.held_tokens()

    def _room(self) -> int:
        free = self.config.crawl.concurrency - len(self.tasks)
        cap = self.config.crawl.max_pages
        if cap:
            free = min(free, cap - self.stats.c[Counter.PAGES] - len(self.tasks))
        return free

    async def run(self, drain_timeout: float = 10.0) -> None:
        """Crawl until nothing is queued (or max_pages / stop); always leaves the frontier checkpointed."""
        committer = asyncio.create_task(self.committer.run(lambda: self.stop("commit failed")))
        try:
            await self._claim_loop()
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=drain_timeout)
        finally:
            leftover = [lease for task, lease in self.tasks.items() if not task.done()]
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
            await self.committer.apply()
            if leftover:
                await self.frontier.release(leftover, self.clock())
            await self.committer.checkpoint(finished=self.finished)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            if not self.frontier.valid():
                await self._start_afresh()
            await self.committer.apply()
            now = self.clock()
            free = self._room()
            leases = await self.frontier.claim(now, free) if free > 0 else []
            for lease in leases:
                task = asyncio.create_task(self._process(lease))
                self.tasks[task] = lease
                task.add_done_callback(self._task_done)
            if leases and len(leases) == free:
                await asyncio.sleep(0)
                continue
            if self.config.crawl.max_pages and self._room() <= 0 and not self.tasks:
                self.finished = True
                return
            wait = 1.0
            if free > 0:
                due = await self.frontier.next_due(now)
                if due is None and not self.tasks and not self.committer.pending:
                    self.finished = True
                    return
                if due is not None:
                    wait = min(wait, max(due - now, 0.005 if not leases else 0.0))
            self._wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def _start_afresh(self) -> None:
        """Our leases may be another worker's now: drop every bit of their work, then join again."""
        running = list(self.tasks)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._unadmit(self.committer.held())
        self.runner.sitemaps.forget_offers()  # sitemaps found may have ridden on dropped outcomes
        cut = self.committer.discard()
        if cut:
            self.stats.incr(Counter.PAGES, -cut)  # those records are no longer in the log
        log.warning("leases lost: dropped %d running fetches and %d unacknowledged records", len(running), cut)
        await self.frontier.rejoin()

    def _unadmit(self, outcomes: list[Outcome]) -> None:
        """Dropped outcomes never reached the frontier: their links (and redirect targets) are not known
        to the store, so this process's dedup cache must not keep dropping them (the refetch offers them)."""
        self.ingest.forget(key for o in outcomes for key in (*(i.seen_key for i in o.links), *o.seen))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("worker task failed", exc_info=task.exception())
        self._wake.set()

    async def _process(self, lease: Lease) -> None:
        try:
            replayed = self._replayed(lease)
            if replayed is not None and not lease.item.kind:
                self._finish_replayed(lease, replayed)
                return
            finished = await self.runner.run(lease)
            if not self.frontier.valid():
                self._unadmit([finished.outcome])
                return  # the lease may be another's now: its record would be a duplicate
            if replayed is not None:
                # A sitemap's record lists at most max_outlinks of its URLs, and not which are sitemaps: it was
                # read again (one request) for its items; the record already in the log (and its WARC data) stands.
                finished.record = None
                self._count(
                    replayed.get("error") is not None,
                    False,
                    replayed.get("status"),
                    replayed.get("bytes") or 0,
                    sitemap=True,
                )
            self._write(finished)
        except asyncio.CancelledError:
            raise
        except LeasesLost:
            return  # no request went out for it; the frontier gives the lease to the host's new owner
        except NotDue:
            # The host is held (Retry-After, an open circuit) past the lease's expiry: give it back unfetched
            # rather than have the frontier hand it out again while this task still waits. The answer that
            # set the hold goes first, so the frontier knows the host's due time before it sees the lease.
            await self.committer.apply()
            await self.frontier.release([lease], self.clock())
        except Exception:
            # A bug or an infrastructure failure (Redis gone past its deadline) must not orphan the
            # lease: hand it back untouched so it is fetched again, by us or another worker.
            log.exception("processing %s failed; releasing its lease", lease.item.url)
            await self.frontier.release([lease], self.clock())

    def _replayed(self, lease: Lease) -> dict[str, Any] | None:
        """The record written for this lease's URL before a crash, if it is of the lease's kind (page or sitemap)."""
        rec = self.replay.get(lease.item.url)
        if rec is None or (rec.get("sitemap_urls") is not None) != bool(lease.item.kind):
            return None
        return self.replay.pop(lease.item.url)

    def _write(self, finished: Finished) -> None:
        rec = finished.record
        if rec is not None:
            if self.archive is not None:
                # Queued with the record, so the committer's next flush writes both, the WARC data first.
                self.archive.add_page(rec, finished.exchange, finished.dom)
            self.sink.write(rec)
            sitemap = rec.sitemap_urls is not None
            self._count(rec.error is not None, bool(rec.near_duplicate_of), rec.status, rec.bytes, sitemap=sitemap)
        self.committer.add(finished.outcome)

    def _count(
        self, failed: bool, near_duplicate: bool, status: int | None, nbytes: int, *, sitemap: bool = False
    ) -> None:
        self.stats.incr(Counter.PAGES)
        self.stats.page(status, nbytes)
        if failed:
            self.stats.incr(Counter.FAILED)
        if near_duplicate:
            self.stats.incr(Counter.NEAR_DUPLICATES)
        if sitemap:
            self.stats.incr(Counter.SITEMAPS)

    def _finish_replayed(self, lease: Lease, rec: dict[str, Any]) -> None:
        """A record written before a crash whose outcome was lost: finish it without refetching."""
        self._count(
            rec.get("error") is not None, bool(rec.get("near_duplicate_of")), rec.get("status"), rec.get("bytes") or 0
        )
        follow = (rec.get("links") or []) if rec.get("links_followed") else []
        links = self.ingest.admit(follow, lease.item.depth + 1) if follow else []
        kind = "dead" if rec.get("dead_letter") else "done"
        self.committer.add(Outcome(lease, kind, self.clock(), error=rec.get("error"), links=links))
