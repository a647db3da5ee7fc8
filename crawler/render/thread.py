"""A thread with an event loop of its own, where the browser pool and Playwright's messages live.

On a busy crawl the main loop runs dozens of page analyses per turn (≈ 100 ms per turn, p99 ≈ 0.7 s
measured on 2 loaded cores), and every Playwright request/response waits for the next turn: one render
of a few round trips then took 15–20 s and hit its timeout. Here a render waits at most for the GIL's
switch interval (5 ms). Subresource fetches go back to the caller's loop (`back`), where the host slots,
robots.txt cache and HTTP session live, so no crawl state is touched from two threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")
P = ParamSpec("P")
_JOIN_TIMEOUT = 10.0


class LoopThread:
    """`async with LoopThread() as t`: `await t.run(coro)` runs `coro` on the thread's loop."""

    def __init__(self, name: str = "browser-loop") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._caller: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> LoopThread:
        self._caller = asyncio.get_running_loop()
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            ready.set()
            try:
                loop.run_forever()
                # Whatever is still pending (a render cut short by shutdown) is cancelled, not abandoned.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name=self.name, daemon=True)
        self._thread.start()
        await asyncio.to_thread(ready.wait)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, _JOIN_TIMEOUT)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the thread's loop and return its result; cancelling the caller cancels it."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("LoopThread.run called outside 'async with'")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def back(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """`fn`, a coroutine function of the caller's loop, made callable from the thread's loop."""
        caller = self._caller
        if caller is None:
            raise RuntimeError("LoopThread.back called outside 'async with'")

        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            async def on_caller() -> T:
                return await fn(*args, **kwargs)

            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(on_caller(), caller))

        return call
