"""HttpFetcher against real loopback servers: decoding, caps, bombs, truncation, timeouts, error mapping."""

from __future__ import annotations

import asyncio
import gzip
import resource
import socket
import subprocess
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import brotli
import pytest
from aiohttp import web

from crawler.core.errors import CrawlError, ErrorType
from crawler.fetch.http import HttpFetcher, Response
from crawler.fetch.net import AddressPolicy
from tests.testweb import Page, Site, TestWeb, brotli_bomb, drip, gzip_bomb, silence_after_headers

TEXT = (
    "<html><body>" + "".join(f"<p>paragraph {i} of the test page</p>" for i in range(300)) + "</body></html>"
).encode()
MIB = 2**20


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


async def _set_cookie(request: web.Request) -> web.StreamResponse:
    resp = web.Response(text="cookie set", content_type="text/html")
    resp.set_cookie("session", "s3cret")
    return resp


async def _chunked_big(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(64):
        await resp.write(b"x" * 65536)
    await resp.write_eof()
    return resp


def _encoded(body: bytes, encoding: str) -> Page:
    return Page(body, headers={"Content-Type": "text/html; charset=ISO-8859-1", "Content-Encoding": encoding})


SITES = {
    "a.test": Site(
        {
            "/": Page(TEXT, headers={"Content-Type": 'Text/HTML; Charset="UTF-8"', "X-Two": "first"}),
            "/gzip": _encoded(gzip.compress(TEXT), "gzip"),
            "/gzip2": _encoded(gzip.compress(TEXT[:1000]) + gzip.compress(TEXT[1000:]), "gzip"),
            "/deflate": _encoded(zlib.compress(TEXT), "deflate"),
            "/rawdeflate": _encoded(_raw_deflate(TEXT), "deflate"),
            "/br": _encoded(brotli.compress(TEXT), "br"),
            "/stacked": _encoded(brotli.compress(gzip.compress(TEXT)), "gzip, br"),
            "/zstd": _encoded(b"\x28\xb5\x2f\xfd garbage", "zstd"),
            "/corrupt": _encoded(b"\x1f\x8b\x08\x00 this is not gzip at all" * 10, "gzip"),
            "/cutgzip": _encoded(gzip.compress(TEXT)[:-40], "gzip"),
            "/notmod": Page(b"", status=304, headers={"Content-Encoding": "snappy"}),
            "/exact": Page(b"y" * 4096, headers={"Content-Type": "text/plain"}),
            "/exactgz": _encoded(gzip.compress(b"y" * 4096), "gzip"),
            "/declared-big": Page(b"z" * (2 * MIB)),
            "/chunked-big": _chunked_big,
            "/redirect": Page(b"", status=302, headers={"Location": "../next/page?x=1", "Retry-After": "120"}),
            "/cookie": _set_cookie,
            "/gzbomb": gzip_bomb(200 * MIB),
            "/brbomb": brotli_bomb(200 * MIB),
            "/drip": drip(b"d" * 200, interval=0.1),
            "/silent": silence_after_headers(10),
        }
    )
}


@pytest.fixture(scope="module")
def webserver() -> Iterator[TestWeb]:
    with TestWeb(SITES) as web_:
        yield web_


def _fetcher(**kw: object) -> HttpFetcher:
    kw.setdefault("user_agent", "test-bot/1.0")
    return HttpFetcher(AddressPolicy({"*.test": "127.0.0.1"}), **kw)  # type: ignore[arg-type]


async def _fetch(url: str, **kw: object) -> Response:
    async with _fetcher(**kw) as f:
        return await f.fetch(url)


async def _fail(url: str, **kw: object) -> CrawlError:
    async with _fetcher(**kw) as f:
        with pytest.raises(CrawlError) as info:
            await f.fetch(url)
    return info.value


async def test_plain_200(webserver: TestWeb) -> None:
    webserver.clear_log()
    resp = await _fetch(webserver.url("a.test", "/"))
    assert resp.status == 200 and resp.body == TEXT
    assert resp.url == webserver.url("a.test", "/")
    assert resp.content_type == "text/html" and resp.charset == "utf-8"
    assert resp.headers["x-two"] == "first" and resp.headers["content-length"] == str(len(TEXT))
    assert resp.wire_bytes == len(TEXT) and resp.elapsed_ms > 0
    assert resp.ip == "127.0.0.1"
    assert resp.location is None and resp.retry_after is None
    (req,) = webserver.log
    assert req.headers["User-Agent"] == "test-bot/1.0"
    assert req.headers["Accept-Encoding"] == "gzip, deflate, br"
    assert "text/html" in req.headers["Accept"]
    assert "Cookie" not in req.headers and "Authorization" not in req.headers


@pytest.mark.parametrize("path", ["/gzip", "/gzip2", "/deflate", "/rawdeflate", "/br"])
async def test_encoded_bodies_are_decoded(webserver: TestWeb, path: str) -> None:
    resp = await _fetch(webserver.url("a.test", path))
    assert resp.body == TEXT
    assert resp.wire_bytes < len(TEXT) / 3
    assert resp.charset == "iso-8859-1"


@pytest.mark.parametrize("path", ["/exact", "/exactgz"])
async def test_cap_is_inclusive(webserver: TestWeb, path: str) -> None:
    async with _fetcher(max_body_bytes=4096) as f:
        assert len((await f.fetch(webserver.url("a.test", path))).body) == 4096
        with pytest.raises(CrawlError) as info:
            await f.fetch(webserver.url("a.test", path), max_bytes=4095)
    assert info.value.type is ErrorType.TOO_LARGE


@pytest.mark.parametrize("path", ["/declared-big", "/chunked-big"])
async def test_identity_body_over_cap(webserver: TestWeb, path: str) -> None:
    err = await _fail(webserver.url("a.test", path), max_body_bytes=MIB)
    assert err.type is ErrorType.TOO_LARGE


@pytest.mark.parametrize("path", ["/gzbomb", "/brbomb"])
async def test_decompression_bombs_stop_at_cap_with_bounded_memory(webserver: TestWeb, path: str) -> None:
    async with _fetcher(max_body_bytes=MIB) as f:
        await f.fetch(webserver.url("a.test", "/"))  # warm up: the first fetch allocates pools
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        started = time.perf_counter()
        with pytest.raises(CrawlError) as info:
            await f.fetch(webserver.url("a.test", path))
        took = time.perf_counter() - started
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert info.value.type is ErrorType.TOO_LARGE
    # 200 MiB of output would take far longer and show up in peak RSS.
    assert took < 1.0
    assert grown_mib < 32, grown_mib


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/stacked", ErrorType.BAD_ENCODING),
        ("/zstd", ErrorType.BAD_ENCODING),
        ("/corrupt", ErrorType.BAD_ENCODING),
        ("/cutgzip", ErrorType.TRUNCATED),
    ],
)
async def test_bad_encodings(webserver: TestWeb, path: str, kind: ErrorType) -> None:
    assert (await _fail(webserver.url("a.test", path))).type is kind


async def test_empty_body_with_odd_encoding_is_fine(webserver: TestWeb) -> None:
    resp = await _fetch(webserver.url("a.test", "/notmod"))
    assert resp.status == 304 and resp.body == b""


async def test_redirect_is_returned_not_followed(webserver: TestWeb) -> None:
    webserver.clear_log()
    resp = await _fetch(webserver.url("a.test", "/redirect"))
    assert resp.status == 302
    assert resp.location == webserver.url("a.test", "/next/page?x=1")
    assert resp.retry_after == "120"
    assert [r.path for r in webserver.log] == ["/redirect"]


async def test_credentials_and_cookies_are_never_sent(webserver: TestWeb) -> None:
    webserver.clear_log()
    url = f"http://user:hunter2@a.test:{webserver.port}/cookie"
    async with _fetcher() as f:
        first = await f.fetch(url, headers={"Cookie": "a=b", "Authorization": "Basic eA==", "X-Extra": "1"})
        await f.fetch(url)
    assert "set-cookie" not in first.headers
    assert first.url == webserver.url("a.test", "/cookie")
    assert len(webserver.log) == 2
    for req in webserver.log:
        assert "Authorization" not in req.headers and "Cookie" not in req.headers
    assert webserver.log[0].headers["X-Extra"] == "1"


async def test_credentials_do_not_leak_into_errors() -> None:
    port = _closed_port()
    err = await _fail(f"http://user:hunter2@a.test:{port}/")
    assert err.type is ErrorType.CONNECTION
    assert "hunter2" not in err.message and "user" not in err.message


async def test_slow_drip_ends_at_the_deadline(webserver: TestWeb) -> None:
    started = time.perf_counter()
    err = await _fail(webserver.url("a.test", "/drip"), read_timeout=5, total_timeout=1.0)
    took = time.perf_counter() - started
    assert err.type is ErrorType.TIMEOUT
    assert 0.9 < took < 2.0, took


async def test_headers_then_silence_times_out(webserver: TestWeb) -> None:
    started = time.perf_counter()
    err = await _fail(webserver.url("a.test", "/silent"), read_timeout=0.5, total_timeout=10)
    took = time.perf_counter() - started
    assert err.type is ErrorType.TIMEOUT
    assert 0.4 < took < 2.0, took


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused() -> None:
    assert (await _fail(f"http://a.test:{_closed_port()}/")).type is ErrorType.CONNECTION


async def test_refused_address_makes_no_connection(webserver: TestWeb) -> None:
    webserver.clear_log()
    async with HttpFetcher(AddressPolicy({"a.test": "127.0.0.1"}), user_agent="t") as f:
        for host in ("localhost", "127.0.0.1", "[::ffff:127.0.0.1]"):
            with pytest.raises(CrawlError) as info:
                await f.fetch(f"http://{host}:{webserver.port}/")
            assert info.value.type is ErrorType.PRIVATE_ADDRESS
        assert webserver.log == []
        assert (await f.fetch(webserver.url("a.test", "/"))).status == 200
    assert len(webserver.log) == 1


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://", ErrorType.INVALID_URL),
        ("ftp://a.test/", ErrorType.INVALID_URL),
        ("not a url", ErrorType.INVALID_URL),
        ("http://127.1/", ErrorType.INVALID_URL),
        ("http://2130706433/", ErrorType.INVALID_URL),
        ("http://0x7f.0.0.1/", ErrorType.INVALID_URL),
        ("http://no-such-host.invalid/", ErrorType.DNS),
    ],
)
async def test_invalid_urls_and_dns(url: str, kind: ErrorType) -> None:
    assert (await _fail(url)).type is kind


@asynccontextmanager
async def raw_server(reply: bytes, *, linger: float = 0.0) -> AsyncIterator[int]:
    """A loopback server that reads one request, writes `reply` verbatim and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
            await asyncio.sleep(linger)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly a few bytes", ErrorType.TRUNCATED),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", ErrorType.TRUNCATED),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            ErrorType.TRUNCATED,
        ),
        (b"", ErrorType.CONNECTION),
        (b"HELLO THERE\r\n\r\n", ErrorType.CONNECTION),
        (b"HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n", ErrorType.CONNECTION),
    ],
    ids=["cut-content-length", "cut-chunked", "bad-chunk-size", "no-reply", "garbage", "bad-header"],
)
async def test_hostile_raw_servers(reply: bytes, kind: ErrorType) -> None:
    async with raw_server(reply) as port:
        err = await _fail(f"http://raw.test:{port}/")
    assert err.type is kind, err


async def test_connection_close_delimited_body_is_complete() -> None:
    async with raw_server(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close") as port:
        resp = await _fetch(f"http://raw.test:{port}/")
    assert resp.body == b"until close"


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=tls.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_verification_failure_is_tls_error(self_signed: tuple[Path, Path]) -> None:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*self_signed)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        err = await _fail(f"https://tls.test:{port}/")
        assert err.type is ErrorType.TLS, err
        resp = await _fetch(f"https://tls.test:{port}/", verify_tls=False)
        assert resp.body == b"secure"
    finally:
        server.close()
        await server.wait_closed()


async def test_truncate_cuts_an_oversized_body_instead_of_failing() -> None:
    big = b"User-agent: *\n" + b"Disallow: /x\n" * 100_000
    sites = {"big.test": Site(pages={"/robots.txt": Page(big, headers={"Content-Type": "text/plain"})})}
    with TestWeb(sites) as web:
        policy = AddressPolicy(web.resolve_map())
        async with HttpFetcher(policy, user_agent="T/1") as http:
            with pytest.raises(CrawlError) as info:
                await http.fetch(web.url("big.test", "/robots.txt"), max_bytes=600 * 1024)
            assert info.value.type is ErrorType.TOO_LARGE
            resp = await http.fetch(web.url("big.test", "/robots.txt"), max_bytes=600 * 1024, truncate=True)
            assert resp.truncated and len(resp.body) == 600 * 1024 and resp.body == big[: 600 * 1024]
            again = await http.fetch(web.url("big.test", "/robots.txt"), max_bytes=10 * 2**20)
            assert again.body == big
