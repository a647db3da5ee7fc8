"""The embedded frontier: `FrontierStore` on one SQLite file in a folder owned by one process.

Durability: WAL journal, `synchronous=NORMAL`, one connection, one open transaction. Mutating calls
only run statements inside that transaction; `flush` commits it (state and meta together). A killed
process therefore loses exactly what came after its last `flush`; a power loss may additionally lose
the last few commits (NORMAL does not fsync the WAL on every commit), never corrupts the file.
If SQLite itself fails in the middle of a call (disk full, I/O error), the store rolls back to the
last flush, as a crash would, and refuses further calls (`RuntimeError`): close and reopen it.

One store owns the file while open (an `flock` on `frontier.sqlite3.owner`): a second process (or store)
opening it gets `ConfigError`, because opening hands back every lease and would steal live work.
Read-only connections (`frontier.sqlite.inspect`, for `crawler explain`) may read at any time: WAL
with normal locking lets them see the last flush while the owner writes.

Decisions the contract leaves open:
* Seen entries are keyed by a signed 64-bit xxh3 of the item's `seen_key` (its URL for a page; a false
  "seen" needs a 64-bit collision).
* A URL over its host's budget is counted in `over_budget` and NOT marked seen, so raising the
  budget later admits it when it is discovered again.
* An expired seen entry makes a URL addable again even if an old copy still waits in the queue.
* A stale outcome (token no longer leased) changes nothing, but its links are still added.
* `next_due` returns `math.inf` when URLs are queued but every such host is at its concurrency
  limit: no time helps, only a `complete`/`release`/`reclaim_expired` can.
* Retries keep their queue position (their id) and become eligible at `retry_at`.
* Recrawl: the `fetched` table keeps every done page (URL, depth, fetch time, validators) keyed like the
  seen-set; `recrawl` moves the expired ones to the tail of their queues in fetch-time order.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType

import orjson

from crawler.core.urlitem import UrlItem
from crawler.core.validators import Validators
from frontier.sqlite.admit import AddPlan, apply_add, plan_add
from frontier.sqlite.outcomes import apply_outcomes, sort_outcomes
from frontier.sqlite.recrawl import recrawl_expired
from frontier.sqlite.schema import (
    _BUMP_STATS,
    _DUE_HOSTS,
    _EARLIEST_NOT_BEFORE,
    _FIRST_DUE_HOST,
    _HAS_ELIGIBLE,
    _HOST_UNLEASED,
    _LEASED_BY_TOKEN,
    _OLDEST_ELIGIBLE,
    _UNLEASE,
    DB_FILENAME,
    db_path,
    lock_owner,
    prepare,
    read_kept_robots,
    url_key,
)
from frontier.store import (
    AddResult,
    Counts,
    DeadLetter,
    HostLimits,
    HostLimitsFn,
    KeptRobots,
    Lease,
    Outcome,
    Recrawled,
)

__all__ = ["DB_FILENAME", "SqliteStore", "url_key"]


class SqliteStore:
    """`FrontierStore` on SQLite; see the module docstring for durability and open decisions."""

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        host_limits: HostLimitsFn,
        seen_ttl: float,
        lease_ttl: float,
        owner_fd: int = -1,
    ) -> None:
        # Use `SqliteStore.open`; this only wires an already prepared connection.
        self._db = db
        self._owner_fd = owner_fd
        self.path = path
        self._host_limits = host_limits
        self._seen_ttl = seen_ttl
        self._lease_ttl = lease_ttl
        self._token: int = db.execute("SELECT token FROM stats WHERE id = 1").fetchone()[0]
        self._closed = False
        self._failed: BaseException | None = None

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        host_limits: HostLimitsFn,
        seen_ttl: float = 7 * 86400,
        lease_ttl: float = 600,
        fresh: bool = False,
    ) -> SqliteStore:
        """Open (or create) the store in folder `path` (created if missing; data in `DB_FILENAME`).

        Every lease left by a previous process is handed back; `fresh=True` deletes the data first.
        """
        file = db_path(path)
        owner = lock_owner(file)  # before `fresh` deletes anything: never another owner's live file
        try:
            if fresh:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    with suppress(FileNotFoundError):
                        os.unlink(f"{file}{suffix}")
            db = sqlite3.connect(file, isolation_level=None, timeout=0.2, cached_statements=256)
            try:
                prepare(db, file)
            except BaseException:
                db.close()
                raise
        except BaseException:
            os.close(owner)
            raise
        return cls(db, file, host_limits, seen_ttl, lease_ttl, owner)

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def flush(self) -> None:
        """Commit everything since the last flush (state and meta) in one transaction."""
        self._check()
        if self._db.in_transaction:
            with self._writing() as db:
                db.execute("COMMIT")

    async def close(self) -> None:
        """Flush and close the database; further calls fail. Unflushed work is dropped if the store failed."""
        if self._closed:
            return
        try:
            if self._failed is None:
                await self.flush()
        finally:
            self._db.close()
            self._closed = True
            if self._owner_fd >= 0:
                os.close(self._owner_fd)  # after the database is closed: the next owner finds it consistent
                self._owner_fd = -1

    def _check(self) -> None:
        if self._failed is not None:
            raise RuntimeError(f"frontier store {self.path} failed earlier; reopen it") from self._failed

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        # Callers validate and run user code (host_limits) before entering, so an error in here is
        # SQLite's (disk full, I/O): the call may be half applied, and the only consistent state left
        # is the last flush. Roll back to it and refuse further calls, exactly like a crash would.
        self._check()
        db = self._db
        if not db.in_transaction:
            db.execute("BEGIN")
        try:
            yield db
        except BaseException as exc:
            self._failed = exc
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # ---------------------------------------------------------------- contract

    async def add(self, items: Sequence[UrlItem], now: float) -> AddResult:
        """Queue each item whose URL is not seen (or whose seen entry expired), and mark it seen."""
        if not items:
            return AddResult()
        plan = self._plan_add(items, now)
        if plan.writes:
            with self._writing() as db:
                apply_add(db, plan, now)
        return plan.result

    async def claim(self, now: float, limit: int) -> list[Lease]:
        """Lease up to `limit` URLs from due hosts, at most one per host, oldest-due host first."""
        if limit <= 0:
            return []
        with self._writing() as db:
            return self._claim(db, now, limit)

    async def complete(self, outcomes: Sequence[Outcome], now: float) -> int:
        """Apply outcomes; returns how many were stale (token mismatch) and ignored."""
        if not outcomes:
            return 0
        return self._complete(outcomes, now)

    async def release(self, leases: Sequence[Lease], now: float) -> None:
        """Give leases back unfetched, at their old place (the head) of their host queue."""
        if not leases:
            return
        with self._writing() as db:
            found = db.execute(_LEASED_BY_TOKEN, (orjson.dumps([x.token for x in leases]),)).fetchall()
            self._unlease(db, [(row_id, hid) for _, row_id, hid in found])

    async def reclaim_expired(self, now: float) -> int:
        """Requeue leases whose `expires_at` is at or before `now`; returns how many."""
        with self._writing() as db:
            rows = db.execute(
                "SELECT id, hid FROM queue WHERE token IS NOT NULL AND expires_at <= ?", (now,)
            ).fetchall()
            self._unlease(db, rows)
            return len(rows)

    async def next_due(self, now: float) -> float | None:
        """Earliest time a claim could succeed (`now` if already), None when nothing is queued.

        `math.inf` when URLs are queued but all their hosts are at their concurrency limit.
        """
        with self._writing() as db:
            while True:
                row = db.execute(_FIRST_DUE_HOST).fetchone()
                if row is None:
                    queued = db.execute("SELECT queued FROM stats WHERE id = 1").fetchone()[0]
                    return math.inf if queued > 0 else None
                hid, next_at, polite_at = row
                at = max(next_at, now)
                # next_at is a lower bound; it is exact once some URL is eligible by then.
                if db.execute(_HAS_ELIGIBLE, (hid, at)).fetchone() is not None:
                    return at
                earliest = db.execute(_EARLIEST_NOT_BEFORE, (hid,)).fetchone()[0]
                db.execute("UPDATE hosts SET next_at = ? WHERE hid = ?", (max(polite_at, earliest), hid))

    async def recrawl(self, now: float) -> Recrawled:
        """Queue again every fetched URL whose fetch and seen entry are older than `seen_ttl`, with its validators."""
        threshold = now - self._seen_ttl
        with self._writing() as db:
            return recrawl_expired(db, now, threshold)

    async def set_host_limits(self, host: str, limits: HostLimits) -> None:
        """Change a host's limits (robots Crawl-delay learned, operator override)."""
        concurrency = limits.concurrency
        with self._writing() as db:
            db.execute(
                "INSERT INTO hosts (host, next_at, polite_at, inflight, queued, concurrency, spacing,"
                " budget, admitted) VALUES (?1, 0, 0, 0, 0, ?2, ?3, ?4, 0) ON CONFLICT (host) DO UPDATE"
                " SET concurrency = ?2, spacing = ?3, budget = ?4",
                (host, concurrency, float(limits.spacing), limits.budget),
            )

    async def counts(self) -> Counts:
        """Current queue sizes."""
        queued, leased, done, dead = self._db.execute(
            "SELECT queued, leased, done, dead FROM stats WHERE id = 1"
        ).fetchone()
        (hosts,) = self._db.execute("SELECT count(*) FROM hosts WHERE queued > 0 OR inflight > 0").fetchone()
        return Counts(queued=queued, leased=leased, done=done, dead=dead, hosts=hosts)

    async def top_hosts(self, limit: int) -> list[tuple[str, int]]:
        """The `limit` hosts with the most URLs queued (retries included), most first, ties by name."""
        if limit <= 0:
            return []
        # The predicate repeats hosts_active's so SQLite scans that partial index, not every host ever seen.
        rows = self._db.execute(
            "SELECT host, queued FROM hosts WHERE (queued > 0 OR inflight > 0) AND queued > 0"
            " ORDER BY queued DESC, host LIMIT ?",
            (int(limit),),
        ).fetchall()
        return [(str(host), int(n)) for host, n in rows]

    async def dead_letters(self, limit: int = 1000, error_type: str | None = None) -> list[DeadLetter]:
        """Dead-lettered URLs (only `error_type` when given, filtered before the limit), oldest first."""
        where, args = ("", ()) if error_type is None else (" WHERE d.error_type = ?", (str(error_type),))
        rows = self._db.execute(
            "SELECT d.url, h.host, d.depth, d.attempts, d.error, d.died_at, d.kind, d.lastmod"
            f" FROM dead AS d JOIN hosts AS h USING (hid){where} ORDER BY d.id LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [
            DeadLetter(
                item=UrlItem(url, host, depth, attempts, kind or "", lastmod),
                error=orjson.loads(error) if error is not None else None,
                died_at=died_at,
            )
            for url, host, depth, attempts, error, died_at, kind, lastmod in rows
        ]

    async def requeue_dead(self, error_type: str | None, now: float) -> int:
        """Move dead letters (optionally only of one error type) to the tail of their queues, attempts 0."""
        where, args = ("", ()) if error_type is None else (" WHERE error_type = ?", (str(error_type),))
        with self._writing() as db:
            per_host = db.execute(f"SELECT hid, count(*) FROM dead{where} GROUP BY hid", args).fetchall()
            if not per_host:
                return 0
            db.execute(
                "INSERT INTO queue (hid, url, depth, attempts, not_before, kind, lastmod)"
                f" SELECT hid, url, depth, 0, 0, kind, lastmod FROM dead{where} ORDER BY id",
                args,
            )
            db.execute(f"DELETE FROM dead{where}", args)
            db.executemany(
                "UPDATE hosts SET queued = queued + ?, next_at = polite_at WHERE hid = ?",
                [(n, hid) for hid, n in per_host],
            )
            moved = sum(n for _, n in per_host)
            db.execute(_BUMP_STATS, (moved, 0, 0, -moved))
            return moved

    async def get_meta(self, key: str) -> str | None:
        """Read a small value kept with the frontier (e.g. the output log's committed offset)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    async def keep_robots(self, robots: KeptRobots, ttl: float) -> None:
        """Keep a robots.txt answer (the latest per URL), committed with the next `flush`; kept past `ttl`."""
        with self._writing() as db:
            db.execute(
                "INSERT OR REPLACE INTO robots (url, status, location, body, fetched_at) VALUES (?, ?, ?, ?, ?)",
                (robots.url, robots.status, robots.location, robots.body, robots.fetched_at),
            )

    async def kept_robots(self, url: str) -> KeptRobots | None:
        """The latest robots.txt answer kept for `url`, or None."""
        return read_kept_robots(self._db, url)

    async def set_meta(self, key: str, value: str) -> None:
        """Write a small value, committed with the next `flush`."""
        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ---------------------------------------------------------------- internals

    def _plan_add(self, items: Sequence[UrlItem], now: float) -> AddPlan:
        # Reads and host_limits calls only: nothing here leaves a trace if it raises.
        self._check()
        return plan_add(self._db, items, now, seen_ttl=self._seen_ttl, host_limits=self._host_limits)

    def _claim(self, db: sqlite3.Connection, now: float, limit: int) -> list[Lease]:
        leases: list[Lease] = []
        claimed: set[int] = set()
        expires_at = now + self._lease_ttl
        while len(leases) < limit:
            # Hosts claimed earlier in this call may come back (still due): fetch past them.
            asked = limit - len(leases) + len(claimed)
            rows = db.execute(_DUE_HOSTS, (now, asked)).fetchall()
            lease_rows: list[tuple[int, float, int]] = []
            host_rows: list[tuple[float, int]] = []
            parked: list[tuple[float, int]] = []
            for hid, host, polite_at, spacing in rows:
                if hid in claimed:
                    continue  # concurrency > 1 with no spacing: still due, but one per host per call
                row = db.execute(_OLDEST_ELIGIBLE, (hid, now)).fetchone()
                if row is None:
                    # Only retries waiting for their time: park the host until the earliest one, so
                    # later claims do not scan it again.
                    earliest = db.execute(_EARLIEST_NOT_BEFORE, (hid,)).fetchone()[0]
                    parked.append((max(polite_at, earliest), hid))
                    continue
                row_id, url, depth, attempts, etag, last_modified, kind, lastmod = row
                self._token += 1
                lease_rows.append((self._token, expires_at, row_id))
                host_rows.append((now + spacing, hid))
                claimed.add(hid)
                validators = None if etag is None and last_modified is None else Validators(etag, last_modified)
                item = UrlItem(url, host, depth, attempts, kind or "", lastmod)
                leases.append(Lease(item, self._token, expires_at, validators))
                if len(leases) == limit:
                    break
            db.executemany("UPDATE queue SET token = ?, expires_at = ? WHERE id = ?", lease_rows)
            db.executemany(
                "UPDATE hosts SET inflight = inflight + 1, queued = queued - 1, polite_at = ?1, next_at = ?1"
                " WHERE hid = ?2",
                host_rows,
            )
            db.executemany("UPDATE hosts SET next_at = ? WHERE hid = ?", parked)
            if not parked or len(rows) < asked:
                break  # nothing parked means the batch is full; a short answer means no more due hosts
        if leases:
            db.execute(_BUMP_STATS, (-len(leases), len(leases), 0, 0))
            db.execute("UPDATE stats SET token = ? WHERE id = 1", (self._token,))
        return leases

    def _complete(self, outcomes: Sequence[Outcome], now: float) -> int:
        self._check()
        leased = {
            token: (row_id, hid)
            for token, row_id, hid in self._db.execute(
                _LEASED_BY_TOKEN, (orjson.dumps([o.lease.token for o in outcomes]),)
            )
        }
        rows = sort_outcomes(outcomes, leased, now)
        plan = self._plan_add(rows.links, now) if rows.links else None
        with self._writing() as db:
            apply_outcomes(db, rows, len(outcomes) - rows.stale)
            if plan is not None and plan.writes:
                apply_add(db, plan, now)
            seen = [(url_key(u), now) for o in outcomes for u in o.seen]
            if seen:  # fetched already (redirect targets): seen, not queued
                db.executemany("INSERT OR REPLACE INTO seen (h, at) VALUES (?, ?)", seen)
        return rows.stale

    def _unlease(self, db: sqlite3.Connection, rows: Sequence[tuple[int, int]]) -> None:
        if not rows:
            return
        per_host: dict[int, int] = {}
        for _, hid in rows:
            per_host[hid] = per_host.get(hid, 0) + 1
        db.executemany(_UNLEASE, [(row_id,) for row_id, _ in rows])
        db.executemany(_HOST_UNLEASED, [(n, hid) for hid, n in per_host.items()])
        db.execute(_BUMP_STATS, (len(rows), -len(rows), 0, 0))
