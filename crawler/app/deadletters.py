"""`crawler dead-letters`: inspect and requeue URLs that used up their attempts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from crawler.app.embedded import folder_lock, has_state
from crawler.core.errors import ConfigError
from frontier.sqlite.store import SqliteStore
from frontier.store import DeadLetter, FrontierStore, HostLimits


def describe(dead: DeadLetter) -> dict[str, Any]:
    """A dead letter as one JSON-ready object."""
    return {
        "url": dead.item.url,
        "host": dead.item.host,
        "depth": dead.item.depth,
        "attempts": dead.item.attempts,
        "error": dead.error,
        "died_at": dead.died_at,
    }


async def list_dead(store: FrontierStore, limit: int, error_type: str | None) -> list[dict[str, Any]]:
    """Dead letters (optionally of one error type), oldest first: the first `limit` of that type."""
    # The store filters before it limits: filtering here would drop matches beyond the first `limit`.
    return [describe(d) for d in await store.dead_letters(limit, error_type)]


async def requeue(store: FrontierStore, error_type: str | None) -> int:
    """Put dead letters back in their host queues with fresh attempts; returns how many."""
    n = await store.requeue_dead(error_type, time.time())
    await store.flush()
    return n


async def with_embedded_store(out: Path, action: str, error_type: str | None, limit: int) -> Any:
    """Run a dead-letter action on the embedded store of an output folder."""
    if not has_state(out):
        raise ConfigError(f"{out} holds no crawl state (no frontier database)")
    with folder_lock(out):
        async with await SqliteStore.open(out, host_limits=lambda _host: HostLimits()) as store:
            if action == "list":
                return await list_dead(store, limit, error_type)
            return await requeue(store, error_type)
