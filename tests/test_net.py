"""AddressPolicy and GuardedResolver: refused address forms, --resolve mappings, and no connection leaks."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from crawler.core.errors import ConfigError, CrawlError, ErrorType
from crawler.fetch.http import HttpFetcher
from crawler.fetch.net import AddressPolicy, AddressRefusedError, GuardedResolver, refusal_reason

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",
    "100.127.255.254",
    "169.254.169.254",
    "169.254.0.1",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",
    "192.0.0.8",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:100.64.0.1",
    "::ffff:224.0.0.1",
    "::ffff:0.0.0.0",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::c0a8:101",
    "64:ff9b:1::1",
    "2002:7f00:1::1",
    "2002:a00:1::",
    "2002:a9fe:a9fe::1",
    "::127.0.0.1",
    "2001::1",
    "not-an-ip",
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
    "192.0.0.9",
]


@pytest.mark.parametrize("ip", REFUSED)
def test_refused_address_forms(ip: str) -> None:
    policy = AddressPolicy()
    assert refusal_reason(ip) is not None
    with pytest.raises(CrawlError) as info:
        policy.check_address(ip, "example.com")
    assert info.value.type is ErrorType.PRIVATE_ADDRESS
    assert ip in info.value.message


@pytest.mark.parametrize("ip", ALLOWED)
def test_public_addresses_pass(ip: str) -> None:
    assert refusal_reason(ip) is None
    AddressPolicy().check_address(ip, "example.com")


def test_mapped_host_and_allow_private_bypass_the_check() -> None:
    policy = AddressPolicy({"intranet.test": "10.1.2.3"})
    policy.check_address("127.0.0.1", "intranet.test")
    with pytest.raises(CrawlError):
        policy.check_address("127.0.0.1", "other.test")
    AddressPolicy(allow_private=True).check_address("169.254.169.254", "metadata.example")


def test_wildcard_matching_rules() -> None:
    mapping = {"*.test": "127.0.0.1", "*.deep.test": "127.0.0.2", "exact.deep.test": "127.0.0.3"}
    policy = AddressPolicy({**mapping, "Upper.Example": "::1"})
    assert policy.override("a.test") == "127.0.0.1"
    assert policy.override("x.a.test") == "127.0.0.1"
    assert policy.override("A.TEST.") == "127.0.0.1"
    assert policy.override("test") is None
    assert policy.override("atest") is None
    assert policy.override("a.test.com") is None
    assert policy.override("x.deep.test") == "127.0.0.2"
    assert policy.override("deep.test") == "127.0.0.1"  # the bare suffix is not matched by *.deep.test
    assert policy.override("exact.deep.test") == "127.0.0.3"
    assert policy.override("upper.example") == "::1"
    assert policy.override("x.upper.example") is None
    # Cached answers stay right on repeat.
    assert policy.override("x.a.test") == "127.0.0.1"
    assert policy.override("test") is None
    assert AddressPolicy().override("a.test") is None


@pytest.mark.parametrize(
    "mapping", [{"a.test": "not-an-ip"}, {"*.": "127.0.0.1"}, {"a.*.test": "127.0.0.1"}, {"": "127.0.0.1"}]
)
def test_bad_mappings_are_config_errors(mapping: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        AddressPolicy(mapping)


async def test_resolver_returns_mapping_without_dns() -> None:
    resolver = GuardedResolver(AddressPolicy({"*.nowhere.invalid": "127.0.0.1", "v6.invalid": "::1"}))
    # `.invalid` never resolves, so an answer proves DNS was not consulted.
    res = await resolver.resolve("www.nowhere.invalid", 8080, socket.AF_INET)
    assert [(r["host"], r["port"], r["family"]) for r in res] == [("127.0.0.1", 8080, socket.AF_INET)]
    res6 = await resolver.resolve("v6.invalid", 80)
    assert res6[0]["host"] == "::1" and res6[0]["family"] == socket.AF_INET6
    await resolver.close()


async def test_resolver_refuses_loopback_answers_unless_allowed() -> None:
    resolver = GuardedResolver(AddressPolicy())
    with pytest.raises(AddressRefusedError) as info:
        await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
    assert isinstance(info.value, OSError)
    assert info.value.error.type is ErrorType.PRIVATE_ADDRESS
    permissive = GuardedResolver(AddressPolicy(allow_private=True))
    res = await permissive.resolve("localhost", 80, socket.AF_INET)
    assert res and res[0]["host"] == "127.0.0.1"


async def test_resolver_dns_failure_stays_a_dns_error() -> None:
    with pytest.raises(OSError) as info:
        await GuardedResolver(AddressPolicy()).resolve("no-such-host.invalid", 80)
    assert not isinstance(info.value, AddressRefusedError)


@asynccontextmanager
async def counting_server() -> AsyncIterator[tuple[int, list[int]]]:
    """A loopback HTTP server answering 200 and counting the connections it accepted."""
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()
        await server.wait_closed()


async def test_unmapped_name_resolving_to_loopback_never_connects() -> None:
    async with counting_server() as (port, accepted):
        async with HttpFetcher(AddressPolicy(), user_agent="test-bot") as fetcher:
            for url in (
                f"http://localhost:{port}/",
                f"http://127.0.0.1:{port}/",
                f"http://[::ffff:7f00:1]:{port}/",
            ):
                with pytest.raises(CrawlError) as info:
                    await fetcher.fetch(url)
                assert info.value.type is ErrorType.PRIVATE_ADDRESS, url
        assert accepted == []
        # The same server is reachable once the name is mapped, so the empty count above is meaningful.
        async with HttpFetcher(AddressPolicy({"localhost": "127.0.0.1"}), user_agent="test-bot") as fetcher:
            resp = await fetcher.fetch(f"http://localhost:{port}/")
        assert resp.status == 200 and resp.body == b"ok"
        assert accepted == [1]
        async with HttpFetcher(AddressPolicy(allow_private=True), user_agent="test-bot") as fetcher:
            resp = await fetcher.fetch(f"http://127.0.0.1:{port}/")
        assert resp.status == 200
        assert accepted == [1, 1]


def test_blocked_ports_refused_before_connecting() -> None:
    """The Fetch standard's bad ports raise BAD_PORT; a domain's allowance lifts exactly its ports."""
    policy = AddressPolicy(allowed_ports=lambda host: (25,) if host.startswith("mail.test") else ())
    for host in ("a.test:25", "a.test:6000", "a.test:10080", "::1:110", "a.test:0"):
        with pytest.raises(CrawlError) as info:
            policy.check_port(host)
        assert info.value.type is ErrorType.BAD_PORT and "refused before connecting" in info.value.message
    for host in ("a.test", "a.test:8080", "[::1]", "mail.test:25"):
        policy.check_port(host)
    with pytest.raises(CrawlError):
        policy.check_port("mail.test:110")


async def test_fetcher_refuses_blocked_port_without_connecting() -> None:
    """Even a direct fetch (robots.txt, redirects, subresources) of a bad port is refused before connecting:
    the error is BAD_PORT, not the connection_error an attempt on loopback:25 would give."""
    async with HttpFetcher(AddressPolicy({"a.test": "127.0.0.1"}), user_agent="t") as http:
        for url in ("http://a.test:25/robots.txt", "http://127.0.0.1:6000/", "https://a.test:993/"):
            with pytest.raises(CrawlError) as info:
                await http.fetch(url)
            assert info.value.type is ErrorType.BAD_PORT, info.value
