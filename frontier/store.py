"""The frontier storage contract: leases over per-host queues, with an exact seen-set.

Two backends implement it: `frontier.sqlite.store.SqliteStore` (embedded, the default) and
`frontier.redis.store.RedisStore` (distributed). `tests/test_store_contract.py` runs one
behavioural suite against both. All times are Unix seconds supplied by the caller: a store never
reads the clock, so tests drive it with a fake one.

Model
-----
* A URL is **seen** once `add` accepted it; it stays seen for `seen_ttl` seconds, after which
  `add` may queue it again. Seen is the dedup truth; Bloom filters only sit in front of it.
* Each URL belongs to one **host** (its politeness key). A host is *due* when it has a queued
  URL, fewer than `concurrency` leases out, and `next_at <= now`.
* `claim` leases URLs from due hosts (at most one per host per call) and returns `Lease`s. While
  a host has `concurrency` leases out it is not due. Claiming also pushes the host's `next_at` to
  `now + spacing` so that several leases on one host (concurrency > 1) start `spacing` apart.
* `complete` ends leases: `done` (a record was written), `retry` (queue it again, not before
  `retry_at`), or `dead` (dead-letter list). Each outcome also sets the host's `next_at` to at
  least `host_due` and may add discovered links (dedup applies). A stale lease (reclaimed
  meanwhile; its token no longer matches) is ignored and reported as such.
* `release` hands leases back untouched (shutdown); the host keeps its `next_at`.
* Edges both backends pin (the contract suite checks them): `next_due` is `math.inf` when URLs are
  queued but every such host is at its concurrency limit, and None only when nothing is queued; a seen
  entry exactly `seen_ttl` old is still seen; a lease whose `expires_at == now` is reclaimed; a URL over
  its host's budget is not marked seen; a stale outcome changes nothing but its links are still added.
* An outcome's `seen` URLs (a same-host redirect's hops and target, already fetched by that lease) are
  marked seen at `now` without being queued or counted against a budget.
* robots.txt answers are kept per URL (`keep_robots`, the latest wins): the cluster shares them between
  workers, and `crawler explain` shows the rule that decided. Redis expires them after `ttl` (real time);
  the embedded store keeps the latest until it is replaced (one row per robots.txt URL).
* An item comes back as it was added, `kind` and `lastmod` included, through claims, retries, releases,
  dead letters and requeues; dedup is by `UrlItem.seen_key`, so a sitemap and the page at its URL are
  seen apart.

Reading without owning
----------------------
`frontier.inspect.Inspector` is the read-only view `crawler explain` uses (one implementation per
backend): what the store holds about one URL and one host, while a crawl runs or after it ended.

Recrawl
-------
* Every `done` outcome (not a stale one) of a page records its URL as **fetched** at `now`, with the
  outcome's `validators` (ETag / Last-Modified of the page, or None): the store's list of pages, by fetch
  time. A sitemap (an item with a `kind`) is not listed: its host's robots.txt names it again.
* `recrawl(now)` queues again every fetched URL whose fetch is older than `seen_ttl` and whose seen entry
  expired too, with its depth and attempts 0, marks it seen at `now` (not counted against a budget), and
  takes it off the fetched list until it is done again. Its lease then carries the stored validators
  (`Lease.validators`; None for every URL queued by `add`), also across retries, releases and reclaims.
  A fetched URL whose seen entry is fresh (a link or seed queued it again, or it was fetched as a
  redirect target) is only taken off the list: its own fetch will put it back. A dead letter is not
  on the list. A crawl therefore reaches, on a recrawl, every page it fetched before, even when a 304
  means the page is not parsed again and its links not rediscovered.

Crash behaviour
---------------
Everything a call returned from survives a crash of the calling process once `flush` returned
(backends may batch until then). Leases of a dead process are given back by `reclaim_expired`
(Redis: after the lease TTL; embedded: every lease on open, since one process owns the folder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from crawler.core.limits import HostLimits
from crawler.core.urlitem import UrlItem
from crawler.core.validators import Validators


class Fenced(Exception):
    """A fenced store refused a step: the caller is no longer the one allowed to change it (a deposed leader)."""


@dataclass(slots=True, frozen=True)
class Lease:
    """A URL handed to one worker; `token` fences late results after a reclaim."""

    item: UrlItem
    token: int
    expires_at: float
    validators: Validators | None = None  # from the page's last fetch, when `recrawl` queued it


OutcomeKind = Literal["done", "retry", "dead"]


@dataclass(slots=True)
class Outcome:
    """How a lease ended, plus the host's next due time and the links to add."""

    lease: Lease
    kind: OutcomeKind
    host_due: float
    retry_at: float = 0.0
    error: dict[str, str] | None = None
    links: Sequence[UrlItem] = field(default_factory=tuple)
    # URLs the lease's fetch requested besides its own (same-host redirect hops and target): marked seen,
    # never queued, so a later link to them does not fetch them again. Applied even for a stale outcome.
    seen: Sequence[str] = field(default_factory=tuple)
    # A `done` page's ETag / Last-Modified, kept with it for the conditional request of a recrawl.
    validators: Validators | None = None


@dataclass(slots=True, frozen=True)
class DeadLetter:
    """A URL that used up its attempts, with the last error."""

    item: UrlItem
    error: dict[str, str] | None
    died_at: float


@dataclass(slots=True, frozen=True)
class AddResult:
    """What `add` did with a batch: queued, already seen, or over the host's budget."""

    queued: int = 0
    duplicates: int = 0
    over_budget: int = 0


@dataclass(slots=True, frozen=True)
class Recrawled:
    """What `recrawl` queued: URLs in all, and how many of them carry validators (a conditional request)."""

    queued: int = 0
    conditional: int = 0


@dataclass(slots=True, frozen=True)
class Counts:
    """A snapshot of the frontier's size."""

    queued: int  # waiting, not leased (retries waiting for their time included)
    leased: int
    done: int
    dead: int
    hosts: int  # hosts with queued or leased URLs


@dataclass(slots=True, frozen=True)
class KeptRobots:
    """One robots.txt answer as fetched: its URL, status, Location (3xx) and body, and when."""

    url: str
    status: int
    location: str | None
    body: bytes
    fetched_at: float


HostLimitsFn = Callable[[str], HostLimits]


class FrontierStore(Protocol):
    """The lease contract; see the module docstring for the model and crash behaviour."""

    async def add(self, items: Sequence[UrlItem], now: float) -> AddResult:
        """Queue each item whose URL is not seen (or whose seen entry expired), and mark it seen."""
        ...

    async def claim(self, now: float, limit: int) -> list[Lease]:
        """Lease up to `limit` URLs from due hosts, at most one per host, oldest-due host first."""
        ...

    async def complete(self, outcomes: Sequence[Outcome], now: float) -> int:
        """Apply outcomes; returns how many were stale (token mismatch) and ignored."""
        ...

    async def release(self, leases: Sequence[Lease], now: float) -> None:
        """Give leases back unfetched, at the head of their host queue."""
        ...

    async def reclaim_expired(self, now: float) -> int:
        """Requeue leases whose `expires_at` passed; returns how many."""
        ...

    async def next_due(self, now: float) -> float | None:
        """Earliest time a claim could succeed (`now` if already), None when nothing is queued."""
        ...

    async def recrawl(self, now: float) -> Recrawled:
        """Queue again every fetched URL whose fetch and seen entry are older than `seen_ttl` (see Recrawl)."""
        ...

    async def set_host_limits(self, host: str, limits: HostLimits) -> None:
        """Change a host's limits (robots Crawl-delay learned, operator override)."""
        ...

    async def counts(self) -> Counts:
        """Current queue sizes."""
        ...

    async def top_hosts(self, limit: int) -> list[tuple[str, int]]:
        """The `limit` hosts with the most URLs queued (waiting retries included, leases not), as
        (host, queued), most first, ties by host name; hosts with nothing queued are left out.

        For monitoring: it reads every active host, so call it every few seconds, not per page.
        """
        ...

    async def dead_letters(self, limit: int = 1000, error_type: str | None = None) -> list[DeadLetter]:
        """Dead-lettered URLs (only those of `error_type` when given), oldest first, at most `limit`.

        The type filter is applied before the limit, so `limit` counts matching letters.
        """
        ...

    async def requeue_dead(self, error_type: str | None, now: float) -> int:
        """Move dead letters (optionally only of one error type) back to their queues."""
        ...

    async def get_meta(self, key: str) -> str | None:
        """Read a small value kept with the frontier (e.g. the output log's committed offset)."""
        ...

    async def set_meta(self, key: str, value: str) -> None:
        """Write a small value, committed with the next `flush`."""
        ...

    async def keep_robots(self, robots: KeptRobots, ttl: float) -> None:
        """Keep a robots.txt answer for its URL (replacing an older one) for at least `ttl` seconds."""
        ...

    async def kept_robots(self, url: str) -> KeptRobots | None:
        """The latest robots.txt answer kept for `url`, or None (never kept, or expired on Redis)."""
        ...

    async def flush(self) -> None:
        """Make everything so far durable."""
        ...

    async def close(self) -> None:
        """Flush and release resources."""
        ...
