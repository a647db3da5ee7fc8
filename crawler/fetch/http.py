"""One-hop HTTP fetcher: guarded connections, bounded decoded body, whole-fetch deadline, typed errors."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol
from urllib.parse import urljoin

import aiohttp
import brotli
from aiohttp.http_exceptions import ContentLengthError, TransferEncodingError
from yarl import URL

from crawler.core.errors import CrawlError, ErrorType
from crawler.fetch.net import AddressPolicy, AddressRefusedError, GuardedResolver

__all__ = ["DEFAULT_ACCEPT", "HttpFetcher", "Response"]

DEFAULT_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
# brotli < 1.2 cannot bound output per call, so a tiny input could expand without limit:
# without that API we neither advertise nor accept br.
_BROTLI_BOUNDED = hasattr(brotli.Decompressor, "can_accept_more_data")
ACCEPT_ENCODING = "gzip, deflate, br" if _BROTLI_BOUNDED else "gzip, deflate"
# Credentials are never sent, whatever a caller passes in.
_FORBIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


@dataclass(slots=True)
class Response:
    """One HTTP hop. `body` is content-decoded; `headers` has lower-case names, first value wins."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    content_type: str | None
    charset: str | None
    location: str | None
    retry_after: str | None
    elapsed_ms: float
    wire_bytes: int
    ip: str | None
    truncated: bool = False  # body cut at the cap (only when fetched with truncate=True)


class _Decoder(Protocol):
    def feed(self, data: bytes, out: list[bytes], room: int) -> int: ...

    def finish(self) -> None: ...


class _ZlibDecoder:
    """gzip (multi-member) or deflate (zlib-wrapped or raw, sniffed from the first two bytes)."""

    __slots__ = ("_d", "_done", "_gzip", "_head")

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._d = zlib.decompressobj(31) if gzip else None
        self._head = b""
        self._done = False

    def feed(self, data: bytes, out: list[bytes], room: int) -> int:
        """Decode `data` into `out`, producing at most `room + 1` bytes; returns bytes produced."""
        if self._done:
            return 0
        d = self._d
        if d is None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return 0
            b0, b1 = data[0], data[1]
            # RFC 1950 header: CM=8, CINFO<=7, FCHECK makes the 16-bit value a multiple of 31.
            wrapped = (b0 & 0x0F) == 8 and (b0 >> 4) <= 7 and ((b0 << 8) | b1) % 31 == 0
            d = self._d = zlib.decompressobj(15 if wrapped else -15)
        produced = 0
        limit = room + 1
        while True:
            chunk = d.decompress(data, limit - produced)
            if chunk:
                out.append(chunk)
                produced += len(chunk)
                if produced > room:
                    return produced
            if d.unconsumed_tail:
                data = d.unconsumed_tail
                continue
            if d.eof:
                rest = d.unused_data
                if self._gzip and rest[:1] == b"\x1f":
                    d = self._d = zlib.decompressobj(31)
                    data = rest
                    continue
                # Trailing garbage after the stream is ignored, as browsers do.
                self._done = True
            return produced

    def finish(self) -> None:
        """Raise TRUNCATED unless the compressed stream ended properly."""
        if not self._done and (self._d is None or not self._d.eof):
            raise CrawlError(ErrorType.TRUNCATED, "compressed body ended mid-stream")


class _BrotliDecoder:
    __slots__ = ("_d", "_done")

    def __init__(self) -> None:
        self._d = brotli.Decompressor()
        self._done = False

    def feed(self, data: bytes, out: list[bytes], room: int) -> int:
        """Decode `data` into `out`, stopping soon after `room` bytes; returns bytes produced."""
        if self._done:
            return 0
        d = self._d
        produced = 0
        limit = room + 1
        pending: bytes | None = data
        while True:
            if d.can_accept_more_data():
                if pending is None:
                    break
                chunk = d.process(pending, output_buffer_limit=limit - produced)
                pending = None
            else:
                # Output was capped last call: drain with empty input, as the API requires.
                chunk = d.process(b"", output_buffer_limit=limit - produced)
            if chunk:
                out.append(chunk)
                produced += len(chunk)
                if produced > room:
                    return produced
            if d.is_finished():
                self._done = True
                break
        return produced

    def finish(self) -> None:
        """Raise TRUNCATED unless the brotli stream ended properly."""
        if not self._done and not self._d.is_finished():
            raise CrawlError(ErrorType.TRUNCATED, "brotli body ended mid-stream")


def _make_decoder(encoding: str) -> _Decoder:
    enc = encoding.strip().lower()
    if enc in ("gzip", "x-gzip"):
        return _ZlibDecoder(gzip=True)
    if enc == "deflate":
        return _ZlibDecoder(gzip=False)
    if enc == "br" and _BROTLI_BOUNDED:
        return _BrotliDecoder()
    if "," in enc:
        raise CrawlError(ErrorType.BAD_ENCODING, f"stacked content-encoding {encoding!r} refused")
    raise CrawlError(ErrorType.BAD_ENCODING, f"unsupported content-encoding {encoding!r}")


def _parse_content_type(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    media, _, params = value.partition(";")
    media = media.strip().lower() or None
    charset = None
    if params:
        for param in params.split(";"):
            name, eq, val = param.partition("=")
            if eq and name.strip().lower() == "charset":
                charset = val.strip().strip("\"'").strip().lower() or None
                break
    return media, charset


def _literal_ip(host: str) -> str | None:
    """The address when `host` is an IP literal; raises INVALID_URL for legacy numeric forms."""
    h = host.rstrip(".")
    if ":" in h:
        return h
    last = h.rpartition(".")[2]
    # A numeric last label makes the host an IPv4 address (WHATWG); only dotted-quad is accepted
    # because the odd forms (127.1, 0x7f.1, 2130706433) exist to slip past filters.
    if last.isdigit() or last.lower().startswith("0x"):
        try:
            return str(ipaddress.IPv4Address(h))
        except ValueError:
            raise CrawlError(ErrorType.INVALID_URL, f"non-canonical numeric host {host!r}") from None
    return None


def _is_tls_error(exc: BaseException) -> bool:
    return isinstance(
        exc,
        ssl.SSLError | ssl.CertificateError | aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch,
    )


_BROKEN_FRAMING = (TransferEncodingError, ContentLengthError)


def _caused_by(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:  # bounded: chains are short, and may loop
        if isinstance(cur, types):
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False


def _map_error(exc: Exception, url: str, phase: str, deadline_hit: bool) -> CrawlError:
    """Translate an aiohttp/OS exception raised during `phase` ("connect" or "body") into a CrawlError."""
    if deadline_hit:
        return CrawlError(ErrorType.TIMEOUT, f"{url}: whole-fetch deadline exceeded during {phase}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = exc.os_error
        if isinstance(os_err, AddressRefusedError):
            return os_err.error
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return CrawlError(ErrorType.DNS, f"{url}: DNS lookup failed: {os_err}")
        if _is_tls_error(exc) or _is_tls_error(os_err):
            return CrawlError(ErrorType.TLS, f"{url}: TLS error: {os_err}")
        if isinstance(os_err, TimeoutError):
            return CrawlError(ErrorType.TIMEOUT, f"{url}: connect timed out")
        return CrawlError(ErrorType.CONNECTION, f"{url}: cannot connect: {os_err}")
    if isinstance(exc, TimeoutError):
        what = "connect" if phase == "connect" and isinstance(exc, aiohttp.ConnectionTimeoutError) else "read"
        return CrawlError(ErrorType.TIMEOUT, f"{url}: {what} timed out during {phase}")
    if _is_tls_error(exc):
        return CrawlError(ErrorType.TLS, f"{url}: TLS error: {exc}")
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError | ValueError):
        return CrawlError(ErrorType.INVALID_URL, f"{url}: invalid URL: {exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, TimeoutError):
            return CrawlError(ErrorType.TIMEOUT, f"{url}: read timed out during body")
        return CrawlError(ErrorType.TRUNCATED, f"{url}: body incomplete: {exc}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionError | aiohttp.ClientOSError):
        if phase == "body":
            return CrawlError(ErrorType.TRUNCATED, f"{url}: connection lost mid-body: {exc!r}")
        return CrawlError(ErrorType.CONNECTION, f"{url}: connection failed: {exc!r}")
    if isinstance(exc, aiohttp.ClientResponseError):
        # Raised for parse errors; a broken chunked framing counts as a cut body, the rest as garbage.
        # The C parser (llhttp) reports chunk errors as a plain BadHttpMessage, hence the text check.
        if _caused_by(exc, _BROKEN_FRAMING) or "chunk" in str(exc.message).lower():
            return CrawlError(ErrorType.TRUNCATED, f"{url}: broken body framing: {exc.message}")
        return CrawlError(ErrorType.CONNECTION, f"{url}: malformed response: {exc.message}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return CrawlError(ErrorType.CONNECTION, f"{url}: {type(exc).__name__}: {exc}")
    return CrawlError(ErrorType.CONNECTION, f"{url}: unexpected {type(exc).__name__}: {exc}")


class HttpFetcher:
    """Fetches single HTTP hops over one pooled session; use as `async with HttpFetcher(...) as f`."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        user_agent: str,
        connect_timeout: float = 10,
        read_timeout: float = 30,
        total_timeout: float = 60,
        max_body_bytes: int = 10 * 2**20,
        max_connections: int = 256,
        max_per_host: int = 8,
        verify_tls: bool = True,
    ) -> None:
        self.policy = policy
        self.user_agent = user_agent
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self.max_per_host = max_per_host
        self.verify_tls = verify_tls
        self._session: aiohttp.ClientSession | None = None
        self._headers = {
            "User-Agent": user_agent,
            "Accept": DEFAULT_ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,
        }

    async def __aenter__(self) -> HttpFetcher:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.policy),
            limit=self.max_connections,
            limit_per_host=self.max_per_host,
            use_dns_cache=True,
            ttl_dns_cache=120,
            dns_cache_max_size=10000,
            ssl=self.verify_tls,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers=self._headers,
            auto_decompress=False,
            trust_env=False,  # no proxies or .netrc credentials from the environment
            # Pool waits are bounded by the whole-fetch deadline, not the connect timeout.
            timeout=aiohttp.ClientTimeout(
                total=None, connect=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
            ),
            max_line_size=16384,
            max_field_size=32768,
            raise_for_status=False,
        )
        # aiohttp silently resends a GET whose connection dropped, fresh connection or not, so a host
        # that drops connections got two requests per attempt with no delay between them. Retries are
        # the worker's job (counted, backed off); there is no public switch, hence the private flag
        # (tests/test_dependencies.py fails if aiohttp renames it or stops honouring it).
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _request_headers(self, headers: Mapping[str, str] | None, accept: str | None) -> dict[str, str] | None:
        # The defaults live on the session; per-request headers only carry what differs.
        if not headers and accept is None:
            return None
        merged: dict[str, str] = {}
        if headers:
            for k, v in headers.items():
                if k.lower() not in _FORBIDDEN_HEADERS:
                    merged[k] = v
        if accept is not None:
            merged["Accept"] = accept
        return merged

    async def fetch(
        self,
        url: str,
        *,
        max_bytes: int | None = None,
        headers: Mapping[str, str] | None = None,
        accept: str | None = None,
        truncate: bool = False,
    ) -> Response:
        """Fetch one hop (no redirects followed); every failure is raised as a CrawlError.

        With `truncate`, a body over the cap is cut at `max_bytes` (`Response.truncated`) instead of
        failing with TOO_LARGE: robots.txt wants its first 500 KiB parsed, not the file refused.
        """
        session = self._session
        if session is None:
            raise RuntimeError("HttpFetcher.fetch called outside 'async with'")
        cap = self.max_body_bytes if max_bytes is None else max_bytes
        try:
            u = URL(url)
        except (ValueError, TypeError) as exc:
            raise CrawlError(ErrorType.INVALID_URL, f"invalid URL: {exc}") from None
        if u.raw_user is not None or u.raw_password is not None:
            u = u.with_user(None)
            url = str(u)
        host = u.raw_host
        if u.scheme not in ("http", "https") or not host:
            raise CrawlError(ErrorType.INVALID_URL, f"{url}: not an absolute http(s) URL")
        literal = _literal_ip(host)
        if literal is not None:
            # aiohttp skips the resolver for IP literals, so the policy is applied here instead.
            self.policy.check_address(literal, literal)
        req_headers = self._request_headers(headers, accept)

        started = time.perf_counter()
        phase = "connect"
        deadline = asyncio.timeout(self.total_timeout)
        try:
            async with deadline, session.get(u, headers=req_headers, allow_redirects=False) as resp:
                phase = "body"
                try:
                    return await self._read(resp, url, cap, started, truncate)
                except BaseException:
                    # Drop the half-read connection rather than returning it to the pool.
                    resp.close()
                    raise
        except CrawlError as exc:
            # A traceback pins the frames it passed through, and `_read`'s holds up to a cap's worth of
            # decoded body plus the decoder's window; callers keep the error (in a reference cycle with
            # their own frame), so bombs would pile up until a full GC. The message says what happened.
            exc.__context__ = None
            raise exc.with_traceback(None) from None
        except Exception as exc:
            raise _map_error(exc, url, phase, deadline.expired()) from None

    @staticmethod
    async def _read(
        resp: aiohttp.ClientResponse, url: str, cap: int, started: float, truncate: bool = False
    ) -> Response:
        rh = resp.headers
        # Best effort: a small body may already have released `resp.connection` (the public route), but
        # the private `resp._protocol` keeps its transport, whose peername asyncio cached at connect time;
        # it is also the only view of responses parsed past the declared body (below). No public API
        # gives either; tests/test_dependencies.py fails if aiohttp changes this attribute.
        protocol = getattr(resp, "_protocol", None)
        transport = getattr(protocol, "transport", None)
        peer = transport.get_extra_info("peername") if transport is not None else None
        ip = peer[0] if peer else None

        declared = resp.content_length
        if declared is not None and declared > cap and not truncate:
            raise CrawlError(ErrorType.TOO_LARGE, f"{url}: Content-Length {declared} exceeds {cap} bytes")
        encoding: str | None = None
        if "Content-Encoding" in rh:
            encoding = ", ".join(rh.getall("Content-Encoding")).strip()
            if encoding.lower() in ("", "identity"):
                encoding = None

        parts: list[bytes] = []
        wire = 0
        size = 0
        decoder: _Decoder | None = None
        content = resp.content
        # With Content-Length framing (already checked against the cap) one read() is bounded, and it
        # is measurably cheaper than a readany() loop for typical pages; otherwise stream.
        single = declared is not None and declared <= cap
        one_shot = single
        cut = False
        while True:
            if single:
                chunk = await resp.read()
                single = False
            else:
                chunk = await content.readany()
            if not chunk:
                break
            wire += len(chunk)
            if encoding is None:
                size += len(chunk)
                parts.append(chunk)
            else:
                if decoder is None:
                    # Created on the first body byte so empty 204/304/redirect bodies never fail.
                    decoder = _make_decoder(encoding)
                try:
                    size += decoder.feed(chunk, parts, cap - size)
                except (zlib.error, brotli.error) as exc:
                    msg = f"{url}: corrupt {encoding} body: {exc}"
                    raise CrawlError(ErrorType.BAD_ENCODING, msg) from None
            if size > cap:
                if not truncate:
                    raise CrawlError(ErrorType.TOO_LARGE, f"{url}: body exceeds {cap} bytes")
                parts = [b"".join(parts)[:cap]]
                size = cap
                cut = True
                resp.close()  # the rest is not wanted; do not reuse a half-read connection
                break
            if one_shot:
                break
        if decoder is not None and not cut:
            decoder.finish()
        if declared is not None and not cut and protocol is not None and len(protocol):
            # The server sent more than it declared and the excess parsed as another response: the
            # framing lied, so the declared body cannot be trusted to be the page either. (Excess that
            # is not a response head already fails in the parser; excess arriving later goes unseen.)
            raise CrawlError(ErrorType.CONNECTION, f"{url}: malformed response: body longer than Content-Length")

        headers: dict[str, str] = {}
        for name, value in rh.items():
            key = name.lower()
            if key not in headers and key != "set-cookie":
                headers[key] = value
        content_type, charset = _parse_content_type(headers.get("content-type"))
        location = headers.get("location")
        if location is not None:
            location = urljoin(url, location.strip())
        return Response(
            url=url,
            status=resp.status,
            headers=headers,
            body=parts[0] if len(parts) == 1 else b"".join(parts),
            content_type=content_type,
            charset=charset,
            location=location,
            retry_after=headers.get("retry-after"),
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
            wire_bytes=wire,
            ip=ip,
            truncated=cut,
        )
