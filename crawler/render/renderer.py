"""Rendering in the crawl: decide per page, start the browser pool only when first needed, learn per host.

The pool is started at the first render (so a crawl of plain pages never starts Chromium), on a thread
with its own event loop (`thread.py`), and closed by the crawl's exit stack. Subresources reach the
network only through the `fetch_sub` the worker supplies (run back on the crawl's loop), which applies
robots.txt, the address policy and the host's politeness delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack

from crawler.core.config import Config
from crawler.core.errors import ConfigError
from crawler.extract.html import Page, extract
from crawler.render.find import find_browser
from crawler.render.policy import RenderDecision, RenderPolicy, render_gain
from crawler.render.pool import BrowserPool, BrowserUnavailable
from crawler.render.thread import LoopThread
from crawler.render.types import SubFetch

log = logging.getLogger("crawler.render.policy")


async def _close_pool(thread: LoopThread, pool: BrowserPool) -> None:
    await thread.run(pool.__aexit__(None, None, None))


class Renderer:
    """Owns the decision policy and (lazily) the browser pool of one crawling process."""

    def __init__(self, config: Config, stack: AsyncExitStack, *, product_token: str) -> None:
        self.config = config
        self.stack = stack
        self.token = product_token
        self.policy = RenderPolicy()
        self._pool: BrowserPool | None = None
        self._thread: LoopThread | None = None  # the pool lives on its own loop (see render/thread.py)
        self._lock = asyncio.Lock()
        self._unavailable = False
        self.path: str | None = None
        always = config.fetch.render == "always" or any(d.render == "always" for d in config.domains.values())
        # Finding Playwright's own browser starts its driver (~0.5 s): only pay for it up front when a
        # missing browser must be an error at start.
        if always and self._find() is None:
            raise ConfigError(
                'render = "always" needs a browser: none found (install Chromium, e.g. `apt-get install '
                "chromium`, or set fetch.browser_path)"
            )

    @property
    def pool(self) -> BrowserPool | None:
        """The browser pool once a first render started it, else None."""
        return self._pool

    def _find(self) -> str | None:
        if self.path is None:
            self.path = find_browser(self.config.fetch.browser_path or None)
        return self.path

    def decide(self, host: str, mode: str, html: str, page: Page) -> RenderDecision:
        """Whether this HTTP-fetched page should be rendered, and why."""
        if mode == "never" or self._unavailable:
            return RenderDecision(False, "never" if mode == "never" else "no-browser")
        return self.policy.decide(host, mode, html, page)

    async def _get_pool(self) -> BrowserPool | None:
        async with self._lock:
            if self._pool is None and not self._unavailable:
                f = self.config.fetch
                # The pool's own driver finds the browser (Playwright's, the configured path, the system's):
                # asking a separate driver first would start a second Node process on a busy crawl.
                pool = BrowserPool(
                    size=f.browser_pool_size or None,
                    user_agent=self.config.crawl.user_agent,
                    executable_path=self.path or f.browser_path or None,
                    render_timeout=f.render_timeout,
                )
                started = time.monotonic()
                if self._thread is None:
                    self._thread = await self.stack.enter_async_context(LoopThread())
                try:
                    self._pool = await self._thread.run(pool.__aenter__())
                    self.stack.push_async_callback(_close_pool, self._thread, pool)
                    self.path = pool.executable_path
                    log.info(
                        "browser started: %s, %d pages at once (%.1f s)",
                        self.path,
                        pool.size,
                        time.monotonic() - started,
                    )
                except BrowserUnavailable as exc:
                    log.warning("rendering disabled: %s", exc)
                    self._unavailable = True
            return self._pool

    async def render(
        self, url: str, host: str, *, body: bytes, content_type: str, before: Page, fetch_sub: SubFetch
    ) -> tuple[Page, str] | None:
        """Render and re-extract: the page and its serialized DOM; None when no browser can be had.

        Raises CrawlError(BROWSER_ERROR)."""
        pool = await self._get_pool()
        if pool is None:
            return None
        assert self._thread is not None
        on_loop = self._thread.back(fetch_sub)
        rendered = await self._thread.run(pool.render(url, body=body, content_type=content_type, fetch_sub=on_loop))
        page = extract(rendered.html, self.token)
        new_links, new_text = render_gain(before, page)
        self.policy.learn(host, new_links=new_links, new_text_chars=new_text)
        return page, rendered.html
