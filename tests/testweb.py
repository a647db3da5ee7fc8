"""A multi-host test web on one 127.0.0.1 port, served from a background thread, plus a link-web generator.

Virtual hosts are chosen by the `Host` header, so a crawler reaches `http://h0.test:PORT/` by mapping
`*.test` (or each host) to 127.0.0.1 in its AddressPolicy. Page bodies may contain `@PORT@`, replaced
by the server's port when served (sites are built before the port is known).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

import brotli
from aiohttp import web

__all__ = [
    "Handler",
    "LoggedRequest",
    "Page",
    "Site",
    "TestWeb",
    "abort_connection",
    "brotli_bomb",
    "deflate_bomb",
    "drip",
    "gzip_bomb",
    "make_link_web",
    "not_modified",
    "raw_response",
    "redirect",
    "sequence",
    "silence_after_headers",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PORT_TOKEN = "@PORT@"


@dataclass(slots=True)
class Page:
    """A static response; `delay` seconds pass before it is sent."""

    body: str | bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(slots=True)
class Site:
    """One virtual host: path (with query, if any) → Page or handler; robots None means 404."""

    pages: dict[str, Page | Handler]
    robots: str | None = None
    robots_status: int = 200
    fallback: Handler | None = None  # serves paths not in `pages` (e.g. an endless trap); None means 404


@dataclass(slots=True, frozen=True)
class LoggedRequest:
    """One request the test web answered (or failed to answer: status 0 when the handler raised)."""

    host: str
    path: str
    method: str
    started: float
    finished: float
    status: int
    headers: dict[str, str]


def _split_host(host_header: str) -> str:
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[: h.find("]") + 1]
    return h.rpartition(":")[0] if ":" in h else h


class TestWeb:
    """Serves `sites` (keyed by lower-case host name) on one random 127.0.0.1 port from a thread."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, sites: Mapping[str, Site], *, address: str = "127.0.0.1") -> None:
        if address not in ("127.0.0.1", "::1") and not address.startswith("127."):
            raise ValueError(f"TestWeb only listens on loopback, not {address!r}")
        self.sites = {k.lower(): v for k, v in sites.items()}
        self.address = address
        self.port = 0
        self._log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.ServerRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> TestWeb:
        """Bind a free port and serve in a background thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("TestWeb already started")
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.address, 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(sock))
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"testweb-{self.port}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _serve(self, sock: socket.socket) -> None:
        server = web.Server(self._handle, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        # Handlers still sleeping (drip, silence) would otherwise warn when the loop closes.
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def stop(self) -> None:
        """Stop serving and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> TestWeb:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- queries -----------------------------------------------------------------------------------

    def url(self, host: str, path: str = "/") -> str:
        """`http://{host}:{port}{path}`."""
        return f"http://{host}:{self.port}{path}"

    def resolve_map(self) -> dict[str, str]:
        """A `resolve` mapping for AddressPolicy sending every served host to 127.0.0.1."""
        return dict.fromkeys(self.sites, "127.0.0.1")

    @property
    def log(self) -> list[LoggedRequest]:
        """A copy of the request log, in completion order."""
        with self._lock:
            return list(self._log)

    def requests_for(self, host: str) -> list[LoggedRequest]:
        """Logged requests for one host."""
        host = host.lower()
        return [r for r in self.log if r.host == host]

    def count(self, host: str, path: str) -> int:
        """How many times `path` (with query) was requested on `host`."""
        host = host.lower()
        return sum(1 for r in self.log if r.host == host and r.path == path)

    def clear_log(self) -> None:
        """Forget logged requests."""
        with self._lock:
            self._log.clear()

    # -- serving -----------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        host = _split_host(request.host or "")
        path = request.raw_path
        status = 0
        try:
            resp = await self._respond(request, host, path)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            entry = LoggedRequest(
                host=host,
                path=path,
                method=request.method,
                started=started,
                finished=time.monotonic(),
                status=status,
                headers=dict(request.headers),
            )
            with self._lock:
                self._log.append(entry)

    async def _respond(self, request: web.BaseRequest, host: str, path: str) -> web.StreamResponse:
        site = self.sites.get(host)
        if site is None:
            return web.Response(status=404, text=f"unknown host {host!r}")
        page = site.pages.get(path)
        if page is None and "?" in path:
            page = site.pages.get(path.partition("?")[0])
        if page is None and path == "/robots.txt":
            if site.robots is None:
                return web.Response(status=404, text="no robots.txt")
            return web.Response(status=site.robots_status, text=site.robots, content_type="text/plain")
        if page is None:
            page = site.fallback
        if page is None:
            return web.Response(status=404, text="not found")
        if not isinstance(page, Page):
            return await page(request)  # type: ignore[arg-type]
        if page.delay:
            await asyncio.sleep(page.delay)
        body = page.body.encode() if isinstance(page.body, str) else page.body
        if PORT_TOKEN.encode() in body:
            body = body.replace(PORT_TOKEN.encode(), str(self.port).encode())
        headers = {k: v.replace(PORT_TOKEN, str(self.port)) for k, v in page.headers.items()}
        if page.status == 200 and not_modified(request.headers, headers):
            # A page that declares validators honours conditional requests, as real servers do (RFC 9110 §13).
            kept = {k: v for k, v in headers.items() if k.lower() in ("etag", "last-modified")}
            return web.Response(status=304, headers=kept)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "text/html; charset=utf-8"
        return web.Response(status=page.status, body=body, headers=headers)


def not_modified(request: Mapping[str, str], response: Mapping[str, str]) -> bool:
    """Whether a GET with `request` headers gets 304 for a page with `response` headers (RFC 9110 §13.2.2):
    If-None-Match against its ETag (weak comparison) when sent, else If-Modified-Since against Last-Modified."""
    lower = {k.lower(): v for k, v in response.items()}
    inm = request.get("If-None-Match")
    if inm is not None:
        etag = lower.get("etag")
        if etag is None:
            return False
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    ims, last = request.get("If-Modified-Since"), lower.get("last-modified")
    if ims is None or last is None:
        return False
    try:
        return email.utils.parsedate_to_datetime(last) <= email.utils.parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False  # an unparsable date is ignored (§13.1.3)


# -- hostile handlers ------------------------------------------------------------------------------


def drip(data: bytes, interval: float = 1.0, step: int = 1, *, content_length: bool = True) -> Handler:
    """A handler sending `data` `step` bytes every `interval` seconds."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        if content_length:
            resp.content_length = len(data)
        await resp.prepare(request)
        try:
            for i in range(0, len(data), step):
                await resp.write(data[i : i + step])
                await asyncio.sleep(interval)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client gave up: exactly what a drip test expects
        return resp

    return handler


def silence_after_headers(seconds: float = 30.0) -> Handler:
    """A handler sending headers, then nothing for `seconds`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        resp.content_length = 1000
        await resp.prepare(request)
        await asyncio.sleep(seconds)
        return resp

    return handler


_BOMB_CACHE: dict[tuple[str, int], bytes] = {}


def _bomb_bytes(kind: str, decoded_size: int) -> bytes:
    key = (kind, decoded_size)
    if key not in _BOMB_CACHE:
        block = bytes(1 << 20)
        comp: zlib._Compress | brotli.Compressor
        if kind == "br":
            comp = brotli.Compressor(quality=5)
        else:
            # gzip wrapper (31) or zlib-wrapped deflate (15), which is what `Content-Encoding: deflate` means.
            comp = zlib.compressobj(9, zlib.DEFLATED, 31 if kind == "gzip" else 15)
        out: list[bytes] = []
        left = decoded_size
        # Fed in 1 MiB blocks so building a 200 MB bomb never holds 200 MB.
        while left > 0:
            n = min(left, len(block))
            piece = comp.process(block[:n]) if kind == "br" else comp.compress(block[:n])  # type: ignore[union-attr]
            out.append(piece)
            left -= n
        out.append(comp.finish() if kind == "br" else comp.flush())  # type: ignore[union-attr]
        _BOMB_CACHE[key] = b"".join(out)
    return _BOMB_CACHE[key]


def _bomb_handler(kind: str, encoding: str, decoded_size: int) -> Handler:
    payload = _bomb_bytes(kind, decoded_size)

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=payload, headers={"Content-Type": "text/html", "Content-Encoding": encoding})

    return handler


def gzip_bomb(decoded_size: int = 200 * 2**20) -> Handler:
    """A handler serving `decoded_size` zero bytes gzip-compressed."""
    return _bomb_handler("gzip", "gzip", decoded_size)


def deflate_bomb(decoded_size: int = 200 * 2**20) -> Handler:
    """A handler serving `decoded_size` zero bytes as `Content-Encoding: deflate` (zlib-wrapped)."""
    return _bomb_handler("deflate", "deflate", decoded_size)


def brotli_bomb(decoded_size: int = 200 * 2**20) -> Handler:
    """A handler serving `decoded_size` zero bytes brotli-compressed."""
    return _bomb_handler("br", "br", decoded_size)


def raw_response(data: bytes, *, hold: float = 0.0) -> Handler:
    """A handler writing `data` verbatim to the socket (status line and all), then closing it.

    For framing lies aiohttp's own response writer would never produce: a body longer or shorter
    than its Content-Length, a chunked body cut before its last chunk. `hold` seconds pass before
    the close, so a client that trusts the framing has read the response by then.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.write(data)
            if hold:
                await asyncio.sleep(hold)
            transport.close()
        # The connection is gone: this response is never sent, it only gives the log a status.
        return web.Response(status=200)

    return handler


def abort_connection() -> Handler:
    """A handler that closes the connection without sending a byte of response."""
    return raw_response(b"")


def redirect(location: str, status: int = 302) -> Page:
    """A redirect page; `location` may contain `@PORT@`, which is filled in like a body's."""
    return Page(b"", status=status, headers={"Location": location})


def sequence(*responses: Page, then: Page | None = None) -> Handler:
    """A handler answering its n-th request with `responses[n]`, and `then` (default the last) afterwards.

    A `Retry-After` header value `@IN:<seconds>@` becomes the HTTP date that many seconds from now.
    """
    calls = {"n": 0}
    final = then if then is not None else responses[-1]

    async def handler(request: web.Request) -> web.StreamResponse:
        n = calls["n"]
        calls["n"] = n + 1
        page = responses[n] if n < len(responses) else final
        headers = dict(page.headers)
        ra = headers.get("Retry-After", "")
        if ra.startswith("@IN:"):
            headers["Retry-After"] = email.utils.formatdate(time.time() + float(ra[4:-1]), usegmt=True)
        headers.setdefault("Content-Type", "text/html; charset=utf-8")
        body = page.body.encode() if isinstance(page.body, str) else page.body
        return web.Response(status=page.status, body=body, headers=headers)

    return handler


# -- generated link web ----------------------------------------------------------------------------

_WORD_TEXT = (
    "river stone lantern copper meadow orbit velvet harbor signal thistle quartz ember falcon "
    "willow prism cobalt tundra sonnet galaxy pepper marble canyon violet beacon saddle nectar "
    "glacier rhythm fossil juniper compass lagoon cipher walnut harvest meteor basil tangent "
    "plume summit anchor bramble cinder dune echo fable garnet hollow ivory jasper kelp lumen "
    "mosaic nimbus opal pylon quill ridge sable tarn umber vortex wicker yarrow zephyr"
)
_WORDS = _WORD_TEXT.split()

_HREF_PREFIX = 'href="'


def _paragraphs(rng: random.Random, n: int = 3, words: int = 60) -> list[str]:
    return [" ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "." for _ in range(n)]


def make_link_web(
    n_hosts: int = 5,
    pages_per_host: int = 12,
    *,
    disallow: str = "/private/",
    seed: int = 0,
    cross_links: bool = True,
    first_host: int = 0,
    robots_allow_all: bool = False,
) -> tuple[dict[str, Site], set[str], set[str]]:
    """A deterministic web of `h0.test`…; returns (sites, reachable_allowed, disallowed_linked).

    The two sets hold port-independent `host/path` keys such as `h0.test/p3.html`.

    Pages link along a chain (so depth grows), skip ahead, into `disallow`, and (optionally) to other
    hosts; each host also has an orphan page nobody links to. The key sets come from a BFS from
    every host's `/` that does not follow links into `disallow`.

    Hosts are numbered from `first_host` (`h8.test`… with 8), so two webs can be served side by side.
    With `robots_allow_all`, robots.txt allows everything: the `disallow` pages are ordinary pages (and
    reach the orphan), so each host has `pages_per_host + 3` reachable pages (from 7 pages per host)
    and nothing is disallowed.
    """
    rng = random.Random(seed)
    hosts = [f"h{i}.test" for i in range(first_host, first_host + n_hosts)]
    n = max(pages_per_host, 2)
    # links[(host, path)] = list of (target_host, target_path, href as written)
    links: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    sites: dict[str, Site] = {}
    for hi, host in enumerate(hosts):
        paths = ["/"] + [f"/p{j}.html" for j in range(1, n)]
        private = [f"{disallow}s{k}.html" for k in range(2)]
        for idx, path in enumerate(paths):
            out: list[tuple[str, str, str]] = []
            # "/" reaches p1..p2 only; every pj reaches p(j+1), so deep pages need several hops.
            nxt = [1, 2] if idx == 0 else [idx + 1]
            if idx > 0 and rng.random() < 0.3:
                nxt.append(rng.randrange(1, n))
            for j in nxt:
                if j < n:
                    target = paths[j]
                    # Vary how links are written: relative, absolute-path, and with a fragment.
                    style = rng.randrange(3)
                    href = target[1:] if style == 0 else (target if style == 1 else target + "#top")
                    out.append((host, target, href))
            if idx > 0 and idx % 3 == 0:
                target = private[idx % len(private)]
                out.append((host, target, target))
            if cross_links and n_hosts > 1 and idx % 4 == 1:
                other = hosts[(hi + 1 + rng.randrange(n_hosts - 1)) % n_hosts]
                target = f"/p{rng.randrange(1, n)}.html"
                out.append((other, target, f"http://{other}:{PORT_TOKEN}{target}"))
            links[(host, path)] = out
        for path in private:
            # Private pages link onward too; a crawler that ignores robots would find more.
            links[(host, path)] = [(host, "/orphan.html", "/orphan.html")]
        links[(host, "/orphan.html")] = [(host, "/", "/")]

        pages: dict[str, Page | Handler] = {}
        for (page_host, path), out in links.items():
            if page_host != host:
                continue
            title = f"{host} {path}"
            anchors = "\n".join(f'<li><a {_HREF_PREFIX}{href}">link {i}</a></li>' for i, (_, _, href) in enumerate(out))
            paras = "\n".join(f"<p>{p}</p>" for p in _paragraphs(rng))
            body = (
                f"<!doctype html>\n<html><head><title>{title}</title></head>\n<body>\n"
                f"<h1>{title}</h1>\n{paras}\n<ul>\n{anchors}\n</ul>\n</body></html>\n"
            )
            pages[path] = Page(body)
        sites[host] = Site(pages=pages, robots=f"User-agent: *\nDisallow: {'' if robots_allow_all else disallow}\n")

    reachable: set[str] = set()
    disallowed: set[str] = set()
    queue: deque[tuple[str, str]] = deque((h, "/") for h in hosts)
    reachable.update(f"{h}/" for h in hosts)
    while queue:
        node = queue.popleft()
        for t_host, t_path, _ in links.get(node, ()):
            key = f"{t_host}{t_path}"
            if t_path.startswith(disallow) and not robots_allow_all:
                disallowed.add(key)
            elif key not in reachable:
                reachable.add(key)
                queue.append((t_host, t_path))
    return sites, reachable, disallowed
