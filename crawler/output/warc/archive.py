"""The crawl's WARC archive: queued on the event loop, written off it in batches, always before the record log.

The HTTP fetcher hands over every exchange as it arrives (`add_exchange`: a list append) and the worker
hands over each page record with its final response and rendered DOM (`add_page`). `flush` (the
committer calls it just before it writes the record log) builds, compresses and appends everything
queued so far in a worker thread, then fills in each page record's `warc` pointer. So a record that
reaches `pages.jsonl` points at WARC data already in the file, and a crash can only tear the batch
being written, whose records never reached the log.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from crawler.core.config import Config
from crawler.core.exchange import Exchange
from crawler.core.recent import RecentDict
from crawler.core.record import Record
from crawler.output.warc.files import WARC_DIR, WarcFiles, repair_orphans
from crawler.output.warc.records import RecordMaker, new_id, payload_digest, warc_date

log = logging.getLogger("crawler.output.warc")

#: Below this a revisit saves nothing: its HTTP head is about as big as the payload it replaces.
REVISIT_MIN_BYTES = 256
#: Payload digests remembered for revisits (~250 bytes each); the oldest unseen one is forgotten first,
#: and its payload is then simply archived again.
DIGEST_MEMORY = 50_000


@dataclass(slots=True)
class _Page:
    record: Record
    exchange: Exchange
    dom: str | None
    rendered_at: float


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class WarcArchive:
    """Rotating `OUT/warc/*.warc.gz` files of one crawling process; enter with `async with` (repairs, closes)."""

    def __init__(
        self,
        out: Path,
        *,
        writer: str,
        user_agent: str,
        prefix: str = "crawl",
        max_bytes: int = 1_000_000_000,
        gzip_level: int = 6,
        digest_memory: int = DIGEST_MEMORY,
    ) -> None:
        self.out = out
        self.folder = out / WARC_DIR
        self._maker = RecordMaker(gzip_level)
        self._info = {
            "software": f"polite-crawler/{_version('polite-crawler')} warcio/{_version('warcio')}",
            "format": "WARC File Format 1.0",
            "conformsTo": "http://bibnum.bnf.fr/WARC/WARC_ISO_28500_version1_latestdraft.pdf",
            "hostname": socket.gethostname(),
            "http-header-user-agent": user_agent,
            "robots": "classic",
        }
        self._files = WarcFiles(
            self.folder,
            prefix=prefix,
            writer=writer,
            max_bytes=max_bytes,
            header=lambda name: self._maker.warcinfo(name, self._info),
        )
        self._queue: list[Exchange | _Page] = []
        self._seen: RecentDict[str, tuple[str, str, str]] = RecentDict(digest_memory)
        # One thread: batches are written in the order they were taken, each exchange before the pages
        # that point at it, and a flush whose caller was cancelled still completes before the next one.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warc-writer")
        self._last: Future[None] | None = None
        self._failed: BaseException | None = None

    @classmethod
    def for_crawl(cls, cfg: Config, out: Path, writer: str | None = None) -> WarcArchive | None:
        """The archive `cfg` asks for (None with `output.warc` off), writing to `out/warc` as `writer`
        (default: hostname-pid)."""
        o = cfg.output
        if not o.warc:
            return None
        return cls(
            out,
            writer=writer or f"{socket.gethostname()}-{os.getpid()}",
            user_agent=cfg.crawl.user_agent,
            prefix=o.warc_prefix,
            max_bytes=o.warc_max_bytes,
            gzip_level=o.warc_gzip_level,
        )

    async def __aenter__(self) -> WarcArchive:
        for name, cut in await asyncio.to_thread(repair_orphans, self.folder):
            log.warning("%s was left open by a crawler that stopped abruptly: cut %d bytes of a torn record", name, cut)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def files(self) -> list[str]:
        """Names of the files this archive started."""
        return list(self._files.files)

    def add_exchange(self, ex: Exchange) -> None:
        """Queue one HTTP exchange (the fetcher's `on_exchange`)."""
        self._queue.append(ex)

    def add_page(self, record: Record, exchange: Exchange | None, dom: str | None = None) -> None:
        """Queue a page record for its `warc` pointer (to `exchange`, queued earlier) and its rendered DOM."""
        if exchange is not None:
            self._queue.append(_Page(record, exchange, dom, time.time()))

    async def flush(self) -> None:
        """Write everything queued so far, off the event loop; then queued page records carry their pointers.

        Raises the error of any failed batch (a full disk): the crawl must not go on without its archive.
        """
        if self._queue:
            batch, self._queue = self._queue, []
            self._last = self._thread.submit(self._write, batch)
        await self._wait()

    async def aclose(self) -> None:
        """Flush and close the current file."""
        try:
            await self.flush()
        finally:
            self._last = self._thread.submit(self._files.close)
            try:
                await self._wait()
            finally:
                self._thread.shutdown(wait=False)

    async def _wait(self) -> None:
        if self._last is not None:
            # Shielded: cancelling the caller must not cancel a batch the thread has yet to start.
            await asyncio.shield(asyncio.wrap_future(self._last))
        if self._failed is not None:
            raise self._failed

    def _write(self, batch: list[Exchange | _Page]) -> None:
        try:
            self._write_batch(batch)
        except BaseException as exc:
            self._failed = self._failed or exc
            raise

    def _write_batch(self, batch: list[Exchange | _Page]) -> None:
        maker = self._maker
        ids: dict[int, str] = {}  # id(exchange) → its response/revisit record id, for this batch
        units: list[list[bytes]] = []  # the members of each exchange (or DOM), appended in batch order
        remembered: list[str] = []
        for item in batch:
            if isinstance(item, Exchange):
                ids[id(item)] = rec_id = new_id()
                units.append(self._exchange_unit(item, rec_id, remembered))
            elif item.dom is not None:
                ex = item.exchange
                refers_to = ex.archived[0] if ex.archived is not None else ids.get(id(ex))
                dom = item.dom.encode("utf-8", "replace")
                units.append([maker.conversion(item.record.final_url, dom, new_id(), refers_to, item.rendered_at)])
        try:
            placed = iter(self._files.append(units))
        except BaseException:
            for digest in remembered:  # never point a later revisit at a record that was not written
                self._seen.pop(digest, None)
            raise
        members = iter(units)
        for item in batch:  # in the same order: an exchange is placed before the pages pointing at it
            if isinstance(item, Exchange):
                name, offset = next(placed)
                item.archived = (ids[id(item)], f"{WARC_DIR}/{name}", offset, len(next(members)[0]))
                item.payload = b""  # written: the archive keeps no copy
                continue
            if item.dom is not None:  # its conversion record: placed, nothing to note
                next(placed)
                next(members)
            if item.exchange.archived is not None:
                _rec_id, file, offset, length = item.exchange.archived
                item.record.warc = {"file": file, "offset": offset, "length": length}

    def _exchange_unit(self, ex: Exchange, rec_id: str, remembered: list[str]) -> list[bytes]:
        """The response (or a revisit of an identical payload) and its request, kept together in one file."""
        digest = payload_digest(ex.payload)
        original = None
        if 200 <= ex.status < 300 and not ex.cut and len(ex.payload) >= REVISIT_MIN_BYTES:
            original = self._seen.get(digest)
            if original is None:
                remembered.append(digest)
                self._seen[digest] = (rec_id, ex.url, warc_date(ex.started))
            else:
                self._seen[digest] = original  # seen again: kept longer
        maker = self._maker
        if original is not None:
            first = maker.revisit(ex, rec_id, digest, original)
        else:
            first = maker.response(ex, rec_id, digest)
        return [first, maker.request(ex, new_id(), rec_id)]
