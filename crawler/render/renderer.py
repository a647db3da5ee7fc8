"""Rendering in the crawl: decide per page, start the browser pool only when first needed, learn per host.

The pool is entered on the crawl's exit stack at the first render, so a crawl of plain pages never
starts Chromium. Subresources reach the network only through the `fetch_sub` the worker supplies,
which applies robots.txt, the address policy and the host's politeness delay.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from crawler.core.config import Config
from crawler.core.errors import ConfigError
from crawler.extract.html import Page, extract
from crawler.render.find import find_browser
from crawler.render.policy import RenderDecision, RenderPolicy, render_gain
from crawler.render.pool import BrowserPool, BrowserUnavailable
from crawler.render.types import SubFetch

log = logging.getLogger("crawler.render.policy")


class Renderer:
    """Owns the decision policy and (lazily) the browser pool of one crawling process."""

    def __init__(self, config: Config, stack: AsyncExitStack, *, product_token: str) -> None:
        self.config = config
        self.stack = stack
        self.token = product_token
        self.policy = RenderPolicy()
        self._pool: BrowserPool | None = None
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
                try:
                    self._pool = await self.stack.enter_async_context(pool)
                    self.path = pool.executable_path
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
        rendered = await pool.render(url, body=body, content_type=content_type, fetch_sub=fetch_sub)
        page = extract(rendered.html, self.token)
        new_links, new_text = render_gain(before, page)
        self.policy.learn(host, new_links=new_links, new_text_chars=new_text)
        return page, rendered.html
