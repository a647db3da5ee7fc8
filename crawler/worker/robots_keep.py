"""robots.txt answers kept in the frontier store: shared by a cluster's workers, shown by `crawler explain`.

`keeping_robots` wraps the robots.txt fetch (outside the host's gate, like any robots.txt cache): each
answer (a 2xx, 3xx or 4xx other than 429: what RFC 9309 lets a crawler cache) is kept per URL with
`FrontierStore.keep_robots`. With `share`, an answer kept by another worker within `ttl` is used instead
of fetching (one fetch per origin per TTL for the whole cluster). Failures (5xx, 429, network) are never
kept, so the next try goes to the site. Costs one store write per robots.txt fetch, nothing per page.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from crawler.fetch.robots import RobotsFetch, RobotsResponse
from frontier.store import KeptRobots

__all__ = ["RobotsKeeper", "keeping_robots"]

#: Runs one store call (the cluster's Redis retry); the answer passes through.
StoreCall = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


class RobotsKeeper(Protocol):
    """The part of `FrontierStore` this needs."""

    async def keep_robots(self, robots: KeptRobots, ttl: float) -> None: ...

    async def kept_robots(self, url: str) -> KeptRobots | None: ...


async def _direct(op: Callable[[], Awaitable[Any]]) -> Any:
    return await op()


def keeping_robots(
    store: RobotsKeeper,
    ttl: float,
    *,
    share: bool,
    call: StoreCall | None = None,
    clock: Callable[[], float] = time.time,
) -> Callable[[RobotsFetch], RobotsFetch]:
    """Wrap a robots.txt fetch so its answers are kept in `store` (and, with `share`, reused within `ttl`).

    `call` runs each store call (the cluster passes its Redis retry); by default they run directly.
    """
    run: StoreCall = call or _direct

    def wrap(fetch: RobotsFetch) -> RobotsFetch:
        async def kept(url: str) -> RobotsResponse:
            if share:
                found = await run(lambda: store.kept_robots(url))
                if found is not None and found.fetched_at + ttl > clock():
                    return RobotsResponse(status=found.status, body=found.body, location=found.location)
            resp = await fetch(url)
            if resp.status < 500 and resp.status != 429:
                robots = KeptRobots(url, resp.status, resp.location, resp.body, clock())
                await run(lambda: store.keep_robots(robots, ttl))
            return resp

        return kept

    return wrap
