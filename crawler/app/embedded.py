"""The composition root of an embedded crawl: opens every resource once, in one exit stack."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from crawler.app.builder import Stopper, build_worker, make_scope
from crawler.app.metrics_http import open_metrics
from crawler.core.config import Config
from crawler.core.errors import ConfigError
from crawler.core.stats import Stats
from crawler.extract.neardup import MIN_NEARDUP_TEXT, LocalNearDup, NearDupIndex
from crawler.fetch.robots import RobotsCache
from crawler.ingest.scope import Scope, seed_domains
from crawler.output.progress import report_progress
from crawler.output.sink import RecordLog
from crawler.output.warc import WARC_DIR, remove_all
from crawler.worker.frontier import StoreFrontier
from frontier.sqlite.store import DB_FILENAME, SqliteStore

log = logging.getLogger("crawler")

PAGES = "pages.jsonl"
STATS = "stats.json"
FRONTIER_FILES = tuple(DB_FILENAME + suffix for suffix in ("", "-wal", "-shm"))


@dataclass(frozen=True)
class CrawlJob:
    """What `crawler crawl` was asked to do."""

    out: Path
    seeds: list[str]
    config: Config
    fresh: bool = False
    progress: bool = True


def has_state(out: Path) -> bool:
    """Whether `out` holds an earlier crawl that `crawler crawl -o OUT` would resume."""
    return (out / DB_FILENAME).exists()


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """One process per output folder: a second one would corrupt the resume state."""
    fh = open(out / ".lock", "w")  # noqa: SIM115 - released in finally
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{out} is in use by another crawler process") from None
        yield
    finally:
        fh.close()


def _scope(job: CrawlJob, known_domains: list[str]) -> Scope:
    """Configured domains, else the seeds' hosts plus those of earlier runs of this folder."""
    cfg = job.config
    domains = set(known_domains) | set(seed_domains(job.seeds))
    if not cfg.crawl.allow_domains and not domains:
        raise ConfigError("no valid seed URL given")
    return make_scope(cfg, sorted(domains))


def _rebuild_neardup(path: Path, index: NearDupIndex) -> None:
    """Refill the near-dup index from an earlier run's records, so a resume still finds duplicates."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for line in fh:
            if b'"simhash":"' not in line or b'"near_duplicate_of":null' not in line:
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            fp = rec.get("simhash")
            if fp and rec.get("error") is None and rec.get("text_chars", 0) >= MIN_NEARDUP_TEXT:
                index.add(int(fp, 16), rec["url"])


def waiting_hosts(robots: RobotsCache, now: float | None = None) -> list[dict[str, Any]]:
    """The origins waiting for their robots.txt, as the progress line shows them."""
    now = time.time() if now is None else now
    return [
        {"host": w.origin, "reason": w.cause, "tries": w.failures, "retry_in": round(w.retry_at - now, 1)}
        for w in robots.waiting()
    ]


async def run_crawl(job: CrawlJob) -> dict[str, Any]:
    """Crawl to completion (or max_pages / a signal); returns the final stats snapshot."""
    job.out.mkdir(parents=True, exist_ok=True)
    with folder_lock(job.out):
        if job.fresh:
            for name in (PAGES, STATS, *FRONTIER_FILES):
                (job.out / name).unlink(missing_ok=True)
            remove_all(job.out / WARC_DIR)
        return await _run(job)


async def _run(job: CrawlJob) -> dict[str, Any]:
    cfg = job.config
    stats = Stats()

    async with AsyncExitStack() as stack:
        metrics = await open_metrics(stack, cfg.metrics)  # first: a port in use stops us before any work
        store = await SqliteStore.open(job.out, host_limits=cfg.host_limits, seen_ttl=cfg.crawl.seen_ttl)
        stack.push_async_callback(store.close)
        if metrics is not None:
            metrics.watch_store(stack, store)
        scope = _scope(job, orjson.loads(await store.get_meta("allow_domains") or "[]"))
        await store.set_meta("allow_domains", orjson.dumps(sorted(scope.allow_domains)).decode())
        saved = await store.get_meta("stats")
        if saved:
            stats.restore(orjson.loads(saved))
        committed = int(await store.get_meta("log_offset") or 0)
        replay = {rec["url"]: rec for rec in RecordLog.recover_tail(job.out / PAGES, committed)}
        if replay:
            log.info("resuming: %d records past the last commit will be acknowledged", len(replay))
        neardup = NearDupIndex(cfg.crawl.near_duplicate_distance)
        if committed:
            _rebuild_neardup(job.out / PAGES, neardup)
        built = await build_worker(
            stack,
            cfg,
            frontier=StoreFrontier(store),
            scope=scope,
            stats=stats,
            neardup=LocalNearDup(neardup),
            sink_path=job.out / PAGES,
            stats_path=job.out / STATS,
            replay=replay,
            metrics=metrics,
        )
        worker = built.worker
        # Before the seeds: a seed fetched before comes back with its validators (a conditional request).
        recrawled = await store.recrawl(time.time())
        if recrawled.queued:
            log.info(
                "recrawl: %d pages fetched more than crawl.seen_ttl ago queued again (%d with validators)",
                recrawled.queued,
                recrawled.conditional,
            )
        added = await store.add(built.ingest.admit_seeds(job.seeds), time.time())
        log.info("seeds: %d queued, %d already known", added.queued, added.duplicates)
        Stopper().install(stack).listen(worker.stop)

        async def snapshot() -> dict[str, Any]:
            counts = await store.counts()
            return stats.snapshot(
                queued=counts.queued,
                in_flight=len(worker.tasks),
                hosts=counts.hosts,
                robots_waiting=waiting_hosts(built.robots),
            )

        progress = asyncio.create_task(report_progress(snapshot, cfg.crawl.max_pages)) if job.progress else None
        try:
            await worker.run()
        finally:
            if progress is not None:
                progress.cancel()
                await asyncio.gather(progress, return_exceptions=True)
        counts = await store.counts()
        return stats.snapshot(
            queued=counts.queued,
            in_flight=0,
            hosts=counts.hosts,
            dead=counts.dead,
            finished=worker.finished,
            stopped=worker.stop_reason,
        )
