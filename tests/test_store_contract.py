"""The frontier store contract (`frontier/store.py`), run against every backend in `store_backends`.

Tests drive time by hand (`T0` plus offsets): stores never read the clock.
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from crawler.core.errors import ConfigError, CrawlError, ErrorType
from crawler.core.urlitem import UrlItem
from crawler.core.validators import Validators
from frontier.inspect import UrlState
from frontier.sqlite.inspect import SqliteInspector
from frontier.sqlite.store import SqliteStore
from frontier.store import FrontierStore, HostLimits, HostLimitsFn, KeptRobots, Lease, Outcome, Recrawled

if TYPE_CHECKING:
    from store_backends import InspectorFactory, StoreFactory

# The backend fixtures live in tests/store_backends.py (the `make_store` fixture, one param per backend).
pytest_plugins = ["store_backends"]

T0 = 1_700_000_000.0
REPO = Path(__file__).resolve().parent.parent


def url(host: str, path: str, depth: int = 0) -> UrlItem:
    """A UrlItem on `host`."""
    return UrlItem(f"http://{host}/{path}", host, depth)


def limits(table: dict[str, HostLimits]) -> HostLimitsFn:
    """A host_limits function: `table` entries, HostLimits() for other hosts."""
    return lambda host: table.get(host, HostLimits())


def urls(leases: Sequence[Lease]) -> list[str]:
    """The URLs of leases, in order."""
    return [lease.item.url for lease in leases]


def done(lease: Lease, host_due: float, links: Sequence[UrlItem] = ()) -> Outcome:
    """A `done` outcome."""
    return Outcome(lease, "done", host_due=host_due, links=links)


def dead(lease: Lease, host_due: float, error: CrawlError) -> Outcome:
    """A `dead` outcome carrying `error`."""
    return Outcome(lease, "dead", host_due=host_due, error=error.as_dict())


async def claim_all(store: FrontierStore, now: float) -> list[Lease]:
    """Everything claimable at `now`, over as many claims as it takes."""
    out: list[Lease] = []
    while batch := await store.claim(now, 100):
        out += batch
    return out


# ------------------------------------------------------------------ add and dedup


async def test_add_queues_new_urls_and_counts_duplicates(make_store: StoreFactory) -> None:
    store = await make_store()
    batch = [url("a.test", "1"), url("a.test", "2"), url("a.test", "1"), url("b.test", "1")]
    r = await store.add(batch, T0)
    assert (r.queued, r.duplicates, r.over_budget) == (3, 1, 0)
    r = await store.add([url("a.test", "2"), url("b.test", "1"), url("b.test", "2")], T0 + 1)
    assert (r.queued, r.duplicates, r.over_budget) == (1, 2, 0)
    assert (await store.add([], T0)).queued == 0
    c = await store.counts()
    assert (c.queued, c.leased, c.done, c.dead, c.hosts) == (4, 0, 0, 0, 2)


async def test_done_url_stays_seen(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1")], T0)
    [lease] = await store.claim(T0, 10)
    await store.complete([done(lease, T0)], T0)
    r = await store.add([url("a.test", "1")], T0 + 5)
    assert (r.queued, r.duplicates) == (0, 1)
    assert await store.next_due(T0 + 5) is None


async def test_outcome_seen_urls_are_marked_seen_not_queued(make_store: StoreFactory) -> None:
    """A redirect target fetched under a lease (`seen`): a later add of it is a duplicate, nothing is queued,
    and the mark expires like any seen entry."""
    store = await make_store(seen_ttl=100)
    await store.add([url("a.test", "a")], T0)
    [lease] = await store.claim(T0, 10)
    target = url("a.test", "b")
    await store.complete([Outcome(lease, "done", host_due=T0, seen=(target.url,))], T0)
    c = await store.counts()
    assert (c.queued, c.leased, c.done) == (0, 0, 1)
    r = await store.add([target], T0 + 5)
    assert (r.queued, r.duplicates) == (0, 1)
    assert await store.next_due(T0 + 5) is None
    assert (await store.add([target], T0 + 101)).queued == 1


async def test_seen_entry_expires_after_ttl(make_store: StoreFactory) -> None:
    store = await make_store(seen_ttl=100)
    await store.add([url("a.test", "1")], T0)
    [lease] = await store.claim(T0, 10)
    await store.complete([done(lease, T0)], T0)
    assert (await store.add([url("a.test", "1")], T0 + 100)).duplicates == 1
    r = await store.add([url("a.test", "1")], T0 + 101)
    assert (r.queued, r.duplicates) == (1, 0)
    # Re-adding refreshed the entry: a new TTL starts at T0 + 101.
    assert (await store.add([url("a.test", "1")], T0 + 150)).duplicates == 1
    assert urls(await store.claim(T0 + 150, 10)) == ["http://a.test/1"]


async def test_complete_adds_links_with_dedup(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1")], T0)
    [lease] = await store.claim(T0, 10)
    links = [url("a.test", "1", 1), url("a.test", "2", 1), url("b.test", "x", 1), url("a.test", "2", 1)]
    assert await store.complete([done(lease, T0, links)], T0) == 0
    c = await store.counts()
    assert (c.queued, c.done, c.hosts) == (2, 1, 2)
    leased = await claim_all(store, T0)
    assert sorted((x.item.url, x.item.depth) for x in leased) == [
        ("http://a.test/2", 1),
        ("http://b.test/x", 1),
    ]


async def test_host_limits_asked_once_per_host(make_store: StoreFactory) -> None:
    asked: list[str] = []

    def host_limits(host: str) -> HostLimits:
        asked.append(host)
        return HostLimits()

    store = await make_store(host_limits=host_limits)
    await store.add([url("a.test", "1"), url("a.test", "2"), url("b.test", "1")], T0)
    await store.add([url("a.test", "3"), url("b.test", "1")], T0)
    assert sorted(asked) == ["a.test", "b.test"]


# ------------------------------------------------------------------ claim


async def test_claim_gives_one_url_per_host_oldest_first(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1"), url("a.test", "2"), url("b.test", "1")], T0)
    await store.add([url("a.test", "3"), url("c.test", "1")], T0)
    first = await store.claim(T0, 10)
    assert sorted(urls(first)) == ["http://a.test/1", "http://b.test/1", "http://c.test/1"]
    assert len({lease.token for lease in first}) == 3
    assert all(lease.expires_at == T0 + 600 for lease in first)
    await store.complete([done(x, T0) for x in first], T0)
    assert urls(await store.claim(T0, 10)) == ["http://a.test/2"]


async def test_claim_respects_limit_and_orders_hosts_by_due_time(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url(h, str(i)) for h in ("a.test", "b.test", "c.test") for i in range(2)], T0)
    first = {x.item.host: x for x in await store.claim(T0, 10)}
    due = {"a.test": T0 + 3, "b.test": T0 + 1, "c.test": T0 + 2}
    await store.complete([done(first[h], due[h]) for h in due], T0)
    assert await store.claim(T0 + 0.5, 10) == []
    assert [x.item.host for x in await store.claim(T0 + 5, 2)] == ["b.test", "c.test"]
    assert [x.item.host for x in await store.claim(T0 + 5, 2)] == ["a.test"]
    assert await store.claim(T0 + 5, 0) == []


async def test_tokens_increase(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", str(i)) for i in range(3)], T0)
    tokens = []
    for _ in range(3):
        [lease] = await store.claim(T0, 10)
        tokens.append(lease.token)
        await store.complete([done(lease, T0)], T0)
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


async def test_concurrency_one_blocks_second_lease(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1"), url("a.test", "2")], T0)
    [lease] = await store.claim(T0, 10)
    assert await store.claim(T0 + 100, 10) == []
    await store.complete([done(lease, T0 + 1)], T0 + 1)
    assert urls(await store.claim(T0 + 1, 10)) == ["http://a.test/2"]


async def test_concurrency_two_allows_two_leases_one_per_claim(make_store: StoreFactory) -> None:
    store = await make_store(host_limits=limits({"a.test": HostLimits(concurrency=2)}))
    await store.add([url("a.test", str(i)) for i in range(4)], T0)
    assert urls(await store.claim(T0, 10)) == ["http://a.test/0"]
    second = await store.claim(T0, 10)
    assert urls(second) == ["http://a.test/1"]
    assert await store.claim(T0, 10) == []
    assert (await store.counts()).leased == 2
    await store.complete([done(second[0], T0)], T0)
    assert urls(await store.claim(T0, 10)) == ["http://a.test/2"]


async def test_spacing_between_lease_starts(make_store: StoreFactory) -> None:
    store = await make_store(host_limits=limits({"a.test": HostLimits(concurrency=2, spacing=10)}))
    await store.add([url("a.test", str(i)) for i in range(3)], T0)
    assert len(await store.claim(T0, 10)) == 1
    assert await store.claim(T0 + 9.9, 10) == []
    assert await store.next_due(T0 + 5) == T0 + 10
    assert len(await store.claim(T0 + 10, 10)) == 1


async def test_host_due_from_outcome_is_honoured(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1"), url("a.test", "2"), url("b.test", "1")], T0)
    leases = {x.item.host: x for x in await store.claim(T0, 10)}
    await store.complete([done(leases["a.test"], T0 + 30), done(leases["b.test"], T0 + 1)], T0 + 1)
    assert await store.next_due(T0 + 1) == T0 + 30
    assert await store.claim(T0 + 29.9, 10) == []
    assert urls(await store.claim(T0 + 30, 10)) == ["http://a.test/2"]


# ------------------------------------------------------------------ retry, dead letters


async def test_retry_waits_for_retry_at_and_counts_attempts(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1")], T0)
    [lease] = await store.claim(T0, 10)
    assert lease.item.attempts == 0
    stale = await store.complete([Outcome(lease, "retry", host_due=T0 + 1, retry_at=T0 + 100)], T0)
    assert stale == 0
    c = await store.counts()
    assert (c.queued, c.leased, c.done) == (1, 0, 0)
    assert await store.claim(T0 + 50, 10) == []
    assert await store.next_due(T0 + 50) == T0 + 100
    assert await store.claim(T0 + 60, 10) == []
    [again] = await store.claim(T0 + 100, 10)
    assert (again.item.url, again.item.attempts) == ("http://a.test/1", 1)


async def test_waiting_retry_does_not_hold_back_other_urls(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1"), url("a.test", "2")], T0)
    [lease] = await store.claim(T0, 10)
    await store.complete([Outcome(lease, "retry", host_due=T0 + 1, retry_at=T0 + 100)], T0)
    assert await store.next_due(T0) == T0 + 1
    [other] = await store.claim(T0 + 1, 10)
    assert other.item.url == "http://a.test/2"
    await store.complete([done(other, T0 + 2)], T0 + 2)
    assert await store.claim(T0 + 3, 10) == []
    # A new URL on the host waiting for its retry is due at once (politeness allowing).
    await store.add([url("a.test", "3")], T0 + 4)
    assert await store.next_due(T0 + 4) == T0 + 4
    assert urls(await store.claim(T0 + 4, 10)) == ["http://a.test/3"]


async def test_earlier_retry_pulls_waiting_host_forward(make_store: StoreFactory) -> None:
    store = await make_store(host_limits=limits({"a.test": HostLimits(concurrency=2)}))
    await store.add([url("a.test", "1"), url("a.test", "2")], T0)
    first, second = (await store.claim(T0, 10))[0], (await store.claim(T0, 10))[0]
    await store.complete([Outcome(first, "retry", host_due=T0, retry_at=T0 + 100)], T0)
    assert await store.next_due(T0 + 1) == T0 + 100
    await store.complete([Outcome(second, "retry", host_due=T0 + 2, retry_at=T0 + 20)], T0 + 2)
    assert await store.next_due(T0 + 3) == T0 + 20
    assert urls(await store.claim(T0 + 20, 10)) == ["http://a.test/2"]


async def test_host_waiting_for_retry_does_not_starve_claim(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1"), url("b.test", "1"), url("b.test", "2")], T0)
    leases = {x.item.host: x for x in await store.claim(T0, 10)}
    await store.complete(
        [
            Outcome(leases["a.test"], "retry", host_due=T0 + 1, retry_at=T0 + 100),
            done(leases["b.test"], T0 + 2),
        ],
        T0,
    )
    # a.test is first in due order but has nothing eligible; the single slot goes to b.test.
    assert urls(await store.claim(T0 + 3, 1)) == ["http://b.test/2"]


async def test_latest_host_due_wins_within_one_call(make_store: StoreFactory) -> None:
    store = await make_store(host_limits=limits({"a.test": HostLimits(concurrency=2)}))
    await store.add([url("a.test", str(i)) for i in range(3)], T0)
    leases = (await store.claim(T0, 10)) + (await store.claim(T0, 10))
    await store.complete([done(leases[0], T0 + 5), done(leases[1], T0 + 9)], T0 + 1)
    assert await store.next_due(T0 + 1) == T0 + 9


async def test_dead_letters_and_requeue_by_type(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1"), url("b.test", "1"), url("c.test", "1")], T0)
    leases = {x.item.host: x for x in await store.claim(T0, 10)}
    timeout = CrawlError(ErrorType.TIMEOUT, "read timed out")
    http = CrawlError(ErrorType.HTTP_ERROR, "503")
    await store.complete([dead(leases["a.test"], T0, timeout)], T0 + 1)
    await store.complete([dead(leases["b.test"], T0, http), done(leases["c.test"], T0)], T0 + 2)
    letters = await store.dead_letters()
    assert [(d.item.url, d.item.host, d.error, d.died_at) for d in letters] == [
        ("http://a.test/1", "a.test", timeout.as_dict(), T0 + 1),
        ("http://b.test/1", "b.test", http.as_dict(), T0 + 2),
    ]
    assert all(d.item.attempts == 1 for d in letters)
    assert len(await store.dead_letters(limit=1)) == 1
    # The type filter comes before the limit: the first http_error letter is the second letter overall.
    [only] = await store.dead_letters(limit=1, error_type=ErrorType.HTTP_ERROR.value)
    assert only.item.url == "http://b.test/1"
    assert await store.dead_letters(error_type="no_such_type") == []
    c = await store.counts()
    assert (c.queued, c.leased, c.done, c.dead, c.hosts) == (0, 0, 1, 2, 0)
    assert await store.next_due(T0 + 3) is None

    assert await store.requeue_dead(ErrorType.TIMEOUT.value, T0 + 3) == 1
    assert [d.item.url for d in await store.dead_letters()] == ["http://b.test/1"]
    [lease] = await store.claim(T0 + 3, 10)
    assert (lease.item.url, lease.item.attempts) == ("http://a.test/1", 0)
    assert await store.requeue_dead("no_such_type", T0 + 3) == 0
    assert await store.requeue_dead(None, T0 + 3) == 1
    assert await store.dead_letters() == []
    c = await store.counts()
    assert (c.queued, c.leased, c.dead) == (1, 1, 0)


async def test_dead_letter_without_error(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1")], T0)
    [lease] = await store.claim(T0, 10)
    await store.complete([Outcome(lease, "dead", host_due=T0)], T0)
    [letter] = await store.dead_letters()
    assert letter.error is None
    assert await store.requeue_dead(None, T0) == 1


async def test_retry_and_dead_also_add_links(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1"), url("b.test", "1")], T0)
    leases = {x.item.host: x for x in await store.claim(T0, 10)}
    await store.complete(
        [
            Outcome(leases["a.test"], "retry", host_due=T0, retry_at=T0 + 9, links=[url("c.test", "r")]),
            Outcome(leases["b.test"], "dead", host_due=T0, links=[url("c.test", "d")]),
        ],
        T0,
    )
    assert (await store.counts()).queued == 3


# ------------------------------------------------------------------ item kinds (sitemaps) and lastmod


SITEMAP_ITEMS = [
    UrlItem("http://a.test/sitemap.xml", "a.test", 0, kind="sitemap"),
    UrlItem("http://b.test/sitemap.xml", "b.test", 0, kind="sitemap?"),
    UrlItem("http://c.test/s.xml.gz", "c.test", 1, kind="sitemap:a.test"),
    UrlItem("http://d.test/page", "d.test", 2, lastmod=1_714_521_600.5),
]


async def test_item_kind_and_lastmod_survive_claim_retry_and_dead_letters(make_store: StoreFactory) -> None:
    store = await make_store()
    assert (await store.add(SITEMAP_ITEMS, T0)).queued == 4
    leases = sorted(await store.claim(T0, 10), key=lambda x: x.item.host)
    assert [x.item for x in leases] == SITEMAP_ITEMS
    await store.complete([Outcome(x, "retry", host_due=T0, retry_at=T0 + 1) for x in leases], T0)
    leases = sorted(await store.claim(T0 + 1, 10), key=lambda x: x.item.host)
    assert [x.item for x in leases] == [replace(i, attempts=1) for i in SITEMAP_ITEMS]
    await store.complete([dead(x, T0, CrawlError(ErrorType.SITEMAP_ERROR, "bad")) for x in leases], T0 + 2)
    letters = sorted(await store.dead_letters(), key=lambda d: d.item.host)
    assert [d.item for d in letters] == [replace(i, attempts=2) for i in SITEMAP_ITEMS]
    assert await store.requeue_dead(ErrorType.SITEMAP_ERROR.value, T0 + 3) == 4
    leases = sorted(await store.claim(T0 + 3, 10), key=lambda x: x.item.host)
    assert [x.item for x in leases] == SITEMAP_ITEMS


async def test_kinds_and_lastmod_travel_as_links_and_through_release(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("e.test", "1")], T0)
    [lease] = await store.claim(T0, 10)
    await store.complete([done(lease, T0, links=SITEMAP_ITEMS)], T0)
    leases = await store.claim(T0, 10)
    await store.release(leases, T0)
    again = sorted(await store.claim(T0, 10), key=lambda x: x.item.host)
    assert [x.item for x in again] == SITEMAP_ITEMS


async def test_a_sitemap_and_the_page_at_its_url_are_seen_apart(make_store: StoreFactory) -> None:
    store = await make_store()
    page = UrlItem("http://a.test/sitemap.xml", "a.test")
    sitemap = UrlItem("http://a.test/sitemap.xml", "a.test", kind="sitemap")
    assert (await store.add([page, sitemap], T0)).queued == 2
    probe = UrlItem("http://a.test/sitemap.xml", "a.test", kind="sitemap?")
    r = await store.add([page, sitemap, probe], T0 + 1)
    assert (r.queued, r.duplicates) == (0, 3)  # every sitemap kind is one identity: the file is read once


# ------------------------------------------------------------------ stale leases, release


async def test_reclaim_expired_and_stale_token_ignored(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl=60)
    await store.add([url("a.test", "1")], T0)
    [old] = await store.claim(T0, 10)
    assert old.expires_at == T0 + 60
    assert await store.reclaim_expired(T0 + 59) == 0
    assert await store.reclaim_expired(T0 + 60) == 1
    assert await store.reclaim_expired(T0 + 61) == 0
    [new] = await store.claim(T0 + 61, 10)
    assert new.item.url == old.item.url and new.token > old.token
    # The late result of the reclaimed lease changes nothing, but its links are discoveries.
    assert await store.complete([done(old, T0 + 200, [url("b.test", "1")])], T0 + 62) == 1
    c = await store.counts()
    assert (c.queued, c.leased, c.done) == (1, 1, 0)
    assert await store.complete([done(new, T0 + 63)], T0 + 63) == 0
    assert await store.complete([done(new, T0 + 63)], T0 + 64) == 1
    assert (await store.counts()).done == 1


async def test_same_token_twice_in_one_call_counts_once(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1")], T0)
    [lease] = await store.claim(T0, 10)
    assert await store.complete([done(lease, T0), done(lease, T0)], T0) == 1
    c = await store.counts()
    assert (c.done, c.leased) == (1, 0)


async def test_release_returns_to_head_and_keeps_next_at(make_store: StoreFactory) -> None:
    store = await make_store(host_limits=limits({"a.test": HostLimits(spacing=10)}))
    await store.add([url("a.test", str(i)) for i in range(3)], T0)
    [lease] = await store.claim(T0, 10)
    await store.release([lease], T0 + 1)
    c = await store.counts()
    assert (c.queued, c.leased) == (3, 0)
    assert await store.claim(T0 + 1, 10) == []
    assert await store.next_due(T0 + 1) == T0 + 10
    [again] = await store.claim(T0 + 10, 10)
    assert again.item.url == "http://a.test/0" and again.token != lease.token
    assert await store.complete([done(lease, T0 + 10)], T0 + 10) == 1  # released token is dead
    await store.release([lease], T0 + 11)  # releasing a stale lease is a no-op
    assert (await store.counts()).leased == 1


async def test_release_at_concurrency_limit_frees_the_host(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", "1"), url("a.test", "2")], T0)
    leases = await store.claim(T0, 10)
    assert await store.next_due(T0) == math.inf
    await store.release(leases, T0)
    assert urls(await store.claim(T0, 10)) == ["http://a.test/1"]


# ------------------------------------------------------------------ next_due


async def test_next_due_semantics(make_store: StoreFactory) -> None:
    store = await make_store()
    assert await store.next_due(T0) is None
    await store.add([url("a.test", "1"), url("b.test", "1")], T0)
    assert await store.next_due(T0) == T0
    leases = {x.item.host: x for x in await store.claim(T0, 1)}
    assert await store.next_due(T0) == T0  # the other host is still claimable
    leases |= {x.item.host: x for x in await store.claim(T0, 1)}
    # Only leases out: nothing queued, so None (the crawler also checks its own leases).
    assert await store.next_due(T0) is None
    await store.add([url("a.test", "2")], T0)
    # Queued, but its host is at its concurrency limit: no time helps until a lease ends.
    assert await store.next_due(T0) == math.inf
    await store.complete([done(leases["a.test"], T0 + 7)], T0 + 1)
    assert await store.next_due(T0 + 1) == T0 + 7
    assert await store.next_due(T0 + 8) == T0 + 8


# ------------------------------------------------------------------ budget, limits, counts, meta


async def test_budget_caps_admissions_until_raised(make_store: StoreFactory) -> None:
    store = await make_store(host_limits=limits({"a.test": HostLimits(budget=2)}))
    r = await store.add([url("a.test", str(i)) for i in range(3)] + [url("b.test", "1")], T0)
    assert (r.queued, r.duplicates, r.over_budget) == (3, 0, 1)
    r = await store.add([url("a.test", str(i)) for i in range(3)], T0)
    assert (r.queued, r.duplicates, r.over_budget) == (0, 2, 1)
    # The budget counts admissions, not the queue: finishing pages frees nothing.
    [lease] = [x for x in await store.claim(T0, 10) if x.item.host == "a.test"]
    await store.complete([done(lease, T0)], T0)
    assert (await store.add([url("a.test", "9")], T0)).over_budget == 1
    await store.set_host_limits("a.test", HostLimits(budget=3))
    r = await store.add([url("a.test", "2"), url("a.test", "9")], T0)
    assert (r.queued, r.over_budget) == (1, 1)


async def test_set_host_limits_changes_concurrency(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url("a.test", str(i)) for i in range(3)], T0)
    await store.claim(T0, 10)
    assert await store.claim(T0, 10) == []
    await store.set_host_limits("a.test", HostLimits(concurrency=2))
    assert urls(await store.claim(T0, 10)) == ["http://a.test/1"]


async def test_set_host_limits_before_first_sight_wins(make_store: StoreFactory) -> None:
    asked: list[str] = []

    def host_limits(host: str) -> HostLimits:
        asked.append(host)
        return HostLimits()

    store = await make_store(host_limits=host_limits)
    await store.set_host_limits("a.test", HostLimits(concurrency=1, spacing=50))
    await store.add([url("a.test", "1"), url("a.test", "2")], T0)
    [lease] = await store.claim(T0, 10)
    await store.complete([done(lease, T0)], T0)
    assert await store.claim(T0 + 1, 10) == []
    assert await store.next_due(T0 + 1) == T0 + 50
    assert asked == []


async def test_counts_follow_a_small_crawl(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.add([url(h, str(i)) for h in ("a.test", "b.test") for i in range(3)], T0)
    leases = await store.claim(T0, 10)
    c = await store.counts()
    assert (c.queued, c.leased, c.done, c.dead, c.hosts) == (4, 2, 0, 0, 2)
    await store.complete([done(leases[0], T0), dead(leases[1], T0, CrawlError(ErrorType.DNS, "x"))], T0)
    c = await store.counts()
    assert (c.queued, c.leased, c.done, c.dead, c.hosts) == (4, 0, 1, 1, 2)
    while leases := await store.claim(T0, 10):
        await store.complete([done(x, T0) for x in leases], T0)
    c = await store.counts()
    assert (c.queued, c.leased, c.done, c.dead, c.hosts) == (0, 0, 5, 1, 0)


async def test_top_hosts_ranks_queued_urls_per_host(make_store: StoreFactory) -> None:
    store = await make_store(host_limits=limits({"c.test": HostLimits(concurrency=2)}))
    assert await store.top_hosts(5) == []
    await store.add([url("a.test", str(i)) for i in range(2)], T0)
    await store.add([url("b.test", str(i)) for i in range(4)], T0)
    await store.add([url("c.test", str(i)) for i in range(2)], T0)
    assert await store.top_hosts(5) == [("b.test", 4), ("a.test", 2), ("c.test", 2)]  # ties by name
    assert await store.top_hosts(1) == [("b.test", 4)]
    assert await store.top_hosts(0) == []
    # Leased URLs are not queued; a host at its concurrency limit (out of `due`) is still ranked; a retry
    # waiting for its time counts as queued; a host with nothing queued drops out.
    leases = {x.item.host: x for x in await store.claim(T0, 10)}
    more = await store.claim(T0, 10)
    assert [x.item.host for x in more] == ["c.test"]
    assert await store.top_hosts(5) == [("b.test", 3), ("a.test", 1)]
    await store.complete([Outcome(leases["b.test"], "retry", host_due=T0, retry_at=T0 + 100)], T0)
    await store.complete([done(leases["a.test"], T0)], T0)
    assert await store.top_hosts(5) == [("b.test", 4), ("a.test", 1)]
    await store.complete([done(leases["c.test"], T0), done(more[0], T0)], T0)
    assert await store.top_hosts(5) == [("b.test", 4), ("a.test", 1)]


async def test_meta_round_trip(make_store: StoreFactory) -> None:
    store = await make_store()
    assert await store.get_meta("log_offset") is None
    await store.set_meta("log_offset", "123")
    await store.set_meta("other", "")
    assert await store.get_meta("log_offset") == "123"
    await store.set_meta("log_offset", "456")
    assert await store.get_meta("log_offset") == "456"
    assert await store.get_meta("other") == ""
    await store.flush()
    assert await store.get_meta("log_offset") == "456"


# ------------------------------------------------------------------ kept robots.txt and the read-only inspector


async def test_kept_robots_latest_answer_per_url(make_store: StoreFactory, make_inspector: InspectorFactory) -> None:
    store = await make_store()
    robots = "http://a.test/robots.txt"
    assert await store.kept_robots(robots) is None
    await store.keep_robots(KeptRobots(robots, 200, None, b"User-agent: *\nDisallow: /x\n", T0), ttl=60)
    moved = KeptRobots("http://b.test/robots.txt", 301, "http://a.test/robots.txt", b"", T0)
    await store.keep_robots(moved, ttl=60)
    newer = KeptRobots(robots, 200, None, b"User-agent: *\nDisallow: /y\n", T0 + 5)
    await store.keep_robots(newer, ttl=60)
    assert await store.kept_robots(robots) == newer
    assert await store.kept_robots("http://b.test/robots.txt") == moved
    inspector = await make_inspector(store)
    assert await inspector.kept_robots(robots) == newer
    assert await inspector.kept_robots("http://c.test/robots.txt") is None


async def test_inspector_follows_a_url_through_the_store(
    make_store: StoreFactory, make_inspector: InspectorFactory
) -> None:
    store = await make_store(host_limits=limits({"a.test": HostLimits(spacing=5)}))
    await store.add([url("a.test", "1", 2), url("a.test", "2"), url("a.test", "3")], T0)
    await store.set_meta("k", "v")
    inspector = await make_inspector(store)
    assert await inspector.get_meta("k") == "v"
    assert await inspector.host_state("b.test") is None
    assert await inspector.url_state("http://b.test/1", "b.test") == UrlState("http://b.test/1")
    third = await inspector.url_state("http://a.test/3", "a.test")
    assert (third.place, third.seen_at, third.ahead, third.not_before) == ("queued", T0, 2, 0.0)
    assert third.item == url("a.test", "3")
    host = await inspector.host_state("a.test")
    assert host is not None
    assert (host.due_at, host.spacing, host.concurrency, host.inflight, host.queued, host.admitted) == (
        0.0, 5.0, 1, 0, 3, 3,
    )  # fmt: skip

    [lease] = await store.claim(T0, 10)
    await store.flush()
    first = await inspector.url_state("http://a.test/1", "a.test")
    assert (first.place, first.lease_expires, first.item) == ("leased", lease.expires_at, url("a.test", "1", 2))
    host = await inspector.host_state("a.test")
    assert host is not None and (host.due_at, host.inflight, host.polite_at) == (None, 1, T0 + 5)

    await store.complete([Outcome(lease, "retry", host_due=T0 + 5, retry_at=T0 + 100)], T0)
    await store.flush()
    first = await inspector.url_state("http://a.test/1", "a.test")
    assert (first.place, first.not_before, first.ahead, first.item) == ("queued", T0 + 100, 0, UrlItem(
        "http://a.test/1", "a.test", 2, 1
    ))  # fmt: skip
    assert (await inspector.url_state("http://a.test/3", "a.test")).ahead == 2  # the waiting retry keeps its place
    host = await inspector.host_state("a.test")
    assert host is not None and (host.due_at, host.queued, host.inflight) == (T0 + 5, 3, 0)

    [second] = await store.claim(T0 + 5, 10)
    await store.complete([dead(second, T0 + 10, CrawlError(ErrorType.TLS, "bad cert"))], T0 + 6)
    [third_lease] = await store.claim(T0 + 10, 10)
    await store.complete([done(third_lease, T0 + 15)], T0 + 11)
    await store.flush()
    gone = await inspector.url_state("http://a.test/2", "a.test")
    assert (gone.place, gone.died_at, gone.error, gone.item) == (
        "dead", T0 + 6, {"type": "tls_error", "message": "bad cert"}, UrlItem("http://a.test/2", "a.test", 0, 1),
    )  # fmt: skip
    assert await inspector.url_state("http://a.test/3", "a.test") == UrlState("http://a.test/3", seen_at=T0)
    host = await inspector.host_state("a.test")
    assert host is not None and (host.due_at, host.queued) == (T0 + 100, 1)  # only the retry is left


# ------------------------------------------------------------------ recrawl

V1 = Validators(etag='"v1"', last_modified="Wed, 21 Oct 2015 07:28:00 GMT")


async def fetch_all(store: FrontierStore, now: float, validators: dict[str, Validators] | None = None) -> None:
    """Claim and complete (done) everything until nothing is claimable at `now`, with `validators` by URL."""
    got = validators or {}
    while leases := await store.claim(now, 100):
        await store.complete([Outcome(x, "done", host_due=now, validators=got.get(x.item.url)) for x in leases], now)


async def test_recrawl_queues_expired_pages_with_their_validators(make_store: StoreFactory) -> None:
    store = await make_store(seen_ttl=100)
    await store.add([url("a.test", "1"), url("c.test", "2", depth=3), url("b.test", "1")], T0)
    await fetch_all(store, T0, {"http://a.test/1": V1, "http://b.test/1": Validators(etag='W/"b"')})
    assert await store.recrawl(T0 + 100) == Recrawled(0, 0)  # exactly seen_ttl old: still seen
    assert await store.recrawl(T0 + 101) == Recrawled(queued=3, conditional=2)
    c = await store.counts()
    assert (c.queued, c.leased, c.done, c.hosts) == (3, 0, 3, 3)
    leases = await claim_all(store, T0 + 101)
    got = {x.item.url: (x.item.depth, x.item.attempts, x.validators) for x in leases}
    assert got == {
        "http://a.test/1": (0, 0, V1),
        "http://b.test/1": (0, 0, Validators(etag='W/"b"')),
        "http://c.test/2": (3, 0, None),
    }
    # Queued again means seen again: a link to it is a duplicate, a second recrawl finds nothing.
    assert (await store.add([url("c.test", "2")], T0 + 102)).duplicates == 1
    assert await store.recrawl(T0 + 102) == Recrawled(0, 0)


async def test_a_done_sitemap_is_not_on_the_recrawl_list(make_store: StoreFactory) -> None:
    store = await make_store(seen_ttl=100)
    await store.add([*SITEMAP_ITEMS, url("e.test", "page")], T0)
    await fetch_all(store, T0, {i.url: V1 for i in SITEMAP_ITEMS} | {"http://e.test/page": V1})
    # Only the pages come back: a sitemap is queued again when its host's robots.txt names it again.
    assert await store.recrawl(T0 + 101) == Recrawled(queued=2, conditional=2)
    got = sorted(((x.item, x.validators) for x in await claim_all(store, T0 + 101)), key=lambda g: g[0].url)
    # The page a sitemap dated comes back as a page (its lastmod was the sitemap's, not kept for a recrawl).
    assert got == [(UrlItem("http://d.test/page", "d.test", 2), V1), (UrlItem("http://e.test/page", "e.test"), V1)]


async def test_recrawl_leaves_pages_within_ttl_and_fresh_urls(make_store: StoreFactory) -> None:
    store = await make_store(seen_ttl=100)
    await store.add([url("a.test", "old"), url("b.test", "linked")], T0)
    await fetch_all(store, T0, {"http://a.test/old": V1, "http://b.test/linked": V1})
    await store.add([url("c.test", "new")], T0 + 50)
    await fetch_all(store, T0 + 50, {"http://c.test/new": V1})
    # A link queued this one again after its seen entry expired: recrawl must not queue it a second time.
    assert (await store.add([url("b.test", "linked")], T0 + 120)).queued == 1
    assert await store.recrawl(T0 + 120) == Recrawled(queued=1, conditional=1)
    assert (await store.counts()).queued == 2  # old (recrawl) and linked (add); new is within its TTL
    leases = await claim_all(store, T0 + 121)
    assert sorted((x.item.url, x.validators) for x in leases) == [
        ("http://a.test/old", V1),
        ("http://b.test/linked", None),
    ]
    await store.complete([done(x, T0 + 121) for x in leases], T0 + 121)
    # new's turn comes once it is older than seen_ttl; the others' after their fetch at T0 + 121.
    assert await store.recrawl(T0 + 150) == Recrawled(0, 0)
    assert await store.recrawl(T0 + 151) == Recrawled(queued=1, conditional=1)
    assert await store.recrawl(T0 + 222) == Recrawled(queued=2, conditional=0)


async def test_inspector_reads_recrawled_urls(make_store: StoreFactory, make_inspector: InspectorFactory) -> None:
    """A recrawled URL's queue entry carries its validators too; the inspector reads it like any other."""
    store = await make_store(seen_ttl=100)
    await store.add([url("a.test", "1", depth=2), url("a.test", "2")], T0)
    await fetch_all(store, T0, {"http://a.test/1": V1})
    assert await store.recrawl(T0 + 101) == Recrawled(queued=2, conditional=1)
    inspector = await make_inspector(store)
    state = await inspector.url_state("http://a.test/1", "a.test")
    other = await inspector.url_state("http://a.test/2", "a.test")
    assert (state.place, state.item, other.place) == ("queued", url("a.test", "1", depth=2), "queued")
    assert {state.ahead, other.ahead} == {0, 1}  # one behind the other, in the order recrawl queued them
    [lease] = await store.claim(T0 + 101, 10)
    await store.flush()
    leased = await inspector.url_state(lease.item.url, "a.test")
    assert (leased.place, leased.item) == ("leased", lease.item)


async def test_recrawled_validators_survive_retry_release_and_reclaim(make_store: StoreFactory) -> None:
    store = await make_store(seen_ttl=100, lease_ttl=30)
    await store.add([url("a.test", "1")], T0)
    await fetch_all(store, T0, {"http://a.test/1": V1})
    await store.recrawl(T0 + 200)
    [lease] = await store.claim(T0 + 200, 10)
    await store.complete([Outcome(lease, "retry", host_due=T0 + 200, retry_at=T0 + 210)], T0 + 200)
    [lease] = await store.claim(T0 + 210, 10)
    assert (lease.item.attempts, lease.validators) == (1, V1)
    await store.release([lease], T0 + 211)
    [lease] = await store.claim(T0 + 211, 10)
    assert lease.validators == V1
    assert await store.reclaim_expired(T0 + 241) == 1
    [lease] = await store.claim(T0 + 241, 10)
    assert lease.validators == V1


async def test_done_replaces_validators_and_dead_pages_leave_the_list(make_store: StoreFactory) -> None:
    store = await make_store(seen_ttl=100)
    await store.add([url("a.test", "1"), url("b.test", "1")], T0)
    await fetch_all(store, T0, {"http://a.test/1": V1, "http://b.test/1": V1})
    await store.recrawl(T0 + 101)
    v2 = Validators(etag='"v2"')
    for lease in await claim_all(store, T0 + 101):
        if lease.item.host == "a.test":  # changed: a 200 with a new ETag
            await store.complete([Outcome(lease, "done", host_due=T0 + 101, validators=v2)], T0 + 101)
        else:
            await store.complete([dead(lease, T0 + 101, CrawlError(ErrorType.TIMEOUT, "t"))], T0 + 101)
    assert await store.recrawl(T0 + 202) == Recrawled(queued=1, conditional=1)
    [lease] = await claim_all(store, T0 + 202)
    assert (lease.item.url, lease.validators) == ("http://a.test/1", v2)
    await store.complete([done(lease, T0 + 202)], T0 + 202)  # now without validators
    assert await store.recrawl(T0 + 303) == Recrawled(queued=1, conditional=0)
    [lease] = await claim_all(store, T0 + 303)
    assert lease.validators is None


async def test_stale_done_is_not_listed(make_store: StoreFactory) -> None:
    store = await make_store(seen_ttl=100, lease_ttl=10)
    await store.add([url("a.test", "1")], T0)
    [old] = await store.claim(T0, 10)
    await store.reclaim_expired(T0 + 10)
    assert await store.complete([Outcome(old, "done", host_due=T0 + 11, validators=V1)], T0 + 11) == 1
    assert await store.recrawl(T0 + 500) == Recrawled(0, 0)


async def test_recrawl_is_not_charged_to_the_budget(make_store: StoreFactory) -> None:
    store = await make_store(seen_ttl=100, host_limits=limits({"a.test": HostLimits(budget=2)}))
    await store.add([url("a.test", "1"), url("a.test", "2"), url("a.test", "3")], T0)
    await fetch_all(store, T0)
    await fetch_all(store, T0)
    assert (await store.recrawl(T0 + 101)).queued == 2
    r = await store.add([url("a.test", "3"), url("a.test", "4")], T0 + 101)
    assert (r.queued, r.over_budget) == (0, 2)


async def test_recrawl_of_many_pages_in_fetch_order(make_store: StoreFactory) -> None:
    """More pages than one backend batch; each host's queue gets them back oldest fetch first."""
    store = await make_store(
        seen_ttl=100, host_limits=limits({f"h{i}.test": HostLimits(concurrency=1000) for i in range(3)})
    )
    items = [url(f"h{i % 3}.test", str(i)) for i in range(2500)]
    await store.add(items, T0)
    order: list[str] = []
    now = T0
    while leases := await store.claim(now, 1000):
        order += urls(leases)
        await store.complete([Outcome(x, "done", host_due=now, validators=V1) for x in leases], now)
        now += 1
    assert await store.recrawl(now + 200) == Recrawled(queued=2500, conditional=2500)
    again: list[str] = []
    while leases := await store.claim(now + 200, 1000):
        again += urls(leases)
        assert all(x.validators == V1 for x in leases)
        await store.complete([done(x, now + 200) for x in leases], now + 200)
    assert sorted(again) == sorted(order)
    for host in ("h0.test", "h1.test", "h2.test"):
        assert [u for u in again if host in u] == [u for u in order if host in u]


# ------------------------------------------------------------------ random walk against a model

_WALK_LIMITS = {
    "a.test": HostLimits(),
    "b.test": HostLimits(concurrency=2),
    "c.test": HostLimits(spacing=5),
    "d.test": HostLimits(concurrency=2, spacing=3),
}


class _Model:
    """What the contract says the store holds, tracked from the outside."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.queued: dict[str, float] = {}  # url -> not before
        self.leases: dict[int, Lease] = {}
        self.done = 0
        self.dead: set[str] = set()
        self.free_at: dict[str, float] = {}  # host -> earliest next lease start (politeness)

    def inflight(self, host: str) -> int:
        return sum(1 for x in self.leases.values() if x.item.host == host)


@pytest.mark.parametrize("seed", range(4))
async def test_random_walk_matches_model(make_store: StoreFactory, seed: int) -> None:
    rng = random.Random(seed)
    store = await make_store(host_limits=lambda h: _WALK_LIMITS[h], lease_ttl=50)
    model = _Model()
    now = T0
    pool = [url(h, str(i)) for h in _WALK_LIMITS for i in range(12)]

    def host_of(u: str) -> str:
        return u.split("/")[2]

    def check_claimed(leases: list[Lease], at: float) -> None:
        assert len({x.item.host for x in leases}) == len(leases), "one lease per host per claim"
        for x in leases:
            host = x.item.host
            assert x.item.url in model.queued and model.queued.pop(x.item.url) <= at
            assert at >= model.free_at.get(host, 0.0), "politeness spacing / host_due"
            model.free_at[host] = at + _WALK_LIMITS[host].spacing
            assert x.token not in model.leases
            model.leases[x.token] = x
            assert model.inflight(host) <= _WALK_LIMITS[host].concurrency

    def added(items: Sequence[UrlItem]) -> int:
        fresh = {x.url for x in items} - model.seen
        model.seen |= fresh
        model.queued |= dict.fromkeys(fresh, 0.0)
        return len(fresh)

    for _ in range(250):
        op = rng.random()
        if op < 0.2:
            batch = rng.sample(pool, rng.randint(1, 6))
            expected = added(batch)
            assert (await store.add(batch, now)).queued == expected
        elif op < 0.45:
            leases = await store.claim(now, rng.randint(1, 4))
            check_claimed(leases, now)
        elif op < 0.7 and model.leases:
            chosen = rng.sample(list(model.leases.values()), rng.randint(1, len(model.leases)))
            outcomes = []
            for lease in chosen:
                kind = rng.choice(["done", "done", "retry", "dead"])
                due = now + rng.choice([0, 1, 4])
                retry_at = now + rng.choice([0, 2, 8])
                links = rng.sample(pool, rng.randint(0, 3))
                outcomes.append(Outcome(lease, kind, host_due=due, retry_at=retry_at, links=links))
            if rng.random() < 0.2:
                outcomes.append(outcomes[0])  # a duplicate is stale
            stale = 0
            for o in outcomes:
                lease = model.leases.pop(o.lease.token, None)
                if lease is None:
                    stale += 1
                    continue
                host = lease.item.host
                model.free_at[host] = max(model.free_at.get(host, 0.0), o.host_due)
                if o.kind == "done":
                    model.done += 1
                elif o.kind == "retry":
                    model.queued[lease.item.url] = o.retry_at
                else:
                    model.dead.add(lease.item.url)
            assert await store.complete(outcomes, now) == stale
            added([link for o in outcomes for link in o.links])
        elif op < 0.75 and model.leases:
            lease = rng.choice(list(model.leases.values()))
            await store.release([lease], now)
            del model.leases[lease.token]
            model.queued[lease.item.url] = 0.0
        elif op < 0.8:
            expired = [x for x in model.leases.values() if x.expires_at <= now]
            assert await store.reclaim_expired(now) == len(expired)
            for x in expired:
                del model.leases[x.token]
                model.queued[x.item.url] = 0.0
        elif op < 0.83 and model.dead:
            assert await store.requeue_dead(None, now) == len(model.dead)
            model.queued |= dict.fromkeys(model.dead, 0.0)
            model.dead.clear()
        elif op < 0.93:
            # next_due is exact: nothing is claimable before it, something is at it.
            due = await store.next_due(now)
            if due is None:
                assert not model.queued
            elif due == math.inf:
                assert model.queued
                assert all(model.inflight(host_of(u)) >= _WALK_LIMITS[host_of(u)].concurrency for u in model.queued)
            else:
                assert due >= now
                if due > now:
                    assert await store.claim(now, 100) == []
                now = due
                leases = await store.claim(now, 100)
                assert leases
                check_claimed(leases, now)
        else:
            now += rng.choice([0.5, 1, 3, 10, 60])
        c = await store.counts()
        assert (c.queued, c.leased, c.done, c.dead) == (
            len(model.queued),
            len(model.leases),
            model.done,
            len(model.dead),
        )
        active = {host_of(u) for u in model.queued} | {x.item.host for x in model.leases.values()}
        assert c.hosts == len(active)
        per_host = Counter(host_of(u) for u in model.queued)
        assert await store.top_hosts(3) == sorted(per_host.items(), key=lambda kv: (-kv[1], kv[0]))[:3]


async def test_sqlite_file_of_schema_1_is_upgraded_for_recrawl(tmp_path: Path) -> None:
    """A folder crawled before recrawl existed (no validator columns, no fetched table) opens and recrawls."""
    store = await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits(), seen_ttl=100)
    await store.add([url("a.test", "1"), url("a.test", "2")], T0)
    await store.close()
    db = sqlite3.connect(tmp_path / "frontier.sqlite3")
    db.executescript(
        "DROP TABLE fetched; ALTER TABLE queue DROP COLUMN etag; ALTER TABLE queue DROP COLUMN last_modified;"
        " ALTER TABLE queue DROP COLUMN kind; ALTER TABLE queue DROP COLUMN lastmod;"  # nor sitemaps' columns
        " ALTER TABLE dead DROP COLUMN kind; ALTER TABLE dead DROP COLUMN lastmod;"
        " PRAGMA user_version = 1;"
    )
    db.close()
    async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits(), seen_ttl=100) as store:
        [lease] = await store.claim(T0, 10)
        assert lease.validators is None
        await store.complete([Outcome(lease, "done", host_due=T0, validators=V1)], T0)
        assert await store.recrawl(T0 + 101) == Recrawled(queued=1, conditional=1)
    db = sqlite3.connect(tmp_path / "frontier.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    db.close()


# ------------------------------------------------------------------ SQLite: crash and ownership

_CRASHER = textwrap.dedent(
    """
    import asyncio, os, sys
    from crawler.core.urlitem import UrlItem
    from frontier.sqlite.store import SqliteStore
    from frontier.store import HostLimits, Outcome

    async def main() -> None:
        store = await SqliteStore.open(sys.argv[1], host_limits=lambda h: HostLimits())
        await store.add([UrlItem("http://a.test/1", "a.test"), UrlItem("http://b.test/1", "b.test")], 1.0)
        await store.add([UrlItem("http://a.test/2", "a.test")], 1.0)
        leases = await store.claim(1.0, 10)
        await store.set_meta("offset", "100")
        await store.flush()
        # Unflushed: a new URL, a finished lease, new meta. All must vanish with the process.
        await store.add([UrlItem("http://c.test/1", "c.test")], 2.0)
        await store.complete([Outcome(leases[0], "done", host_due=2.0)], 2.0)
        print(" ".join(str(x.token) for x in leases), flush=True)
        await store.set_meta("offset", "200")
        os._exit(0)

    asyncio.run(main())
    """
)


class TestSqliteDurability:
    """What survives a killed process; specific to the embedded backend."""

    def _crash(self, folder: Path) -> list[int]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done_proc = subprocess.run(
            [sys.executable, "-c", _CRASHER, str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return [int(t) for t in done_proc.stdout.split()]

    async def test_unflushed_writes_vanish_and_leases_return(self, tmp_path: Path) -> None:
        old_tokens = self._crash(tmp_path)
        assert len(old_tokens) == 2
        async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits()) as store:
            assert await store.get_meta("offset") == "100"
            c = await store.counts()
            assert (c.queued, c.leased, c.done, c.hosts) == (3, 0, 0, 2)
            r = await store.add([UrlItem("http://c.test/1", "c.test"), UrlItem("http://a.test/2", "a.test")], 3)
            assert (r.queued, r.duplicates) == (1, 1)
            leases = await store.claim(3.0, 10)
            # Requeued at their old place, with tokens past every token handed out before.
            assert sorted(urls(leases)) == ["http://a.test/1", "http://b.test/1", "http://c.test/1"]
            assert min(x.token for x in leases) > max(old_tokens)

    async def test_flushed_state_survives_close_and_reopen(self, tmp_path: Path) -> None:
        store = await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits())
        await store.add([url("a.test", "1"), url("a.test", "2")], T0)
        [lease] = await store.claim(T0, 10)
        await store.complete([dead(lease, T0 + 5, CrawlError(ErrorType.TLS, "bad cert"))], T0)
        await store.set_meta("k", "v")
        await store.close()
        await store.close()  # idempotent
        async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits()) as again:
            assert await again.get_meta("k") == "v"
            assert [d.item.url for d in await again.dead_letters()] == ["http://a.test/1"]
            assert await again.next_due(T0) == T0 + 5
            assert (await again.add([url("a.test", "1")], T0)).duplicates == 1

    async def test_fresh_discards_previous_data(self, tmp_path: Path) -> None:
        async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits()) as store:
            await store.add([url("a.test", "1")], T0)
        async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits(), fresh=True) as s:
            assert (await s.counts()).queued == 0
            assert (await s.add([url("a.test", "1")], T0)).queued == 1

    async def test_second_owner_is_refused(self, tmp_path: Path) -> None:
        folder = tmp_path / "state" / "frontier"  # created on open
        async with await SqliteStore.open(folder, host_limits=lambda h: HostLimits()):
            with pytest.raises(ConfigError, match="in use"):
                await SqliteStore.open(folder, host_limits=lambda h: HostLimits())
        async with await SqliteStore.open(folder, host_limits=lambda h: HostLimits()) as store:
            assert await store.next_due(T0) is None
        with pytest.raises(ConfigError, match="is a file"):
            await SqliteStore.open(folder / "frontier.sqlite3", host_limits=lambda h: HostLimits())

    async def test_reader_sees_flushes_while_the_owner_writes_and_leaves_no_files(self, tmp_path: Path) -> None:
        store = await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits())
        await store.add([url("a.test", "1")], T0)
        await store.flush()
        async with SqliteInspector.open(tmp_path) as reader:
            assert (await reader.url_state("http://a.test/1", "a.test")).place == "queued"
            await store.add([url("a.test", "2")], T0)  # the owner writes while a reader is open
            assert (await reader.url_state("http://a.test/2", "a.test")).place is None  # not flushed yet
            await store.flush()
            assert (await reader.url_state("http://a.test/2", "a.test")).place == "queued"
        await store.close()
        before = sorted(p.name for p in tmp_path.iterdir())
        assert "frontier.sqlite3-wal" not in before
        async with SqliteInspector.open(tmp_path) as reader:  # after the crawl: read as immutable
            assert (await reader.url_state("http://a.test/2", "a.test")).seen_at == T0
        assert sorted(p.name for p in tmp_path.iterdir()) == before
        with pytest.raises(ConfigError, match="no crawl state"):
            SqliteInspector.open(tmp_path / "elsewhere")

    async def test_failed_call_leaves_no_partial_changes(self, tmp_path: Path) -> None:
        def host_limits(host: str) -> HostLimits:
            if host == "bad.test":
                raise RuntimeError("no limits for you")
            return HostLimits()

        async with await SqliteStore.open(tmp_path, host_limits=host_limits) as store:
            with pytest.raises(RuntimeError):
                await store.add([url("a.test", "1"), url("bad.test", "1")], T0)
            assert (await store.counts()).queued == 0
            assert (await store.add([url("a.test", "1")], T0)).queued == 1

    async def test_storage_error_rolls_back_to_last_flush_and_stops(self, tmp_path: Path) -> None:
        store = await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits())
        await store.add([url("a.test", "1")], T0)
        await store.flush()
        await store.set_meta("k", "unflushed")
        # Stands in for a disk error half-way through a call: the next queue insert fails.
        store._db.execute(
            "CREATE TEMP TRIGGER boom BEFORE INSERT ON queue BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
        with pytest.raises(sqlite3.DatabaseError, match="disk on fire"):
            await store.add([url("b.test", "1")], T0)
        with pytest.raises(RuntimeError, match="reopen"):
            await store.claim(T0, 10)
        await store.close()
        async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits()) as again:
            assert await again.get_meta("k") is None
            c = await again.counts()
            assert (c.queued, c.hosts) == (1, 1)
            assert (await again.add([url("b.test", "1")], T0)).queued == 1

    async def test_a_folder_of_schema_2_is_upgraded_and_its_urls_are_pages(self, tmp_path: Path) -> None:
        async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits()) as store:
            await store.add([url("a.test", "1"), url("b.test", "1")], T0)
            [lease, _] = await store.claim(T0, 10)
            await store.complete([dead(lease, T0, CrawlError(ErrorType.TIMEOUT, "slow"))], T0)
        # What the release before sitemaps left: schema 2 had neither column.
        db = sqlite3.connect(tmp_path / "frontier.sqlite3")
        for table in ("queue", "dead"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN kind")
            db.execute(f"ALTER TABLE {table} DROP COLUMN lastmod")
        db.execute("PRAGMA user_version = 2")
        db.commit()
        db.close()
        async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits()) as store:
            [letter] = await store.dead_letters()
            assert letter.item == UrlItem("http://a.test/1", "a.test", 0, 1)
            assert [x.item for x in await store.claim(T0, 10)] == [UrlItem("http://b.test/1", "b.test")]
            await store.add(SITEMAP_ITEMS[:1], T0)
            assert [x.item for x in await store.claim(T0 + 1, 10)] == SITEMAP_ITEMS[:1]
        version = sqlite3.connect(tmp_path / "frontier.sqlite3").execute("PRAGMA user_version").fetchone()[0]
        assert version == 3

    async def test_zero_budget_host_asked_for_limits_once(self, tmp_path: Path) -> None:
        asked: list[str] = []

        def host_limits(host: str) -> HostLimits:
            asked.append(host)
            return HostLimits(budget=0)

        async with await SqliteStore.open(tmp_path, host_limits=host_limits) as store:
            assert (await store.add([url("a.test", "1")], T0)).over_budget == 1
            assert (await store.add([url("a.test", "2")], T0)).over_budget == 1
            assert asked == ["a.test"]
