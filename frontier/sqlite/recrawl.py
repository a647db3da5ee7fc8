"""Recrawl in the embedded frontier: fetched pages older than seen_ttl go back to their queues.

See "Recrawl" in `frontier.store`. Runs in the caller's write transaction, in batches so a crawl of
millions of pages never holds them all in memory.
"""

from __future__ import annotations

import sqlite3
from collections import Counter

import orjson

from frontier.sqlite.schema import _BUMP_STATS, _SEEN_FRESH
from frontier.store import Recrawled

__all__ = ["recrawl_expired"]

_BATCH = 5000
_EXPIRED = "SELECT h, hid, url, depth, etag, last_modified FROM fetched WHERE at < ? ORDER BY at LIMIT ?"


def recrawl_expired(db: sqlite3.Connection, now: float, threshold: float) -> Recrawled:
    """Queue every page fetched before `threshold` (now - seen_ttl) whose seen entry is older too."""
    queued = conditional = 0
    while rows := db.execute(_EXPIRED, (threshold, _BATCH)).fetchall():
        keys = [row[0] for row in rows]
        fresh = {h for (h,) in db.execute(_SEEN_FRESH, (orjson.dumps(keys), threshold))}
        due = [row for row in rows if row[0] not in fresh]
        # Every row read leaves the list, so the loop ends; a fresh one is queued or fetched elsewhere.
        db.executemany("DELETE FROM fetched WHERE h = ?", [(h,) for h in keys])
        if not due:
            continue
        db.executemany(
            "INSERT INTO queue (hid, url, depth, attempts, not_before, etag, last_modified)"
            " VALUES (?, ?, ?, 0, 0, ?, ?)",
            [(hid, url, depth, etag, lm) for _, hid, url, depth, etag, lm in due],
        )
        db.executemany("INSERT OR REPLACE INTO seen (h, at) VALUES (?, ?)", [(row[0], now) for row in due])
        per_host = Counter(row[1] for row in due)
        # Eligible at once: the host is due as soon as politeness allows (its budget is not charged again).
        db.executemany(
            "UPDATE hosts SET queued = queued + ?, next_at = polite_at WHERE hid = ?",
            [(n, hid) for hid, n in per_host.items()],
        )
        db.execute(_BUMP_STATS, (len(due), 0, 0, 0))
        queued += len(due)
        conditional += sum(1 for row in due if row[4] is not None or row[5] is not None)
    return Recrawled(queued, conditional)
