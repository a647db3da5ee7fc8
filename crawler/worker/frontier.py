"""What a worker needs of the frontier, written down: `WorkerFrontier`, and its embedded implementation.

A worker claims leases, hands back outcomes with the links it found, releases leases it will not
finish, and checkpoints. The embedded crawl serves this with the store itself (`StoreFrontier`);
the cluster serves it through Redis (`crawler.cluster.remote.RemoteFrontier`), where the frontier
service applies outcomes and judges links, so some answers are not known on the worker: those are
`None` here, never a made-up number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from crawler.core.limits import HostLimits
from crawler.core.urlitem import UrlItem
from frontier.store import AddResult, Counts, FrontierStore, Lease, Outcome


class WorkerFrontier(Protocol):
    """The frontier as one worker sees it; `tests/test_worker.py` and `tests/test_remote.py` pin both sides."""

    async def claim(self, now: float, limit: int) -> list[Lease]:
        """Up to `limit` leases of hosts that are due (at most one per host per call)."""
        ...

    async def finish(self, outcomes: Sequence[Outcome], links: Sequence[UrlItem], now: float) -> AddResult | None:
        """Apply outcomes, then offer the links found; the store's verdicts on the links, or None when
        they are judged elsewhere (the cluster's frontier service counts them). Raises LeasesLost when
        the frontier refused them because this worker's leases were taken away."""
        ...

    async def release(self, leases: Sequence[Lease], now: float) -> None:
        """Hand leases back unfetched."""
        ...

    async def next_due(self, now: float) -> float | None:
        """When a claim could next succeed; None when the crawl has nothing left for this worker."""
        ...

    async def set_host_limits(self, host: str, limits: HostLimits) -> None:
        """The host's limits changed (robots.txt Crawl-delay learned, live override)."""
        ...

    async def checkpoint(self, log_offset: int, stats: dict[str, Any]) -> None:
        """Make everything finished so far durable, with the record log's offset and the counters."""
        ...

    async def counts(self) -> Counts | None:
        """Queue sizes, when this worker can know them cheaply."""
        ...

    def valid(self) -> bool:
        """Whether the leases this worker holds are surely still its own (no request may start otherwise)."""
        ...

    async def rejoin(self) -> None:
        """After the leases were lost (and the worker dropped their work): take part again, afresh."""
        ...


class StoreFrontier:
    """`WorkerFrontier` over a `FrontierStore` in this process (the embedded crawl)."""

    def __init__(self, store: FrontierStore) -> None:
        self.store = store

    async def claim(self, now: float, limit: int) -> list[Lease]:
        """See `WorkerFrontier.claim`."""
        return await self.store.claim(now, limit)

    async def finish(self, outcomes: Sequence[Outcome], links: Sequence[UrlItem], now: float) -> AddResult:
        """Complete, then add the links separately so the store's verdicts reach the counters."""
        await self.store.complete(outcomes, now)
        return await self.store.add(links, now) if links else AddResult()

    async def release(self, leases: Sequence[Lease], now: float) -> None:
        """See `WorkerFrontier.release`."""
        await self.store.release(leases, now)

    async def next_due(self, now: float) -> float | None:
        """The store's next due time (`inf` while every queued host is at its concurrency limit)."""
        return await self.store.next_due(now)

    async def set_host_limits(self, host: str, limits: HostLimits) -> None:
        """See `WorkerFrontier.set_host_limits`."""
        await self.store.set_host_limits(host, limits)

    async def checkpoint(self, log_offset: int, stats: dict[str, Any]) -> None:
        """The log offset and counters commit with the store, so a resume knows which records it owns."""
        await self.store.set_meta("log_offset", str(log_offset))
        await self.store.set_meta("stats", orjson.dumps(stats).decode())
        await self.store.flush()

    async def counts(self) -> Counts:
        """See `WorkerFrontier.counts`."""
        return await self.store.counts()

    def valid(self) -> bool:
        """One process owns the folder: its leases cannot be taken from it."""
        return True

    async def rejoin(self) -> None:
        """Never needed: see `valid`."""
