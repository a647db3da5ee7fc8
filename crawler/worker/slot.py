"""One politeness gate per host: every request this process makes to a host passes through it.

Pages, robots.txt, same-host redirect hops, retries and a rendered page's subrequests all enter
`HostSlots.request(host)`. It waits for the host's due time, takes one of the host's `concurrency`
places, and on the way out (always: `try/finally`) records when the request ended. When a host is
due comes from the pure function in `frontier.politeness`; the store keeps the cross-worker truth
(a host is not leased again before the `host_due` this gate reports). Nothing else in the worker
sleeps for politeness.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from crawler.core.config import HostSettings, PolitenessSettings
from crawler.core.errors import LeasesLost
from crawler.core.histogram import Histogram
from frontier.politeness import HostPace, PaceRules, next_due

HOST_MEMORY = 100_000  # hosts whose politeness state one process remembers (most recently used)


class NotDue(Exception):
    """The host is not due before the request's deadline (its lease would expire while it waits)."""

    def __init__(self, due: float) -> None:
        super().__init__(f"host not due before {due:.3f}")
        self.due = due


NO_PACE = HostPace()


@dataclass(slots=True)
class _Host:
    # 0.0 is "long ago" (and JSON-safe: the due time travels in cluster messages, where -inf would not).
    last_start: float = 0.0
    last_end: float = 0.0
    hold: float = 0.0  # no start before this: Retry-After, backoff, an open circuit
    active: int = 0
    waiting: int = 0
    crawl_delay: float | None = None  # robots.txt Crawl-delay, once learned
    pace: HostPace = NO_PACE  # frozen: one shared instance until the host earns a pace of its own
    # Made when first needed and dropped when idle: most of the remembered hosts have neither.
    turn: asyncio.Lock | None = None  # waiters line up: first come, first served
    freed: asyncio.Event | None = None  # set when a request leaves (someone waits for a free place)


class HostSlots:
    """The per-host gates of one crawling process (pages, robots.txt, redirects, render subrequests)."""

    def __init__(
        self,
        settings: Callable[[str], HostSettings],
        politeness: PolitenessSettings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        memory: int = HOST_MEMORY,
        guard: Callable[[], bool] | None = None,
        waits: Histogram | None = None,
    ) -> None:
        self._settings = settings
        self._politeness = politeness
        self._clock = clock
        self._sleep = sleep
        self._memory = memory
        self._hosts: OrderedDict[str, _Host] = OrderedDict()
        # Checked at the last moment before a request starts: False means this worker's leases may be
        # another's now (its heartbeat could have expired while it waited or was paused).
        self._guard = guard
        self.waits = waits  # seconds each request waited here, when metrics are on

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host()
            self._evict()
        else:
            self._hosts.move_to_end(host)
        return state

    def _evict(self) -> None:
        # Forget the least recently used idle hosts; a host with requests running or waiting keeps its
        # state, or a newcomer's fresh state could let a request start too early.
        excess = len(self._hosts) - self._memory
        if excess <= 0:
            return
        for name in list(itertools.islice(self._hosts, excess + 64)):
            state = self._hosts[name]
            if state.active == 0 and state.waiting == 0:
                del self._hosts[name]
                excess -= 1
                if excess <= 0:
                    return

    def rules(self, host: str) -> PaceRules:
        """The host's politeness knobs: configured (or live-overridden) delay plus what robots.txt said."""
        p = self._politeness
        state = self._hosts.get(host)
        return PaceRules(
            self._settings(host).delay,
            state.crawl_delay if state is not None else None,
            p.retry_after_max,
            p.max_backoff_delay,
            p.breaker_failures,
            p.breaker_cooldown,
            p.breaker_max_cooldown,
        )

    def gap(self, host: str) -> float:
        """Seconds between two requests to `host`: delay or Crawl-delay, plus any backoff earned."""
        state = self._hosts.get(host)
        return self.rules(host).base_delay + (state.pace.backoff if state is not None else 0.0)

    def due(self, host: str) -> float:
        """The earliest time the next request to `host` may start (what the store is told)."""
        state = self._hosts.get(host)
        if state is None:
            return self._clock()
        gap = self.gap(host)
        return max(state.last_start + gap, state.last_end + gap, state.hold)

    def crawl_delay(self, host: str) -> float | None:
        """The Crawl-delay learned for `host`, if any."""
        state = self._hosts.get(host)
        return state.crawl_delay if state is not None else None

    def learn_crawl_delay(self, host: str, crawl_delay: float | None) -> bool:
        """Remember robots.txt's Crawl-delay (already clamped); True when it changed."""
        state = self._host(host)
        if state.crawl_delay == crawl_delay:
            return False
        state.crawl_delay = crawl_delay
        return True

    def answered(self, host: str, status: int | None, retry_after: str | None = None) -> float:
        """Apply a page's outcome (status, or None for a network failure) to the host's pace; returns its due time."""
        state = self._host(host)
        due, state.pace = next_due(
            self.rules(host), state.pace, now=self._clock(), status=status, retry_after=retry_after
        )
        state.hold = max(state.hold, due)
        return self.due(host)

    @asynccontextmanager
    async def request(self, host: str, *, until: float | None = None) -> AsyncIterator[None]:
        """Hold the host's gate for one request: enter when due and a place is free; leave when it ended.

        `until`: the request must start by then (its lease expires after it) or `NotDue` is raised,
        without waiting for it, as soon as the host's due time is known to be later.
        """
        state = self._host(host)
        entered = self._clock() if self.waits is not None else 0.0
        state.waiting += 1
        if state.turn is None:
            state.turn = asyncio.Lock()
        try:
            async with state.turn:
                await self._wait_turn(host, state, until)
                if self._guard is not None and not self._guard():
                    raise LeasesLost(f"no request to {host}: this worker's leases may be another's now")
                state.active += 1
                state.last_start = self._clock()
                if self.waits is not None:
                    self.waits.observe(max(0.0, state.last_start - entered))
        finally:
            state.waiting -= 1
            if state.waiting == 0 and state.active == 0:
                state.turn = state.freed = None
        try:
            yield
        finally:
            state.active -= 1
            state.last_end = max(state.last_end, self._clock())
            if state.freed is not None:
                state.freed.set()
            elif state.waiting == 0 and state.active == 0:
                state.turn = None

    async def _wait_turn(self, host: str, state: _Host, until: float | None) -> None:
        while True:
            if state.active >= max(1, self._settings(host).concurrency):
                if state.freed is None:
                    state.freed = asyncio.Event()
                state.freed.clear()
                if until is None:
                    await state.freed.wait()
                else:
                    try:
                        await asyncio.wait_for(state.freed.wait(), max(0.0, until - self._clock()))
                    except TimeoutError:
                        raise NotDue(self.due(host)) from None
                continue
            # Re-read every time round: a Crawl-delay learned or a Retry-After received meanwhile counts.
            due = self.due(host)
            if until is not None and due > until:
                raise NotDue(due)
            wait = due - self._clock()
            if wait <= 0:
                return
            await self._sleep(wait)
