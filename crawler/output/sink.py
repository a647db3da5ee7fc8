"""The output log: one JSON line per URL that reached a final outcome.

Records are buffered and serialized on `flush` (an archive may still fill in where its WARC copy is),
which returns the file offset the frontier then commits.
After a crash, lines past the committed offset are records whose frontier state was lost: `tail`
reads them back so the crawler can finish those URLs without fetching or recording them twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from crawler.core.record import Record


class RecordLog:
    """Append-only JSONL file with buffered writes and crash-tail recovery."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._buf: list[Record] = []
        self._fh = open(path, "ab")  # noqa: SIM115 - owned by this object, closed in close()
        self.offset = self._fh.tell()

    def write(self, record: Record) -> None:
        """Queue one record; it reaches the file on the next `flush`."""
        self._buf.append(record)

    @property
    def pending(self) -> int:
        """Records queued and not yet written."""
        return len(self._buf)

    def flush(self, count: int | None = None) -> int:
        """Write the first `count` queued records (all by default); returns the new end offset (what the
        frontier may commit)."""
        n = len(self._buf) if count is None else min(count, len(self._buf))
        if n:
            data = b"".join(rec.to_json() for rec in self._buf[:n])
            del self._buf[:n]
            self._fh.write(data)
            self._fh.flush()
            self.offset += len(data)
        return self.offset

    def truncate(self, offset: int) -> int:
        """Drop queued records and cut the file back to `offset`; returns how many records were dropped."""
        dropped = len(self._buf)
        self._buf.clear()
        if offset < self.offset:
            self._fh.flush()
            with open(self.path, "rb") as fh:
                fh.seek(offset)
                dropped += fh.read().count(b"\n")
            self._fh.truncate(offset)
            self._fh.seek(offset)
            self.offset = offset
        return dropped

    def close(self) -> None:
        """Flush and close the file."""
        if not self._fh.closed:
            self.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    @staticmethod
    def recover_tail(path: Path, committed: int) -> list[dict[str, Any]]:
        """Records after `committed`; a torn last line (killed mid-write) is cut off the file."""
        if not path.exists():
            return []
        size = path.stat().st_size
        if size <= committed:
            return []
        with open(path, "rb+") as fh:
            fh.seek(committed)
            data = fh.read()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                fh.truncate(committed + end)
        records: list[dict[str, Any]] = []
        for line in data[:end].splitlines():
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # a torn line in the middle can only come from a foreign writer; skip it
        return records
