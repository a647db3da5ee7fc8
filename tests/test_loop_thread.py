"""LoopThread: the browser pool's own event loop, reached from the crawl's loop and calling back into it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from crawler.render.thread import LoopThread


async def test_run_happens_on_the_thread_and_back_on_the_caller() -> None:
    main = threading.get_ident()
    seen: dict[str, int] = {}

    async def on_caller(x: int) -> int:
        seen["back"] = threading.get_ident()
        return x * 2

    async with LoopThread() as t:
        back = t.back(on_caller)

        async def on_thread() -> int:
            seen["run"] = threading.get_ident()
            return await back(21)

        assert await t.run(on_thread()) == 42
    assert seen["back"] == main
    assert seen["run"] != main


async def test_exceptions_cross_both_ways() -> None:
    async def fails() -> None:
        raise ValueError("from the caller's loop")

    async with LoopThread() as t:
        back = t.back(fails)

        async def on_thread() -> None:
            await back()

        with pytest.raises(ValueError, match="caller's loop"):
            await t.run(on_thread())


async def test_cancelling_the_caller_cancels_the_work_on_the_thread() -> None:
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with LoopThread() as t:
        task = asyncio.create_task(t.run(slow()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(cancelled.wait, 5)


async def test_a_busy_caller_loop_does_not_slow_the_thread() -> None:
    """The reason it exists: work on the thread's loop advances while the caller's loop is blocked."""

    async def round_trips() -> float:
        started = time.perf_counter()
        for _ in range(20):
            await asyncio.sleep(0.001)
        return time.perf_counter() - started

    async with LoopThread() as t:
        task = asyncio.create_task(t.run(round_trips()))
        await asyncio.sleep(0)  # let the task submit its work
        time.sleep(0.5)  # the caller's loop is busy: CPU-bound page analysis, say
        # Finished on the thread while this loop was blocked (well under the half second it was blocked).
        elapsed = await task
    assert elapsed < 0.4


async def test_exit_stops_the_thread_and_cancels_leftovers() -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.set()

    t = LoopThread(name="test-loop")
    async with t:
        asyncio.run_coroutine_threadsafe(forever(), t._loop)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
    assert cancelled.is_set()
    assert not any(th.name == "test-loop" for th in threading.enumerate())


async def test_run_outside_the_context_is_an_error() -> None:
    t = LoopThread()

    async def nothing() -> None:
        return None

    with pytest.raises(RuntimeError, match="outside"):
        await t.run(nothing())
