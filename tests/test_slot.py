"""HostSlots, the one per-host politeness gate, driven by virtual time (no wall-clock waits).

`VirtualTime` is both the gate's clock and its `sleep`: a sleeper parks until `run` moves the clock to
its wake-up time. Time only moves when every task is parked, one wake-up at a time (earliest first, ties
in the order they were set), so each schedule below is exact and the same on every run. Request bodies
"take" time with the same `sleep`. Every duration is a binary fraction, so equality is exact.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from crawler.core.config import HostSettings, PolitenessSettings
from crawler.worker.slot import HostSlots, NotDue

T0 = 1000.0
HOST = "a.test"


class VirtualTime:
    """A fake clock whose `sleep` advances it: callable for the time, `sleep` to wait, `run` to drive."""

    def __init__(self, start: float = T0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Park until the clock reads now + seconds."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(seconds, 0.0), next(self._seq), fut))
        await fut

    async def run(self, *coros: Awaitable[Any]) -> list[Any]:
        """Run `coros` to completion, advancing the clock to the next wake-up whenever all are parked."""
        tasks = [asyncio.ensure_future(c) for c in coros]
        while True:
            await _settle()
            if all(t.done() for t in tasks):
                return [t.result() for t in tasks]
            while self._timers and self._timers[0][2].done():  # a cancelled sleeper
                heapq.heappop(self._timers)
            if not self._timers:
                for t in tasks:
                    t.cancel()
                raise AssertionError("deadlock: tasks wait, but nobody sleeps")
            when, _, fut = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            fut.set_result(None)


async def _settle() -> None:
    """Let every runnable task run until it parks (no I/O here: a bounded number of loop turns suffices)."""
    for _ in range(50):
        await asyncio.sleep(0)


def host_settings(delay: float = 0.5, concurrency: int = 1) -> HostSettings:
    """Effective settings of a host with this delay and concurrency."""
    return HostSettings(delay=delay, concurrency=concurrency, max_pages=None, max_depth=10)


def make_slots(
    vt: VirtualTime,
    settings: Callable[[str], HostSettings] | None = None,
    *,
    memory: int = 100_000,
    politeness: PolitenessSettings | None = None,
) -> HostSlots:
    """HostSlots on virtual time (default: every host delay 0.5, concurrency 1)."""
    fixed = host_settings()
    return HostSlots(
        settings or (lambda _host: fixed),
        politeness or PolitenessSettings(),
        clock=vt,
        sleep=vt.sleep,
        memory=memory,
    )


class Trace:
    """What happened inside the gate: (name, start, end) per request, and the peak number inside."""

    def __init__(self, vt: VirtualTime, slots: HostSlots) -> None:
        self.vt = vt
        self.slots = slots
        self.spans: dict[str, tuple[float, float]] = {}
        self.order: list[str] = []
        self.inside = 0
        self.peak = 0

    async def request(self, name: str, host: str = HOST, *, duration: float = 0.0, after: float = 0.0) -> None:
        """Arrive `after` seconds from now, hold the host's gate for `duration` seconds."""
        if after:
            await self.vt.sleep(after)
        async with self.slots.request(host):
            start = self.vt()
            self.order.append(name)
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            try:
                if duration:
                    await self.vt.sleep(duration)
            finally:
                self.inside -= 1
        self.spans[name] = (start, self.vt())

    def starts(self, *names: str) -> list[float]:
        return [self.spans[n][0] for n in names]


async def test_concurrency_one_spaces_starts_by_delay() -> None:
    """Three requests entering at once start exactly `delay` (0.5) apart, in turn, one at a time."""
    vt = VirtualTime()
    trace = Trace(vt, make_slots(vt))
    await vt.run(trace.request("a"), trace.request("b"), trace.request("c"))
    assert trace.starts("a", "b", "c") == [T0, T0 + 0.5, T0 + 1.0]
    assert trace.peak == 1


async def test_gap_is_measured_from_the_end_of_the_previous_request() -> None:
    """With requests lasting 0.25 s, each start is 0.5 s after the previous END (0.75 s apart), not after its start."""
    vt = VirtualTime()
    slots = make_slots(vt)
    trace = Trace(vt, slots)
    await vt.run(*(trace.request(n, duration=0.25) for n in "abc"))
    assert trace.starts("a", "b", "c") == [T0, T0 + 0.75, T0 + 1.5]
    for prev, nxt in itertools.pairwise("abc"):
        assert trace.spans[nxt][0] - trace.spans[prev][1] == 0.5
    # What the store is told: the next start is due 0.5 after the last end.
    assert slots.due(HOST) == trace.spans["c"][1] + 0.5


async def test_concurrency_two_spaces_starts_and_caps_places() -> None:
    """Concurrency 2: the second request starts 0.5 s after the first while it still runs; a third waits
    for a free place and then for 0.5 s after the latest end (re-checked when another request ends)."""
    vt = VirtualTime()
    trace = Trace(vt, make_slots(vt, lambda _h: host_settings(0.5, 2)))
    await vt.run(
        trace.request("a", duration=1.0),
        trace.request("b", duration=0.25),
        trace.request("c", duration=1.0),
        trace.request("d", duration=0.25),
    )
    # a: 1000-1001; b: 1000.5-1000.75 (overlaps a); c: a place frees at 1000.75, due 1001.25 by b's end,
    # but a ends at 1001.0 meanwhile, so c starts at 1001.5; d: 0.5 after c started, alongside c.
    assert trace.starts("a", "b", "c", "d") == [T0, T0 + 0.5, T0 + 1.5, T0 + 2.0]
    assert trace.peak == 2
    starts = sorted(trace.starts("a", "b", "c", "d"))
    assert all(b - a >= 0.5 for a, b in itertools.pairwise(starts))


async def test_concurrency_two_never_has_three_inside() -> None:
    """Six long requests under concurrency 2: never more than two inside, starts never closer than 0.5 s."""
    vt = VirtualTime()
    trace = Trace(vt, make_slots(vt, lambda _h: host_settings(0.5, 2)))
    await vt.run(*(trace.request(str(i), duration=3.0) for i in range(6)))
    assert trace.peak == 2
    starts = sorted(s for s, _ in trace.spans.values())
    assert starts[:2] == [T0, T0 + 0.5]
    assert all(b - a >= 0.5 for a, b in itertools.pairwise(starts))
    # At every start, at most one other request is running.
    for name, (start, _) in trace.spans.items():
        others = [n for n, (s, e) in trace.spans.items() if n != name and s <= start < e]
        assert len(others) <= 1, (name, others)


async def test_crawl_delay_learned_while_waiting_counts() -> None:
    """A Crawl-delay of 2 s learned while a request sleeps for its turn moves that request to 2 s after the last end."""
    vt = VirtualTime()
    slots = make_slots(vt)
    trace = Trace(vt, slots)

    async def learn() -> None:
        await vt.sleep(0.25)  # b is asleep until 1000.5 by now
        assert slots.learn_crawl_delay(HOST, 2.0) is True
        assert slots.learn_crawl_delay(HOST, 2.0) is False  # unchanged

    await vt.run(trace.request("a"), trace.request("b"), learn(), trace.request("c"))
    assert trace.starts("a", "b", "c") == [T0, T0 + 2.0, T0 + 4.0]
    assert slots.crawl_delay(HOST) == 2.0
    assert slots.gap(HOST) == 2.0
    assert slots.rules(HOST).crawl_delay == 2.0


async def test_retry_after_holds_the_host() -> None:
    """429 with Retry-After: 10 holds the host: `due` reports now + 10 and the next request starts exactly then."""
    vt = VirtualTime()
    slots = make_slots(vt)
    trace = Trace(vt, slots)
    await vt.run(trace.request("a"))
    assert slots.answered(HOST, 429, "10") == T0 + 10.0
    assert slots.due(HOST) == T0 + 10.0
    await vt.run(trace.request("b"))
    assert trace.starts("b") == [T0 + 10.0]


async def test_503_without_retry_after_backs_off_and_good_answers_relax() -> None:
    """503s without Retry-After double the gap (0.5 → 1 → 2 s); each good answer then shrinks it by a quarter
    of the backoff; the starts of real requests follow the same gaps."""
    vt = VirtualTime()
    slots = make_slots(vt)
    trace = Trace(vt, slots)
    gaps = []
    answers = [503, 503, 200, 200]
    for i, status in enumerate(answers):
        await vt.run(trace.request(str(i)))
        slots.answered(HOST, status)
        gaps.append(slots.gap(HOST))
    await vt.run(trace.request("last"))
    assert gaps == [1.0, 2.0, 0.5 + 1.125, 0.5 + 0.84375]
    starts = trace.starts("0", "1", "2", "3", "last")
    assert [b - a for a, b in itertools.pairwise(starts)] == gaps
    # A good answer also relaxes the due time it returns.
    assert slots.due(HOST) == starts[-1] + gaps[-1]


async def test_exception_inside_request_frees_the_place_and_records_the_end() -> None:
    """A request that raises after 0.25 s still frees its place: the waiter enters 0.5 s after that end."""
    vt = VirtualTime()
    slots = make_slots(vt)
    trace = Trace(vt, slots)

    async def failing() -> None:
        with pytest.raises(RuntimeError, match="boom"):
            async with slots.request(HOST):
                await vt.sleep(0.25)
                raise RuntimeError("boom")

    await vt.run(failing(), trace.request("b"))
    assert trace.starts("b") == [T0 + 0.75]
    assert slots.due(HOST) == T0 + 0.75 + 0.5


async def test_a_cancelled_waiter_does_not_block_the_line() -> None:
    """A waiter cancelled while it sleeps for its turn leaves the line; the one behind it enters on time."""
    vt = VirtualTime()
    slots = make_slots(vt)
    trace = Trace(vt, slots)
    waiters: list[asyncio.Future[None]] = []

    async def cancel() -> None:
        waiters.append(asyncio.ensure_future(trace.request("cancelled")))  # first in line after a
        await vt.sleep(0.25)
        waiters[0].cancel()

    await vt.run(trace.request("a"), cancel(), trace.request("c", after=0.125))
    assert waiters[0].cancelled()
    assert trace.order == ["a", "c"]
    assert trace.starts("a", "c") == [T0, T0 + 0.5]


async def test_waiters_enter_in_arrival_order() -> None:
    """FIFO: waiters arriving in a scrambled task order enter in the order they arrived."""
    vt = VirtualTime()
    trace = Trace(vt, make_slots(vt))
    arrival = {"e": 0.0, "c": 0.0625, "a": 0.125, "d": 0.1875, "b": 0.25}
    await vt.run(*(trace.request(n, after=arrival[n], duration=0.125) for n in "abcde"))
    assert trace.order == sorted(arrival, key=arrival.__getitem__)
    starts = trace.starts(*trace.order)
    assert all(b - a == 0.625 for a, b in itertools.pairwise(starts))


async def test_two_hosts_do_not_block_each_other() -> None:
    """A slow host (delay 5 s, a request lasting 3 s) does not delay another host's requests (delay 0.5 s)."""
    vt = VirtualTime()
    per_host = {"slow.test": host_settings(5.0), "fast.test": host_settings(0.5)}
    trace = Trace(vt, make_slots(vt, per_host.__getitem__))
    await vt.run(
        trace.request("slow1", "slow.test", duration=3.0),
        trace.request("slow2", "slow.test"),
        trace.request("fast1", "fast.test"),
        trace.request("fast2", "fast.test"),
        trace.request("fast3", "fast.test"),
    )
    assert trace.starts("fast1", "fast2", "fast3") == [T0, T0 + 0.5, T0 + 1.0]
    assert trace.starts("slow1", "slow2") == [T0, T0 + 3.0 + 5.0]


async def test_memory_forgets_idle_hosts_but_never_one_in_flight() -> None:
    """memory=3: idle hosts are forgotten (least recently used first); a host with a request in flight and
    one waiting keeps its state while 10 others pass, so its waiter is still spaced by the learned delay."""
    vt = VirtualTime()
    slots = make_slots(vt, memory=3)
    others = [f"h{i}.test" for i in range(10)]
    for h in others[:4]:
        slots.learn_crawl_delay(h, 7.0)
    remembered = [h for h in others[:4] if slots.crawl_delay(h) is not None]
    assert remembered == others[1:4]  # h0, least recently used, was forgotten
    assert slots.due(others[0]) == vt()  # a forgotten host is simply due

    busy = "busy.test"
    release = asyncio.Event()
    trace = Trace(vt, slots)

    async def in_flight() -> None:
        async with slots.request(busy):
            slots.learn_crawl_delay(busy, 3.0)
            await release.wait()
            await vt.sleep(1.0)

    async def crowd() -> None:
        await vt.sleep(0.5)  # busy is inside, its waiter is waiting
        for h in others:
            slots.learn_crawl_delay(h, 7.0)
        assert slots.crawl_delay(busy) == 3.0  # never evicted while in flight
        assert sum(slots.crawl_delay(h) is not None for h in others) == 2  # 3 places, one held by busy
        release.set()

    await vt.run(in_flight(), trace.request("waiter", busy), crowd())
    # busy ended at 1001.5; its waiter kept the learned Crawl-delay of 3 s.
    assert trace.starts("waiter") == [T0 + 1.5 + 3.0]
    # Idle now: three more hosts push it out.
    for h in ("x.test", "y.test", "z.test"):
        slots.learn_crawl_delay(h, 1.0)
    assert slots.crawl_delay(busy) is None


async def test_settings_are_read_live_on_each_entry() -> None:
    """The `settings` callable is consulted on every entry: raising the delay from 0.5 to 2 s (and the
    concurrency from 1 to 2) mid-crawl changes the very next start."""
    vt = VirtualTime()
    current = {"s": host_settings(0.5, 1)}
    calls: list[str] = []

    def settings(host: str) -> HostSettings:
        calls.append(host)
        return current["s"]

    slots = make_slots(vt, settings)
    trace = Trace(vt, slots)
    await vt.run(trace.request("a"), trace.request("b"))
    assert trace.starts("a", "b") == [T0, T0 + 0.5]
    before = len(calls)
    current["s"] = host_settings(2.0, 1)
    await vt.run(trace.request("c"))
    assert len(calls) > before
    assert trace.starts("c") == [T0 + 2.5]
    # Concurrency raised live: two requests now overlap.
    current["s"] = host_settings(0.5, 2)
    await vt.run(trace.request("d", duration=2.0), trace.request("e", duration=2.0))
    assert trace.starts("d", "e") == [T0 + 3.0, T0 + 3.5]
    assert trace.peak == 2


async def test_a_request_that_must_start_before_the_host_is_due_is_refused_at_once() -> None:
    """`until` (a lease's expiry): a host held past it raises NotDue without waiting; one due in time waits."""
    vt = VirtualTime()
    slots = make_slots(vt)
    slots.answered(HOST, 429, "10")  # held until T0 + 10

    async def early() -> float:
        with pytest.raises(NotDue) as info:
            async with slots.request(HOST, until=T0 + 5):
                raise AssertionError("entered a held host")
        return info.value.due

    async def in_time() -> float:
        async with slots.request(HOST, until=T0 + 20):
            return vt()

    due, started = await vt.run(early(), in_time())
    assert due == T0 + 10
    assert started == T0 + 10
    assert slots._hosts[HOST].waiting == 0  # the refused one left no trace


async def test_waiting_for_a_free_place_is_bounded_by_until_too() -> None:
    """Concurrency full: a request with a deadline gives up at it, naming the host's due time."""
    slots = HostSlots(lambda h: host_settings(0.0, 1), PolitenessSettings())
    release = asyncio.Event()

    async def long_request() -> None:
        async with slots.request(HOST):
            await release.wait()

    holder = asyncio.create_task(long_request())
    await asyncio.sleep(0)
    with pytest.raises(NotDue):
        async with slots.request(HOST, until=time.time() + 0.05):
            raise AssertionError("entered a full host")
    release.set()
    await holder
    async with slots.request(HOST, until=time.time() + 1.0):
        pass


async def test_paused_lists_hosts_whose_breaker_is_open_until_it_closes() -> None:
    """`paused` (what `crawler explain` shows) names each host with an open circuit and when it closes."""
    vt = VirtualTime()
    slots = make_slots(vt, politeness=PolitenessSettings(breaker_failures=2, breaker_cooldown=60.0))
    slots.answered("a.test", 500)
    slots.answered("b.test", 503)
    assert slots.paused() == []  # one failure each: still closed
    slots.answered("a.test", None)
    assert slots.paused() == [("a.test", 2, T0 + 60.0)]
    vt.now = T0 + 60.0
    assert slots.paused() == []  # the cooldown is over
    slots.answered("a.test", 500)
    assert slots.paused() == [("a.test", 3, T0 + 60.0 + 120.0)]  # doubled while failures go on
    slots.answered("a.test", 200)
    assert slots.paused() == []  # a success closes it
