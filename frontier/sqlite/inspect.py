"""`Inspector` on the embedded store: a read-only connection that never blocks or disturbs the owner.

While a crawl runs, its WAL (`frontier.sqlite3-wal` and `-shm`) exists and a `mode=ro` connection reads
the last flush through it. After the crawl ended (the owner checkpointed and removed its WAL) the file is
opened `immutable`, so reading creates no `-wal`/`-shm` files in the output folder either. Should a crawl
start in that instant and the immutable read fail, it is read once more through the WAL.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import quote

import orjson

from crawler.core.errors import ConfigError
from crawler.core.urlitem import UrlItem
from frontier.inspect import HostState, UrlState
from frontier.sqlite.schema import DB_FILENAME, read_kept_robots, url_key
from frontier.store import KeptRobots

__all__ = ["SqliteInspector"]

T = TypeVar("T")

_HOST = "SELECT hid, polite_at, spacing, concurrency, inflight, queued, budget, admitted FROM hosts WHERE host = ?"
# token IS NULL / IS NOT NULL select the partial indexes (queue_ready by host, queue_leased by token).
_QUEUED = (
    "SELECT id, depth, attempts, not_before FROM queue WHERE hid = ? AND token IS NULL AND url = ? ORDER BY id LIMIT 1"
)
_LEASED = "SELECT depth, attempts, expires_at FROM queue WHERE token IS NOT NULL AND hid = ? AND url = ? LIMIT 1"
_AHEAD = "SELECT count(*) FROM queue WHERE hid = ? AND token IS NULL AND id < ?"
_EARLIEST = "SELECT min(not_before) FROM queue WHERE hid = ? AND token IS NULL"
_DEAD = "SELECT depth, attempts, error, died_at FROM dead WHERE url = ? ORDER BY id DESC LIMIT 1"


def _connect(file: Path, immutable: bool) -> sqlite3.Connection:
    uri = f"file:{quote(str(file))}?mode=ro" + ("&immutable=1" if immutable else "")
    db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
    db.execute("PRAGMA query_only = ON")
    return db


class SqliteInspector:
    """Read-only questions to the frontier database in a folder (see the module docstring)."""

    def __init__(self, db: sqlite3.Connection, file: Path, immutable: bool) -> None:
        # Use `SqliteInspector.open`.
        self._db = db
        self._file = file
        self._immutable = immutable

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> SqliteInspector:
        """Open the store in `folder` for reading; ConfigError when there is none."""
        file = Path(folder) / DB_FILENAME
        if not file.is_file():
            raise ConfigError(f"{folder} holds no crawl state (no {DB_FILENAME})")
        immutable = not Path(f"{file}-wal").exists()
        return cls(_connect(file, immutable), file, immutable)

    async def __aenter__(self) -> SqliteInspector:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # One read transaction per question: a consistent snapshot even while the owner commits.
        try:
            return self._snapshot(fn)
        except sqlite3.DatabaseError:
            if not self._immutable:
                raise
            # A crawl started while we read the file as immutable: read through its WAL instead.
            self._db.close()
            self._db = _connect(self._file, immutable=False)
            self._immutable = False
            return self._snapshot(fn)

    def _snapshot(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        db.execute("BEGIN")
        try:
            return fn(db)
        finally:
            db.execute("COMMIT")

    async def url_state(self, url: str, host: str) -> UrlState:
        """See `Inspector.url_state`."""
        return self._read(lambda db: _url_state(db, url, host))

    async def host_state(self, host: str) -> HostState | None:
        """See `Inspector.host_state`."""
        return self._read(lambda db: _host_state(db, host))

    async def kept_robots(self, url: str) -> KeptRobots | None:
        """See `Inspector.kept_robots`."""
        return self._read(lambda db: read_kept_robots(db, url))

    async def get_meta(self, key: str) -> str | None:
        """See `Inspector.get_meta`."""

        def get(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return self._read(get)


def _url_state(db: sqlite3.Connection, url: str, host: str) -> UrlState:
    row = db.execute("SELECT at FROM seen WHERE h = ?", (url_key(url),)).fetchone()
    seen_at = None if row is None else float(row[0])
    found = db.execute("SELECT hid FROM hosts WHERE host = ?", (host,)).fetchone()
    if found is not None:
        hid = found[0]
        queued = db.execute(_QUEUED, (hid, url)).fetchone()
        if queued is not None:
            row_id, depth, attempts, not_before = queued
            (ahead,) = db.execute(_AHEAD, (hid, row_id)).fetchone()
            item = UrlItem(url, host, depth, attempts)
            return UrlState(url, seen_at, "queued", item, not_before=float(not_before), ahead=int(ahead))
        leased = db.execute(_LEASED, (hid, url)).fetchone()
        if leased is not None:
            depth, attempts, expires_at = leased
            item = UrlItem(url, host, depth, attempts)
            return UrlState(url, seen_at, "leased", item, lease_expires=float(expires_at))
    dead = db.execute(_DEAD, (url,)).fetchone()
    if dead is not None:
        depth, attempts, error, died_at = dead
        item = UrlItem(url, host, depth, attempts)
        err = orjson.loads(error) if error is not None else None
        return UrlState(url, seen_at, "dead", item, error=err, died_at=float(died_at))
    return UrlState(url, seen_at)


def _host_state(db: sqlite3.Connection, host: str) -> HostState | None:
    row = db.execute(_HOST, (host,)).fetchone()
    if row is None:
        return None
    hid, polite_at, spacing, concurrency, inflight, queued, budget, admitted = row
    due_at: float | None = None
    if queued > 0 and inflight < concurrency:
        (earliest,) = db.execute(_EARLIEST, (hid,)).fetchone()
        # The claim rule: the host is due at its politeness time once some URL's not_before has passed.
        due_at = max(float(polite_at), float(earliest or 0.0))
    return HostState(
        host=host,
        due_at=due_at,
        polite_at=float(polite_at),
        spacing=float(spacing),
        concurrency=int(concurrency),
        inflight=int(inflight),
        queued=int(queued),
        budget=None if budget is None else int(budget),
        admitted=int(admitted),
    )
