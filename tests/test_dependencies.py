"""Guards for what we rely on inside our dependencies, against real loopback servers and a real browser.

Each private attribute or module of a dependency that the product uses has a test here that fails when
a release changes it, so an upgrade through the lock file (scripts/lock.sh) cannot silently bring back
what it was there to prevent (double requests, unchecked framing, a crash taken for a render error).
The last test checks that the installed versions are the locked ones.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path

import aiohttp
import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from crawler.core.errors import CrawlError, ErrorType
from crawler.fetch.http import HttpFetcher
from crawler.fetch.net import AddressPolicy

ROOT = Path(__file__).resolve().parent.parent
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def loopback(handle: Handler) -> AsyncIterator[int]:
    """A raw TCP server on 127.0.0.1 running `handle` per connection; yields its port."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _fetcher() -> HttpFetcher:
    return HttpFetcher(AddressPolicy({"*.test": "127.0.0.1"}), user_agent="deps-test/1.0")


# -- aiohttp: ClientSession._retry_connection ---------------------------------------------------------


@asynccontextmanager
async def hang_up_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server that reads each request and closes the connection without answering; logs request lines."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])

    async with loopback(handle) as port:
        yield port, seen


async def test_aiohttp_resends_a_dropped_get_unless_retry_connection_is_off() -> None:
    # HttpFetcher turns the private flag off; if aiohttp renames it, stops honouring it, or stops
    # resending by default, this fails and the flag's line in crawler/fetch/http.py must be revisited.
    async with hang_up_server() as (port, seen), aiohttp.ClientSession() as session:
        assert "_retry_connection" in type(session).ATTRS, "aiohttp dropped ClientSession._retry_connection"
        assert session._retry_connection is True
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.get(f"http://127.0.0.1:{port}/default")
        assert seen == [b"GET /default HTTP/1.1"] * 2, "aiohttp's default resend behaviour changed"

        seen.clear()
        session._retry_connection = False
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.get(f"http://127.0.0.1:{port}/off")
        assert seen == [b"GET /off HTTP/1.1"]


async def test_http_fetcher_sends_a_dropped_get_once() -> None:
    async with hang_up_server() as (port, seen), _fetcher() as fetcher:
        for _ in range(2):  # a fresh connection, then (had it been kept) a pooled one
            with pytest.raises(CrawlError) as info:
                await fetcher.fetch(f"http://drop.test:{port}/")
            assert info.value.type is ErrorType.CONNECTION
    assert seen == [b"GET / HTTP/1.1"] * 2


# -- aiohttp: ClientResponse._protocol ------------------------------------------------------------------


def _replying(data: bytes, *, linger: float = 0.3) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(linger)  # keep the connection open: the client reads framing, not EOF

    return handle


SMALL = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
SMUGGLED = SMALL + b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"


async def test_aiohttp_response_protocol_keeps_the_peer_after_the_connection_is_released() -> None:
    # http.py reads the peer address from `resp._protocol.transport`: for a small body aiohttp has
    # already released `resp.connection` (the public route) by the time the caller sees the response.
    async with (
        loopback(_replying(SMALL)) as port,
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/") as resp,
    ):
        assert await resp.read() == b"hello"
        assert resp.connection is None  # why the public attribute is not enough
        protocol = resp._protocol
        assert protocol is not None, "aiohttp dropped ClientResponse._protocol"
        assert protocol.transport is not None
        assert protocol.transport.get_extra_info("peername")[0] == "127.0.0.1"
        assert len(protocol) == 0


async def test_aiohttp_response_protocol_counts_a_response_parsed_past_the_declared_body() -> None:
    # http.py treats `len(resp._protocol) > 0` after the body as "the server sent more than its
    # Content-Length and the excess parsed as another response".
    async with (
        loopback(_replying(SMUGGLED)) as port,
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/") as resp,
    ):
        assert await resp.read() == b"hello"
        await asyncio.sleep(0.05)
        assert len(resp._protocol) == 1, "aiohttp's ResponseHandler no longer queues parsed responses"


async def test_http_fetcher_reports_the_peer_and_refuses_a_smuggled_response() -> None:
    async with loopback(_replying(SMALL)) as port, _fetcher() as fetcher:
        resp = await fetcher.fetch(f"http://peer.test:{port}/")
    assert resp.body == b"hello" and resp.ip == "127.0.0.1"
    async with loopback(_replying(SMUGGLED)) as port, _fetcher() as fetcher:
        with pytest.raises(CrawlError) as info:
            await fetcher.fetch(f"http://smuggle.test:{port}/")
    assert info.value.type is ErrorType.CONNECTION and "longer than Content-Length" in str(info.value)


# -- playwright: playwright._impl._errors.TargetClosedError ---------------------------------------------


def _browser() -> str:
    from crawler.render.find import find_browser

    path = find_browser()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no Chromium installed")
        pytest.skip("no Chromium installed (apt-get install chromium); CI=true fails instead")
    return path


async def test_playwright_target_closed_error_is_where_the_pool_imports_it() -> None:
    # crawler/render/pool.py tells a dead target (worth a retry) from a failed render by this class,
    # which playwright.async_api does not export.
    import playwright.async_api as public
    from playwright._impl._errors import TargetClosedError
    from playwright.async_api import Error, async_playwright

    assert issubclass(TargetClosedError, Error)
    exported = getattr(public, "TargetClosedError", None)
    assert exported is None, "playwright now exports TargetClosedError: import it from playwright.async_api"

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_browser(), args=["--no-sandbox"])
        try:
            context = await browser.new_context()
            page = await context.new_page()
            pending = asyncio.ensure_future(page.evaluate("new Promise(() => {})"))
            await asyncio.sleep(0.2)
            await context.close()
            with pytest.raises(TargetClosedError):
                await pending
            page = await (await browser.new_context()).new_page()
            pending = asyncio.ensure_future(page.evaluate("new Promise(() => {})"))
            await asyncio.sleep(0.2)
        finally:
            await browser.close()
        with pytest.raises(TargetClosedError):
            await pending


# -- the lock files -------------------------------------------------------------------------------------


def _locked(name: str) -> dict[str, str]:
    """Package (canonical name) -> pinned version for this interpreter, from a lock file at the repo root."""
    pins: dict[str, str] = {}
    for line in (ROOT / name).read_text().splitlines():
        if not line[:1].isalnum():  # comments, hashes and continuation lines
            continue
        spec, _, marker = line.rstrip(" \\").partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        pkg, _, version = spec.strip().partition("==")
        pins[canonicalize_name(pkg)] = version
    return pins


def _direct() -> list[Requirement]:
    """The dependencies pyproject.toml names: the runtime ones and the `test` extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def test_installed_direct_dependencies_are_the_locked_versions() -> None:
    # A drifted environment (a hand-installed upgrade, an old venv) would test something other than
    # what install.sh and the Docker image install. scripts/install.sh --test puts it right.
    pins = _locked("requirements-test.lock")
    drift = {}
    for req in _direct():
        name = canonicalize_name(req.name)
        installed = metadata.version(name)
        if pins.get(name) != installed:
            drift[name] = (installed, pins.get(name))
    assert not drift, f"installed != locked (installed, locked): {drift}; run scripts/install.sh --test"


def test_locks_agree_with_pyproject_and_with_each_other() -> None:
    test_pins, runtime_pins = _locked("requirements-test.lock"), _locked("requirements.lock")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    for req in _direct():
        name = canonicalize_name(req.name)
        assert name in test_pins, f"{name} is missing from requirements-test.lock: run scripts/lock.sh"
        assert req.specifier.contains(test_pins[name], prereleases=True), f"{name}=={test_pins[name]} vs {req}"
        if name in runtime:
            assert name in runtime_pins, f"{name} is missing from requirements.lock: run scripts/lock.sh"
    # The runtime lock is resolved under the test lock's pins (scripts/lock.sh), so shared packages match.
    assert {k: v for k, v in runtime_pins.items() if test_pins.get(k) != v} == {}
