"""A read-only view of a frontier store: what it holds about one URL and one host (`crawler explain`).

An `Inspector` never changes the store and never takes it over: it works while a crawl runs (SQLite:
a read-only WAL connection that sees the last flush; Redis: plain reads) and after it ended. Each
backend has one (`frontier.sqlite.inspect`, `frontier.redis.inspect`); `tests/test_store_contract.py`
checks both against the same store steps.

"Ahead" is queue order: the URLs of the same host, not leased, with a smaller queue position (retries
keep their place, so a retry waiting for its time counts too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from crawler.core.urlitem import UrlItem
from frontier.store import KeptRobots

__all__ = ["HostState", "Inspector", "UrlPlace", "UrlState"]

UrlPlace = Literal["queued", "leased", "dead"]


@dataclass(slots=True, frozen=True)
class UrlState:
    """The store's facts about one URL; `place` None means it is in no queue (done, or never queued)."""

    url: str
    seen_at: float | None = None  # when `add` (or a fetch's redirect) last marked it seen
    place: UrlPlace | None = None
    item: UrlItem | None = None  # host, depth and attempts so far (queued, leased or dead)
    not_before: float = 0.0  # queued: not claimed before this (a retry's time; 0 = at once)
    ahead: int = 0  # queued: URLs of its host before it in queue order
    lease_expires: float | None = None  # leased: when the lease is handed out again if unanswered
    error: dict[str, str] | None = None  # dead: the last error
    died_at: float | None = None  # dead: when it went to the dead letters


@dataclass(slots=True, frozen=True)
class HostState:
    """One host's scheduling state as the store keeps it."""

    host: str
    due_at: float | None  # when a URL of the host can next be claimed; None: nothing claimable (see below)
    polite_at: float  # politeness alone: the claim spacing and the last outcome's host_due
    spacing: float  # seconds between claims (the delay, or robots.txt Crawl-delay when larger)
    concurrency: int
    inflight: int  # leases out now (at `concurrency`, the host waits for one to end: `due_at` None)
    queued: int  # URLs not leased, retries waiting for their time included
    budget: int | None
    admitted: int  # URLs ever queued for the host (what the budget counts)


class Inspector(Protocol):
    """Read-only questions to one store; see the module docstring."""

    async def url_state(self, url: str, host: str) -> UrlState:
        """What the store holds about the normalized `url` of politeness key `host`."""
        ...

    async def host_state(self, host: str) -> HostState | None:
        """The host's scheduling state, None when the store has never seen the host."""
        ...

    async def kept_robots(self, url: str) -> KeptRobots | None:
        """The latest robots.txt answer kept for `url` (see `FrontierStore.keep_robots`)."""
        ...

    async def get_meta(self, key: str) -> str | None:
        """A value written with `FrontierStore.set_meta`."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...
