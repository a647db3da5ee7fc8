"""Frontier store backends for `tests/test_store_contract.py`: one `make_store` param per backend.

A new backend is one more entry in `BACKENDS` and one more branch in `_open`; the contract suite
then runs against it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import pytest
from redis.asyncio import Redis

from frontier.inspect import Inspector
from frontier.redis.inspect import RedisInspector
from frontier.redis.store import RedisStore
from frontier.sqlite.inspect import SqliteInspector
from frontier.sqlite.store import SqliteStore
from frontier.store import FrontierStore, HostLimits, HostLimitsFn

# The Redis backend needs the `redis_server` fixture (a private redis-server for the session).
pytest_plugins = ["redis_server"]

BACKENDS = ["sqlite", "redis"]

DEFAULT_SEEN_TTL = 7 * 86400.0
DEFAULT_LEASE_TTL = 600.0


def default_limits(_host: str) -> HostLimits:
    """One lease at a time, no spacing, no budget."""
    return HostLimits()


class StoreFactory(Protocol):
    """Opens a fresh, empty store of the parametrized backend; closed at test teardown."""

    async def __call__(
        self,
        *,
        host_limits: HostLimitsFn = ...,
        seen_ttl: float = ...,
        lease_ttl: float = ...,
    ) -> FrontierStore: ...


async def _open(
    request: pytest.FixtureRequest, folder: Path, host_limits: HostLimitsFn, seen_ttl: float, lease_ttl: float
) -> FrontierStore:
    backend = request.param
    if backend == "sqlite":
        return await SqliteStore.open(
            folder, host_limits=host_limits, seen_ttl=seen_ttl, lease_ttl=lease_ttl, fresh=True
        )
    if backend == "redis":
        # Requested lazily so sqlite-only runs never start redis-server; a unique job per store
        # keeps tests apart on the session's server.
        server = request.getfixturevalue("redis_server")
        return await RedisStore.open(
            server.url,
            job=f"{request.getfixturevalue('redis_job')}-{folder.name}",
            host_limits=host_limits,
            seen_ttl=seen_ttl,
            lease_ttl=lease_ttl,
            fresh=True,
        )
    raise ValueError(f"unknown store backend {backend!r}")


@pytest.fixture(params=BACKENDS)
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """An async factory of fresh stores, one backend per param."""
    opened: list[FrontierStore] = []

    async def factory(
        *,
        host_limits: HostLimitsFn = default_limits,
        seen_ttl: float = DEFAULT_SEEN_TTL,
        lease_ttl: float = DEFAULT_LEASE_TTL,
    ) -> FrontierStore:
        folder = tmp_path / f"{request.param}-{len(opened)}"
        folder.mkdir()
        store = await _open(request, folder, host_limits, seen_ttl, lease_ttl)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


class InspectorFactory(Protocol):
    """Opens the read-only `Inspector` of a store made by `make_store` (a SQLite store is flushed first:
    a reader sees the last flush); closed at test teardown."""

    async def __call__(self, store: FrontierStore) -> Inspector: ...


@pytest.fixture
async def make_inspector(request: pytest.FixtureRequest) -> AsyncIterator[InspectorFactory]:
    """An async factory of inspectors for stores of either backend."""
    opened: list[Inspector] = []
    clients: list[Redis] = []

    async def factory(store: FrontierStore) -> Inspector:
        inspector: Inspector
        if isinstance(store, SqliteStore):
            await store.flush()
            inspector = SqliteInspector.open(store.path.parent)
        elif isinstance(store, RedisStore):
            client = Redis.from_url(request.getfixturevalue("redis_server").url)
            clients.append(client)
            inspector = RedisInspector(client, store.keys)
        else:
            raise TypeError(f"no inspector for {type(store).__name__}")
        opened.append(inspector)
        return inspector

    yield factory
    for inspector in opened:
        await inspector.close()
    for client in clients:
        await client.aclose()
