"""The embedded frontier's SQLite schema, statements and file preparation (see `frontier.sqlite.store`)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from xxhash import xxh3_64_intdigest

from crawler.core.errors import ConfigError
from frontier.store import KeptRobots

#: The database file's name inside the folder given to `SqliteStore.open`.
DB_FILENAME = "frontier.sqlite3"
#: Beside it: held with `flock` by the one process that owns the store (readers never take it).
OWNER_LOCK_SUFFIX = ".owner"

# 2: validators in queue, the fetched table (recrawl); 3: item kind and lastmod in queue and dead (sitemaps).
# Older files are upgraded on open.
_SCHEMA_VERSION = 3
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (h INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    hid INTEGER PRIMARY KEY,
    host TEXT NOT NULL UNIQUE,
    next_at REAL NOT NULL,      -- scheduling key: a lower bound of when the host is due
    polite_at REAL NOT NULL,    -- politeness alone: claim spacing and outcomes' host_due
    inflight INTEGER NOT NULL,
    queued INTEGER NOT NULL,    -- unleased rows in queue, waiting retries included
    concurrency INTEGER NOT NULL,
    spacing REAL NOT NULL,
    budget INTEGER,
    admitted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS hosts_due ON hosts (next_at) WHERE queued > 0 AND inflight < concurrency;
CREATE INDEX IF NOT EXISTS hosts_active ON hosts (hid) WHERE queued > 0 OR inflight > 0;
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY,
    hid INTEGER NOT NULL,
    url TEXT NOT NULL,
    depth INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    not_before REAL NOT NULL,
    token INTEGER,
    expires_at REAL,
    etag TEXT,                  -- validators of the page's last fetch, for a recrawled URL (else NULL)
    last_modified TEXT,
    kind TEXT,                  -- UrlItem.kind, NULL for a page
    lastmod REAL                -- a sitemap's lastmod for the URL, if any
);
CREATE INDEX IF NOT EXISTS queue_ready ON queue (hid, id, not_before) WHERE token IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS queue_leased ON queue (token) WHERE token IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY,
    hid INTEGER NOT NULL,
    url TEXT NOT NULL,
    depth INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT,
    error_type TEXT,
    died_at REAL NOT NULL,
    kind TEXT,
    lastmod REAL
);
-- Pages fetched (done), by when: `recrawl` queues them again once older than seen_ttl.
CREATE TABLE IF NOT EXISTS fetched (
    h INTEGER PRIMARY KEY,      -- url_key(url), as in seen
    hid INTEGER NOT NULL,
    url TEXT NOT NULL,
    depth INTEGER NOT NULL,
    at REAL NOT NULL,
    etag TEXT,
    last_modified TEXT
);
CREATE INDEX IF NOT EXISTS fetched_at ON fetched (at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
-- The latest robots.txt answer per URL (one row per origin's /robots.txt and its redirect hops).
CREATE TABLE IF NOT EXISTS robots (
    url TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    location TEXT,
    body BLOB NOT NULL,
    fetched_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stats (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token INTEGER NOT NULL,
    done INTEGER NOT NULL,
    queued INTEGER NOT NULL,
    leased INTEGER NOT NULL,
    dead INTEGER NOT NULL
);
INSERT OR IGNORE INTO stats VALUES (1, 0, 0, 0, 0, 0);
"""

# The hosts_due / hosts_active predicates are repeated verbatim so SQLite picks the partial indexes.
_DUE_HOSTS = (
    "SELECT hid, host, polite_at, spacing FROM hosts"
    " WHERE queued > 0 AND inflight < concurrency AND next_at <= ? ORDER BY next_at, hid LIMIT ?"
)
_FIRST_DUE_HOST = (
    "SELECT hid, next_at, polite_at FROM hosts"
    " WHERE queued > 0 AND inflight < concurrency ORDER BY next_at, hid LIMIT 1"
)
_OLDEST_ELIGIBLE = (
    "SELECT id, url, depth, attempts, etag, last_modified, kind, lastmod FROM queue"
    " WHERE hid = ? AND token IS NULL AND not_before <= ? ORDER BY id LIMIT 1"
)
_HAS_ELIGIBLE = "SELECT 1 FROM queue WHERE hid = ? AND token IS NULL AND not_before <= ? LIMIT 1"
_EARLIEST_NOT_BEFORE = "SELECT min(not_before) FROM queue WHERE hid = ? AND token IS NULL"
_SEEN_FRESH = "SELECT h FROM seen WHERE h IN (SELECT value FROM json_each(?)) AND at >= ?"
_HOSTS_BY_NAME = "SELECT host, hid, budget, admitted FROM hosts WHERE host IN (SELECT value FROM json_each(?))"
_INSERT_HOST = (
    "INSERT INTO hosts (host, next_at, polite_at, inflight, queued, concurrency, spacing, budget, admitted)"
    " VALUES (?, 0, 0, 0, 0, ?, ?, ?, 0) RETURNING hid"
)
_LEASED_BY_TOKEN = (
    "SELECT token, id, hid FROM queue WHERE token IN (SELECT value FROM json_each(?)) AND token IS NOT NULL"
)
_UNLEASE = "UPDATE queue SET token = NULL, expires_at = NULL WHERE id = ?"
# A row put back unleased is eligible now, so next_at falls to the host's politeness time.
_HOST_UNLEASED = "UPDATE hosts SET inflight = inflight - ?1, queued = queued + ?1, next_at = polite_at WHERE hid = ?2"
_BUMP_STATS = "UPDATE stats SET queued = queued + ?, leased = leased + ?, done = done + ?, dead = dead + ? WHERE id = 1"


def url_key(url: str) -> int:
    """The seen-set key of a URL: xxh3-64 of its UTF-8 bytes as a signed int64 (SQLite's integer)."""
    h = xxh3_64_intdigest(url.encode("utf-8", "surrogatepass"))
    return h - _U64 if h > _I64_MAX else h


def read_kept_robots(db: sqlite3.Connection, url: str) -> KeptRobots | None:
    """The `robots` row of `url` (the store and the read-only inspector share this read)."""
    row = db.execute("SELECT status, location, body, fetched_at FROM robots WHERE url = ?", (url,)).fetchone()
    if row is None:
        return None
    status, location, body, fetched_at = row
    return KeptRobots(url, int(status), location, bytes(body), float(fetched_at))


def db_path(folder: str | os.PathLike[str]) -> Path:
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"frontier path {p} is a file; give the folder the frontier may own")
    p.mkdir(parents=True, exist_ok=True)
    return p / DB_FILENAME


def lock_owner(path: Path) -> int:
    """Take the store's owner lock (a file descriptor to close when done); ConfigError if another holds it.

    SQLite's own locks cannot say "one owner": in WAL mode with normal locking, read-only connections
    (`crawler explain`) must be able to read while the owner writes, so ownership is this `flock`.
    """
    fd = os.open(f"{path}{OWNER_LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"frontier {path} is in use by another process") from None
    return fd


def prepare(db: sqlite3.Connection, path: Path) -> None:
    """Set pragmas, create the schema and hand back leases of a dead process (the caller holds `lock_owner`)."""
    try:
        # Normal locking in WAL mode: the shared-memory index lets read-only connections see committed
        # state while this one writes (a reader never blocks the writer, nor the writer a reader).
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA cache_size = -65536")  # 64 MiB: a flush interval of writes stays in memory
        db.execute("PRAGMA temp_store = MEMORY")
        # Checkpoint every ~32 MiB of WAL, not 4 MiB: pages rewritten by successive flushes are
        # copied into the database once.
        db.execute("PRAGMA wal_autocheckpoint = 8192")
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise ConfigError(f"frontier {path} is in use by another process") from exc
        raise
    if mode.lower() != "wal":
        raise ConfigError(f"frontier {path}: cannot use WAL journal (got {mode!r})")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, 1, 2, _SCHEMA_VERSION):
        raise ConfigError(f"frontier {path} has schema version {version}, expected {_SCHEMA_VERSION}")
    if version == 1:  # a crawl made before recrawl existed: its queue gains the validator columns
        db.execute("ALTER TABLE queue ADD COLUMN etag TEXT")
        db.execute("ALTER TABLE queue ADD COLUMN last_modified TEXT")
    if version in (1, 2):  # made before sitemaps: its queued and dead URLs are pages
        for table in ("queue", "dead"):
            db.execute(f"ALTER TABLE {table} ADD COLUMN kind TEXT")
            db.execute(f"ALTER TABLE {table} ADD COLUMN lastmod REAL")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
    # One process owns the file, so every lease still recorded belongs to a dead process.
    db.execute("UPDATE queue SET token = NULL, expires_at = NULL WHERE token IS NOT NULL")
    db.execute("UPDATE hosts SET queued = queued + inflight, inflight = 0, next_at = polite_at WHERE inflight > 0")
    db.execute("UPDATE stats SET queued = queued + leased, leased = 0 WHERE id = 1")
    db.execute("COMMIT")
