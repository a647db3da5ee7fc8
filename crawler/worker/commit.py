"""Finished leases reach the frontier in batches, always after their records reached the log.

A record is appended to the output log first; its outcome is applied to the frontier only after the
log was flushed, and a checkpoint commits the log offset up to which every record's outcome was
applied. A crash therefore leaves the frontier at most *behind* the log: the records past the
committed offset are read back on start (replay) and finish their URLs without a second fetch.

With a WARC archive, each flush of the log is preceded by a flush of the archive covering exactly the
records about to be written, so every `warc` pointer in the log names data already in a WARC file.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from crawler.core.errors import LeasesLost
from crawler.core.stats import Counter, Stats
from crawler.output.files import write_json_atomic
from crawler.output.sink import RecordLog
from crawler.output.warc import WarcArchive
from crawler.worker.frontier import WorkerFrontier
from frontier.store import Outcome

log = logging.getLogger("crawler.worker")

ACK_INTERVAL = 0.05  # seconds between applying finished leases to the frontier
COMMIT_INTERVAL = 0.5  # seconds between durable checkpoints (and stats.json writes)


class Committer:
    """Holds finished outcomes until their records are flushed, then hands them to the frontier."""

    def __init__(
        self,
        frontier: WorkerFrontier,
        sink: RecordLog,
        stats: Stats,
        *,
        stats_path: Path | None = None,
        archive: WarcArchive | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.frontier = frontier
        self.sink = sink
        self.archive = archive
        self.stats = stats
        self.stats_path = stats_path
        self.clock = clock
        self._pending: list[Outcome] = []
        self._archiving: list[Outcome] = []  # taken by an apply that waits for the archive: still held
        self._applied_offset = sink.offset  # the log up to here has every outcome applied
        self.on_applied: Callable[[], None] | None = None  # called after each batch handed on
        self._applying = asyncio.Lock()  # batches go out one at a time, so offsets advance in order
        self._epoch = 0  # counts `discard`s

    def add(self, outcome: Outcome) -> None:
        """Queue an outcome; its record (if any) must already be written to the sink."""
        self._pending.append(outcome)

    @property
    def pending(self) -> int:
        """Outcomes not yet handed to the frontier."""
        return len(self._pending) + len(self._archiving)

    def held(self) -> list[Outcome]:
        """Outcomes finished here but not yet handed to the frontier (what `discard` would drop)."""
        return [*self._pending, *self._archiving]

    def held_tokens(self) -> list[int]:
        """Tokens of leases finished here but not yet handed to the frontier."""
        return [o.lease.token for o in self.held()]

    async def apply(self) -> None:
        """Flush the log, then hand every pending outcome (and its links) to the frontier."""
        if not self._pending:
            return
        async with self._applying:
            await self._apply()

    async def _apply(self) -> None:
        if not self._pending:
            return
        outcomes, self._pending = self._pending, []
        records = self.sink.pending  # the records of exactly these outcomes (written together)
        if self.archive is not None:
            epoch = self._epoch
            self._archiving = outcomes
            try:
                # Off the event loop; records queued meanwhile wait, with their outcomes, for the next batch.
                await self.archive.flush()
            except BaseException:
                self._pending[:0] = outcomes
                raise
            finally:
                self._archiving = []
            if epoch != self._epoch:
                return  # discarded while the archive wrote: these outcomes and their records are gone
        offset = self.sink.flush(records)  # records reach the log before their leases are acknowledged
        links = [item for o in outcomes for item in o.links]
        try:
            added = await self.frontier.finish([replace(o, links=()) for o in outcomes], links, self.clock())
        except LeasesLost:
            # Refused: the leases are another worker's now. The worker drops this work (`discard`).
            self._pending[:0] = outcomes
            return
        except BaseException:
            # Not applied: keep them (links included) for the next try, and the committed offset behind them.
            self._pending[:0] = outcomes
            raise
        if added is not None:
            self.stats.incr(Counter.DUPLICATE_URLS, added.duplicates)
            if added.over_budget:
                self.stats.skip("over_budget", added.over_budget)
        self._applied_offset = offset
        if self.on_applied is not None:
            self.on_applied()

    def discard(self) -> int:
        """Forget every outcome not handed on and cut their records from the log (the leases were lost);
        returns how many records were cut."""
        self._pending.clear()
        self._epoch += 1
        return self.sink.truncate(self._applied_offset)

    async def checkpoint(self, **extra: Any) -> None:
        """Apply what is pending, commit it durably with the log offset and counters, write stats.json."""
        await self.apply()
        snap = self.stats.snapshot()
        await self.frontier.checkpoint(self._applied_offset, snap)
        if self.stats_path is not None:
            counts = await self.frontier.counts()
            if counts is not None:
                snap.update(queued=counts.queued, in_flight=counts.leased, hosts=counts.hosts)
            snap.update(extra)
            write_json_atomic(self.stats_path, snap)

    async def run(self, on_failure: Callable[[], None]) -> None:
        """Apply every ACK_INTERVAL and checkpoint every COMMIT_INTERVAL until cancelled."""
        last = 0.0
        while True:
            await asyncio.sleep(ACK_INTERVAL)
            try:
                await self.apply()
                if time.monotonic() - last >= COMMIT_INTERVAL:
                    await self.checkpoint(finished=False)
                    last = time.monotonic()
            except Exception:
                # Without commits nothing becomes durable: stop the crawl loudly rather than run on.
                log.exception("committing the crawl state failed; stopping")
                on_failure()
                raise
