"""One-hop HTTP fetcher: guarded connections, bounded decoded body, whole-fetch deadline, typed errors."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urljoin

import aiohttp
from yarl import URL

from crawler.core.errors import CrawlError, ErrorType
from crawler.core.exchange import Exchange
from crawler.core.histogram import Histogram
from crawler.fetch.codecs import ACCEPT_ENCODING, DECODE_ERRORS, Decoder, make_decoder
from crawler.fetch.http_errors import map_error
from crawler.fetch.net import AddressPolicy, GuardedResolver

__all__ = ["DEFAULT_ACCEPT", "HttpFetcher", "Response"]

DEFAULT_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
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
    exchange: Exchange | None = None  # the wire view, only when the fetcher has an `on_exchange` listener


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
        latency: Histogram | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.policy = policy
        self.latency = latency  # every response's seconds, when metrics are on
        # Told of every response received (pages, robots.txt, redirect hops, render subrequests): this
        # client is the crawl's only way onto the network, so an archive listening here misses nothing.
        self.on_exchange = on_exchange
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
        if u.explicit_port is not None:
            # Every request passes here (pages, robots.txt, redirects, subresources): no way around it.
            self.policy.check_port(f"{host}:{u.explicit_port}")
        literal = _literal_ip(host)
        if literal is not None:
            # aiohttp skips the resolver for IP literals, so the policy is applied here instead.
            self.policy.check_address(literal, literal)
        req_headers = self._request_headers(headers, accept)

        started = time.perf_counter()
        wall = time.time()
        phase = "connect"
        deadline = asyncio.timeout(self.total_timeout)
        listener = self.on_exchange
        try:
            async with deadline, session.get(u, headers=req_headers, allow_redirects=False) as resp:
                phase = "body"
                try:
                    response = await self._read(resp, url, cap, started, truncate, wall if listener else None)
                    if listener is not None and response.exchange is not None:
                        listener(response.exchange)
                except BaseException:
                    # Drop the half-read connection rather than returning it to the pool.
                    resp.close()
                    raise
            if self.latency is not None:
                self.latency.observe(response.elapsed_ms / 1000.0)
            return response
        except CrawlError as exc:
            # A traceback pins the frames it passed through, and `_read`'s holds up to a cap's worth of
            # decoded body plus the decoder's window; callers keep the error (in a reference cycle with
            # their own frame), so bombs would pile up until a full GC. The message says what happened.
            exc.__context__ = None
            raise exc.with_traceback(None) from None
        except Exception as exc:
            raise map_error(exc, url, phase, deadline.expired()) from None

    @staticmethod
    async def _read(
        resp: aiohttp.ClientResponse,
        url: str,
        cap: int,
        started: float,
        truncate: bool = False,
        wall: float | None = None,
    ) -> Response:
        """Read the body of `resp`; with `wall` (the request's start), also the wire view for the archive."""
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
        # The encoded bytes, kept for the archive only (without content coding the body is the payload);
        # capped like the body, since trailing garbage after a compressed stream is read but not decoded.
        raw: list[bytes] | None = [] if wall is not None and encoding is not None else None
        wire = 0
        size = 0
        decoder: Decoder | None = None
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
                if raw is not None and wire <= cap:
                    raw.append(chunk)
                if decoder is None:
                    # Created on the first body byte so empty 204/304/redirect bodies never fail.
                    decoder = make_decoder(encoding)
                try:
                    size += decoder.feed(chunk, parts, cap - size)
                except DECODE_ERRORS as exc:
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
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        exchange = None
        if wall is not None:
            if raw is None:  # no content coding: the body is the payload (the same object, not a copy)
                exchange = _exchange(resp, url, wall, ip, body, cut)
            else:
                exchange = _exchange(resp, url, wall, ip, b"".join(raw), cut or wire > cap)
        return Response(
            url=url,
            status=resp.status,
            headers=headers,
            body=body,
            content_type=content_type,
            charset=charset,
            location=location,
            retry_after=headers.get("retry-after"),
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
            wire_bytes=wire,
            ip=ip,
            truncated=cut,
            exchange=exchange,
        )


def _exchange(
    resp: aiohttp.ClientResponse, url: str, wall: float, ip: str | None, payload: bytes, cut: bool
) -> Exchange:
    """The wire view of one hop: the request aiohttp sent (its headers as written) and the response's head."""
    info = resp.request_info
    version = resp.version
    return Exchange(
        url=url,
        started=wall,
        ip=ip,
        method=info.method,
        target=info.url.raw_path_qs or "/",
        request_headers=tuple(info.headers.items()),
        http_version=f"{version.major}.{version.minor}" if version is not None else "1.1",
        status=resp.status,
        reason=resp.reason or "",
        headers=tuple(resp.raw_headers),
        payload=payload,
        cut=cut,
    )
