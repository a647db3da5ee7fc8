"""Applying lease outcomes in the embedded frontier: sorting them into statement rows, then writing them."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from crawler.core.urlitem import UrlItem
from frontier.sqlite.schema import _BUMP_STATS, url_key
from frontier.store import Outcome

__all__ = ["OutcomeRows", "apply_outcomes", "sort_outcomes"]


@dataclass(slots=True)
class OutcomeRows:
    """Outcomes sorted into the rows their statements take; `stale` ones (token not leased) only bring links."""

    stale: int = 0
    links: list[UrlItem] = field(default_factory=list)
    done_ids: list[tuple[int]] = field(default_factory=list)
    # (url key, hid, url, depth, at, etag, last_modified) of done pages, for the fetched list
    fetched_rows: list[tuple[int, int, str, int, float, str | None, str | None]] = field(default_factory=list)
    retry_rows: list[tuple[float, int]] = field(default_factory=list)
    dead_rows: list[tuple[str | None, str | None, float, int]] = field(default_factory=list)
    # hid -> [leases ended, requeued, max host_due, min retry_at]
    per_host: dict[int, list[float]] = field(default_factory=dict)


def sort_outcomes(outcomes: Sequence[Outcome], leased: dict[int, tuple[int, int]], now: float) -> OutcomeRows:
    """Sort `outcomes` by kind against `leased` (token -> (row id, hid)); raises ValueError on an unknown kind."""
    stale = 0
    links: list[UrlItem] = []
    done_ids: list[tuple[int]] = []
    fetched_rows: list[tuple[int, int, str, int, float, str | None, str | None]] = []
    retry_rows: list[tuple[float, int]] = []
    dead_rows: list[tuple[str | None, str | None, float, int]] = []
    per_host: dict[int, list[float]] = {}
    for o in outcomes:
        links.extend(o.links)
        found = leased.pop(o.lease.token, None)  # pop: a token repeated in one call is stale
        if found is None:
            stale += 1
            continue
        row_id, hid = found
        agg = per_host.get(hid)
        if agg is None:
            agg = per_host[hid] = [0, 0, o.host_due, math.inf]
        agg[0] += 1
        agg[2] = max(agg[2], o.host_due)
        if o.kind == "done":
            done_ids.append((row_id,))
            v = o.validators
            etag, last_modified = (None, None) if v is None else (v.etag, v.last_modified)
            it = o.lease.item
            if not it.kind:  # a sitemap is not recrawled as such: its host's robots.txt names it again
                fetched_rows.append((url_key(it.url), hid, it.url, it.depth, now, etag, last_modified))
        elif o.kind == "retry":
            retry_rows.append((o.retry_at, row_id))
            agg[1] += 1
            agg[3] = min(agg[3], o.retry_at)
        elif o.kind == "dead":
            error = None if o.error is None else orjson.dumps(o.error).decode()
            etype = None if o.error is None else o.error.get("type")
            dead_rows.append((error, etype, now, row_id))
        else:
            raise ValueError(f"unknown outcome kind {o.kind!r}")
    return OutcomeRows(stale, links, done_ids, fetched_rows, retry_rows, dead_rows, per_host)


def apply_outcomes(db: sqlite3.Connection, rows: OutcomeRows, ended: int) -> None:
    """Write sorted outcomes (`ended` = leases they end) in the caller's transaction."""
    # A done page joins the fetched list (recrawl); its values come with the outcome (cheaper than a SELECT).
    db.executemany(
        "INSERT OR REPLACE INTO fetched (h, hid, url, depth, at, etag, last_modified) VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows.fetched_rows,
    )
    db.executemany("DELETE FROM queue WHERE id = ?", rows.done_ids)
    db.executemany(
        "UPDATE queue SET token = NULL, expires_at = NULL, attempts = attempts + 1, not_before = ? WHERE id = ?",
        rows.retry_rows,
    )
    if rows.dead_rows:
        db.executemany(
            "INSERT INTO dead (hid, url, depth, attempts, error, error_type, died_at, kind, lastmod)"
            " SELECT hid, url, depth, attempts + 1, ?, ?, ?, kind, lastmod FROM queue WHERE id = ?",
            rows.dead_rows,
        )
        db.executemany("DELETE FROM queue WHERE id = ?", [(r[3],) for r in rows.dead_rows])
    # SET expressions read the old row: next_at stays a lower bound of the host's true due time
    # max(polite_at, earliest not_before), so a retry can only pull it down to retry_at.
    db.executemany(
        "UPDATE hosts SET inflight = inflight - ?1, queued = queued + ?2,"
        " polite_at = max(polite_at, ?3), next_at = max(polite_at, ?3, min(next_at, ?4)) WHERE hid = ?5",
        [(n, requeued, due, retry_at, hid) for hid, (n, requeued, due, retry_at) in rows.per_host.items()],
    )
    if ended:
        db.execute(_BUMP_STATS, (len(rows.retry_rows), -ended, len(rows.done_ids), len(rows.dead_rows)))
