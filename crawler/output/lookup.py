"""Finding one URL in record logs (`pages.jsonl`, a worker's `pages-ID.jsonl`) without an index.

A crawl of millions of pages has gigabytes of records, and `crawler explain` asks about one URL. An
index kept by the store would cost every page a write on the hot path for a question asked rarely;
instead each file is memory-mapped and searched for the URL's JSON string with `mmap.find` (a
memchr-based search, ~1-2 GB/s; nothing is parsed but the few lines that hold the URL). One pass:
while a page linking to the URL (or redirecting to it) is still sought, every line holding the URL is
looked at; after that only its own records (`{"url":"…",` at a line start, the serialized field order)
are. A line still being written by a running crawl (no newline yet) is ignored.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Found", "RecordRef", "find_url"]


@dataclass(slots=True, frozen=True)
class RecordRef:
    """One record and where it is: its file and the byte offset of its line."""

    record: dict[str, Any]
    path: Path
    offset: int


@dataclass(slots=True)
class Found:
    """What the logs say about one URL."""

    records: list[RecordRef] = field(default_factory=list)  # its own records, oldest first per file
    linked_from: RecordRef | None = None  # the first record listing it among its `links`
    redirected_from: RecordRef | None = None  # a record whose fetch was redirected to it (`final_url`, hops)
    bytes_scanned: int = 0

    @property
    def latest(self) -> RecordRef | None:
        """The newest of its own records (a requeued dead letter gets a newer line), by `fetched_at`."""
        if not self.records:
            return None
        return max(self.records, key=lambda ref: str(ref.record.get("fetched_at") or ""))


def find_url(url: str, paths: Iterable[Path]) -> Found:
    """Scan `paths` (missing files are skipped) for `url`'s own records and the pages pointing to it."""
    found = Found()
    needle = orjson.dumps(url)
    for path in paths:
        try:
            with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                data.madvise(mmap.MADV_SEQUENTIAL)
                end = data.rfind(b"\n") + 1  # only complete lines
                _scan(data, end, needle, path, found)
                found.bytes_scanned += end
        except (FileNotFoundError, ValueError):  # ValueError: an empty file cannot be mapped
            continue
    return found


def _scan(data: mmap.mmap, end: int, needle: bytes, path: Path, found: Found) -> None:
    own = b'{"url":' + needle + b","
    pos = data.find(needle, 0, end)
    # Phase 1: each occurrence is told apart by the bytes before it (cheap); a line is parsed only for
    # the context still missing. Ends once a linking page is known (a popular URL is on every page).
    while pos >= 0 and found.linked_from is None:
        start = data.rfind(b"\n", 0, pos) + 1
        if pos == start + 7 and data[start:pos] == b'{"url":':
            stop = data.find(b"\n", pos, end) + 1
            _add(found.records, data[start:stop], path, start)
            pos = data.find(needle, stop, end)
            continue
        before = data[max(start, pos - 12) : pos]
        redirect = before.endswith((b'"final_url":', b'"location":'))
        if (found.redirected_from is None) if redirect else before.endswith((b"[", b",")):
            _context(data[start : data.find(b"\n", pos, end) + 1], needle, path, start, found)
        pos = data.find(needle, pos + len(needle), end)
    if pos < 0:
        return
    # Phase 2: only its own records (at a line start) and, if still unknown, a fetch redirected to it.
    resume = data.rfind(b"\n", 0, pos) + 1
    pos = data.find(own, resume, end)
    while pos >= 0:
        stop = data.find(b"\n", pos, end) + 1
        if pos == 0 or data[pos - 1] == 0x0A:  # not a redirect hop inside another record
            _add(found.records, data[pos:stop], path, pos)
        pos = data.find(own, stop if pos == 0 or data[pos - 1] == 0x0A else pos + 1, end)
    if found.redirected_from is None:
        hit = data.find(b'"final_url":' + needle, resume, end)
        while hit >= 0 and found.redirected_from is None:
            start = data.rfind(b"\n", 0, hit) + 1
            stop = data.find(b"\n", hit, end) + 1
            _context(data[start:stop], needle, path, start, found)
            hit = data.find(b'"final_url":' + needle, stop, end)


def _add(records: list[RecordRef], line: bytes, path: Path, offset: int) -> None:
    with contextlib.suppress(orjson.JSONDecodeError):  # a torn line from a killed writer is not a record
        records.append(RecordRef(orjson.loads(line), path, offset))


def _context(line: bytes, needle: bytes, path: Path, offset: int, found: Found) -> None:
    """Remember the first page linking to the URL and the first fetch redirected to it."""
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return
    url = orjson.loads(needle)
    if found.linked_from is None and url in (rec.get("links") or ()):
        found.linked_from = RecordRef(rec, path, offset)
    if found.redirected_from is None and rec.get("url") != url:
        hops = rec.get("redirects") or ()
        if rec.get("final_url") == url or any(hop.get("location") == url for hop in hops):
            found.redirected_from = RecordRef(rec, path, offset)
