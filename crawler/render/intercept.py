"""What a rendered page may request, and the per-render state that enforces it.

Every request a rendered page makes is intercepted: the main document is fulfilled from the body the
crawler already fetched; scripts, XHR and fetch() to the *same host* (same hostname, http or https,
any port: there is no public-suffix list here to decide registrable domains) go to the caller's
`fetch_sub`, which applies robots.txt, the address policy and politeness; everything else (images,
media, fonts, stylesheets, websockets, pings, cross-host requests, iframes, navigations away) is
refused.

Subrequest outcomes in `Interception.subrequests` (and so `Rendered.subrequests`): "served" (fetch_sub
answered), "refused" (fetch_sub returned None or failed) and "blocked" (this module's own rules:
resource type, host, navigation, or more than MAX_SUBFETCHES requests offered to fetch_sub in one render).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, Route, WebSocketRoute

from crawler.render.types import SubFetch

__all__ = ["MAX_SUBFETCHES", "Interception"]

_SUB_TYPES = frozenset({"script", "xhr", "fetch"})
# Decoded bodies are handed to Chromium as-is, so framing and encoding headers must not follow them.
_DROP_HEADERS = frozenset(
    {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive", "set-cookie"}
)
#: fetch_sub calls allowed per render; a page looping over XHRs would otherwise eat the host's politeness.
MAX_SUBFETCHES = 64


def _same_host(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return pa.scheme in ("http", "https") and pb.scheme in ("http", "https") and pa.hostname == pb.hostname


class Interception:
    """Per-render interception state: serves the document once, routes subrequests, tracks activity."""

    def __init__(self, url: str, body: bytes, content_type: str, fetch_sub: SubFetch) -> None:
        self.url = url
        self.body = body
        self.content_type = content_type
        self.fetch_sub = fetch_sub
        self.page: Page | None = None
        self.doc_served = False
        self.inflight = 0
        self.last_activity = time.monotonic()
        self.subrequests: list[tuple[str, str, str]] = []
        self.crashed = False
        self.offered = 0
        self.handlers: set[asyncio.Task[object]] = set()

    async def on_route(self, route: Route) -> None:
        """Playwright route handler for every request of the render's context."""
        self.inflight += 1
        self.last_activity = time.monotonic()
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            await self._handle(route)
        except PlaywrightError:
            pass  # the page or browser went away mid-request; the render notices on its own
        finally:
            self.inflight -= 1
            self.last_activity = time.monotonic()
            self.handlers.discard(task)  # type: ignore[arg-type]

    def cancel_handlers(self) -> None:
        """Stop subrequest fetches still running for a render that has ended."""
        for task in list(self.handlers):
            task.cancel()

    async def _handle(self, route: Route) -> None:
        req = route.request
        kind = req.resource_type
        url = req.url
        if req.is_navigation_request():
            frame = req.frame
            main = self.page is not None and frame == self.page.main_frame
            if main and not self.doc_served:
                self.doc_served = True
                await route.fulfill(status=200, headers={"content-type": self.content_type}, body=self.body)
                return
            # Script-driven navigations, meta refreshes, iframes and popups: never fetched. ERR_ABORTED
            # cancels a navigation without committing an error page over the document we rendered.
            self.subrequests.append((url, kind, "blocked"))
            await route.abort("aborted")
            return
        if kind not in _SUB_TYPES or not _same_host(url, self.url) or self.offered >= MAX_SUBFETCHES:
            self.subrequests.append((url, kind, "blocked"))
            await route.abort("blockedbyclient")
            return
        self.offered += 1
        try:
            resp = await self.fetch_sub(url, kind)
        except Exception:  # a failing callback must not take the render down: treat it as a refusal
            resp = None
        if resp is None:
            self.subrequests.append((url, kind, "refused"))
            await route.abort("blockedbyclient")
            return
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in _DROP_HEADERS}
        self.subrequests.append((url, kind, "served"))
        await route.fulfill(status=resp.status, headers=headers, body=resp.body)

    async def on_websocket(self, ws: WebSocketRoute) -> None:
        """WebSocket route handler: every socket is blocked."""
        # Not calling connect_to_server keeps the socket inside the page; closing it ends the attempt.
        self.subrequests.append((ws.url, "websocket", "blocked"))
        with contextlib.suppress(PlaywrightError):
            await ws.close(code=1008, reason="blocked")

    async def on_page(self, page: Page) -> None:
        """Context "page" handler: popups are closed at once."""
        if page is not self.page:  # a popup
            with contextlib.suppress(PlaywrightError):
                await page.close()

    def on_crash(self, _page: Page) -> None:
        """Page "crash" handler: remembered so the pool retries the render."""
        self.crashed = True

    async def settle(self, quiet_s: float, until: float) -> None:
        """Return once no subrequest has been in flight for `quiet_s`, or at monotonic time `until`."""
        while True:
            now = time.monotonic()
            if now >= until:
                return
            idle_for = now - self.last_activity
            if self.inflight == 0 and idle_for >= quiet_s:
                return
            wait = quiet_s - idle_for if self.inflight == 0 else 0.05
            await asyncio.sleep(min(max(wait, 0.01), until - now))
