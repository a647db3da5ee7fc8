"""Admitting URLs to the embedded frontier: which are new and within budget (read-only), then writing them.

`add` and the links of `complete` go through the same two steps, so an outcome batch admits its links
exactly as a plain `add` would. The plan is made before the write transaction is entered: a
`host_limits` callback that raises then leaves no trace.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from crawler.core.urlitem import UrlItem
from frontier.sqlite.schema import _BUMP_STATS, _HOSTS_BY_NAME, _INSERT_HOST, _SEEN_FRESH, url_key
from frontier.store import AddResult, HostLimits, HostLimitsFn

__all__ = ["AddPlan", "HostRec", "apply_add", "plan_add"]


def plan_add(
    db: sqlite3.Connection, items: Sequence[UrlItem], now: float, *, seen_ttl: float, host_limits: HostLimitsFn
) -> AddPlan:
    """What adding `items` would write; reads and `host_limits` calls only."""
    fresh: dict[int, UrlItem] = {}
    for item in items:
        fresh.setdefault(url_key(item.seen_key), item)
    duplicates = len(items) - len(fresh)
    seen = db.execute(_SEEN_FRESH, (orjson.dumps(list(fresh)), now - seen_ttl)).fetchall()
    for (h,) in seen:
        del fresh[h]
    duplicates += len(seen)
    plan = AddPlan()
    if not fresh:
        plan.result = AddResult(duplicates=duplicates)
        return plan

    hosts = plan.hosts
    for host, hid, budget, admitted in db.execute(
        _HOSTS_BY_NAME, (orjson.dumps(list({item.host for item in fresh.values()})),)
    ):
        hosts[host] = HostRec(hid, budget, admitted)
    over_budget = 0
    for h, item in fresh.items():
        rec = hosts.get(item.host)
        if rec is None:
            limits = host_limits(item.host)
            rec = hosts[item.host] = HostRec(None, limits.budget, 0, limits, limits.concurrency)
        if rec.budget is not None and rec.admitted >= rec.budget:
            over_budget += 1
            continue
        rec.admitted += 1
        rec.added += 1
        plan.accepted.append((h, item))
    plan.result = AddResult(queued=len(plan.accepted), duplicates=duplicates, over_budget=over_budget)
    return plan


def apply_add(db: sqlite3.Connection, plan: AddPlan, now: float) -> None:
    """Write `plan`: new hosts, seen entries, queue rows and the counters, in the caller's transaction."""
    for host, rec in plan.hosts.items():
        if rec.hid is None and rec.limits is not None:
            (rec.hid,) = db.execute(
                _INSERT_HOST, (host, rec.concurrency, float(rec.limits.spacing), rec.budget)
            ).fetchone()
    hosts = plan.hosts
    db.executemany("INSERT OR REPLACE INTO seen (h, at) VALUES (?, ?)", [(h, now) for h, _ in plan.accepted])
    db.executemany(
        "INSERT INTO queue (hid, url, depth, attempts, not_before, kind, lastmod) VALUES (?, ?, ?, ?, 0, ?, ?)",
        [
            (hosts[item.host].hid, item.url, item.depth, item.attempts, item.kind or None, item.lastmod)
            for _, item in plan.accepted
        ],
    )
    # New rows are eligible at once, so the host is due as soon as politeness allows.
    db.executemany(
        "UPDATE hosts SET queued = queued + ?1, admitted = admitted + ?1, next_at = polite_at WHERE hid = ?2",
        [(rec.added, rec.hid) for rec in hosts.values() if rec.added],
    )
    if plan.accepted:
        db.execute(_BUMP_STATS, (len(plan.accepted), 0, 0, 0))


@dataclass(slots=True)
class HostRec:
    """A host row as `add` needs it, plus how many URLs this call queues for it."""

    hid: int | None  # None: a new host, inserted with `limits` when the plan is applied
    budget: int | None
    admitted: int
    limits: HostLimits | None = None
    concurrency: int = 1
    added: int = 0


@dataclass(slots=True)
class AddPlan:
    """What `add` will write, worked out before writing anything."""

    result: AddResult = field(default_factory=AddResult)
    accepted: list[tuple[int, UrlItem]] = field(default_factory=list)
    hosts: dict[str, HostRec] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        """Whether applying the plan changes anything (URLs to queue or hosts to create)."""
        return bool(self.accepted) or any(rec.hid is None for rec in self.hosts.values())
