"""A bounded pool of headless Chromium pages that render already-fetched HTML without touching the network.

What a page may request, and how each subrequest ends, is `crawler.render.intercept`'s; which Chromium
runs is `crawler.render.find`'s. Each render gets a fresh BrowserContext: a context plus page costs
~20 ms against ~10 ms for reusing one and clearing cookies, which is noise next to the settle time, and
a fresh context is the only way to be sure no cookies, storage or cache pass from one host to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

# Not re-exported by playwright.async_api, yet the one reliable sign that the target died under us: the
# public `Error.name` is set only on errors that came from the driver, not on those the client raises
# itself when a page or context closes. tests/test_dependencies.py fails if the class moves or goes public.
from playwright._impl._errors import TargetClosedError
from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from crawler.core.errors import CrawlError, ErrorType
from crawler.render.find import SYSTEM_BROWSERS, choose_browser
from crawler.render.intercept import Interception
from crawler.render.types import SubFetch

__all__ = ["BrowserPool", "BrowserUnavailable", "Rendered", "default_pool_size"]

_CONTEXT_BYTES = 64 * 2**20  # rough resident cost of one busy context with its renderer
_MAX_POOL = 16

_BASE_ARGS: tuple[str, ...] = (
    "--no-sandbox",  # the crawler commonly runs as root in a container, where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home (updates, safe browsing, sync, field trials).
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    "--disable-dev-shm-usage",  # /dev/shm is tiny in containers
    # Defence in depth: anything that slipped past interception (preconnect, DNS prefetch) finds no DNS.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--dns-prefetch-disable",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
)
_CLOSE_TIMEOUT = 5.0


@dataclass(slots=True)
class Rendered:
    """A rendered page: serialized DOM plus every subrequest as (url, resource type, outcome)."""

    url: str
    html: str
    elapsed_ms: float
    subrequests: list[tuple[str, str, str]] = field(default_factory=list)


class BrowserUnavailable(Exception):
    """No usable Chromium executable was found."""


class _Crashed(Exception):
    """The browser or the page died under a render; worth one retry."""

    def __init__(self, message: str, *, page_only: bool) -> None:
        super().__init__(message)
        self.page_only = page_only


def default_pool_size() -> int:
    """Pages to run at once: available memory at ~64 MiB per context, clamped to 1..16."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
            else:
                return 1
    except (OSError, ValueError, IndexError):
        return 1
    # Half the free memory: the crawler, the frontier and the OS need the rest.
    return max(1, min(_MAX_POOL, avail // 2 // _CONTEXT_BYTES))


def _proc_table() -> dict[int, tuple[int, bytes]]:
    """pid -> (ppid, cmdline) for every readable process."""
    table: dict[int, tuple[int, bytes]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_bytes()
            cmd = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        # The command name in stat may contain spaces and parentheses; fields resume after the last ')'.
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        table[int(entry.name)] = (ppid, cmd)
    return table


class BrowserPool:
    """Renders pages in up to `size` concurrent BrowserContexts of one Chromium; an async context manager.

    `executable_path` is tried after Playwright's own Chromium and before the system ones; with
    `fallbacks=False` it is the only candidate (a missing file then raises BrowserUnavailable).
    """

    def __init__(
        self,
        *,
        size: int | None = None,
        user_agent: str,
        executable_path: str | None = None,
        render_timeout: float = 20.0,
        settle_ms: int = 500,
        headless: bool = True,
        fallbacks: bool = True,
    ) -> None:
        self.size = size if size is not None else default_pool_size()
        if self.size < 1:
            raise ValueError("pool size must be at least 1")
        self.user_agent = user_agent
        self.configured_path = executable_path
        self.render_timeout = render_timeout
        self.settle_ms = settle_ms
        self.headless = headless
        self.fallbacks = fallbacks
        self.executable_path: str | None = None
        self.launches = 0
        self.in_use = 0  # renders holding one of the `size` places now (the metrics endpoint shows it)
        # A no-op switch Chromium ignores; it marks our browser process in /proc for RSS and cleanup.
        self._marker = f"--crawler-browser-pool={uuid.uuid4().hex}"
        self._pw: Playwright | None = None
        self._pw_cm: object | None = None
        self._browser: Browser | None = None
        self._slots = asyncio.Semaphore(self.size)
        self._launch_lock = asyncio.Lock()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> BrowserPool:
        try:
            await self._start_driver()
        except (PlaywrightError, OSError) as exc:
            raise BrowserUnavailable(f"Playwright's driver did not start: {exc}") from exc
        assert self._pw is not None
        own: str | None = None
        if self.fallbacks:
            with contextlib.suppress(PlaywrightError):
                own = self._pw.chromium.executable_path
        path = choose_browser(own, self.configured_path, self.fallbacks)
        if path is None:
            await self._stop_driver()
            tried = self.configured_path if not self.fallbacks else "Playwright's Chromium, the configured path"
            if self.fallbacks:
                tried += ", " + ", ".join(SYSTEM_BROWSERS)
            raise BrowserUnavailable(
                f"no Chromium executable found (tried {tried}); install one (apt-get install chromium) "
                "or configure its path, or crawl with rendering off"
            )
        self.executable_path = path
        try:
            await self._launch()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _start_driver(self) -> None:
        cm = async_playwright()
        self._pw = await cm.__aenter__()
        self._pw_cm = cm

    async def _stop_driver(self) -> None:
        cm, self._pw_cm, self._pw = self._pw_cm, None, None
        if cm is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cm.__aexit__(None, None, None), _CLOSE_TIMEOUT)  # type: ignore[attr-defined]

    async def _launch(self) -> Browser:
        assert self._pw is not None and self.executable_path is not None
        browser = await self._pw.chromium.launch(
            executable_path=self.executable_path,
            headless=self.headless,
            args=[*_BASE_ARGS, self._marker],
            timeout=30_000,
        )
        self._browser = browser
        self.launches += 1
        return browser

    async def _relaunch(self, dead: Browser | None) -> Browser:
        """Replace `dead` with a new browser unless another render already did."""
        async with self._launch_lock:
            current = self._browser
            if current is not None and current is not dead and current.is_connected():
                return current
            if current is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(current.close(), _CLOSE_TIMEOUT)
            self._kill_strays()
            try:
                return await self._launch()
            except PlaywrightError:
                # The driver itself may be what died: start a fresh one and try once more.
                await self._stop_driver()
                await self._start_driver()
                return await self._launch()

    async def close(self) -> None:
        """Close the browser and the Playwright driver; safe after a crash and when called twice."""
        self._closed = True
        browser, self._browser = self._browser, None
        if browser is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(browser.close(), _CLOSE_TIMEOUT)
        await self._stop_driver()
        self._kill_strays()

    def _kill_strays(self) -> None:
        # Only processes carrying this pool's unique marker (and their children) are touched.
        for pid in self.browser_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def browser_pids(self) -> list[int]:
        """Pids of this pool's Chromium processes: the browser (found by its marker) and its descendants."""
        table = _proc_table()
        marker = self._marker.encode()
        roots = [pid for pid, (_, cmd) in table.items() if marker in cmd.split(b"\0")]
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        out: list[int] = []
        stack = list(roots)
        while stack:
            pid = stack.pop()
            if pid in out:
                continue
            out.append(pid)
            stack.extend(children.get(pid, ()))
        return out

    # -- rendering ---------------------------------------------------------------------------------

    async def render(self, url: str, *, body: bytes, content_type: str, fetch_sub: SubFetch) -> Rendered:
        """Render `body` as the document at `url`; raises CrawlError(BROWSER_ERROR) on timeout or crashes."""
        if self._closed or self._pw is None:
            raise RuntimeError("BrowserPool.render called outside 'async with'")
        async with self._slots:
            self.in_use += 1
            try:
                return await self._render_with_retry(url, body, content_type, fetch_sub)
            finally:
                self.in_use -= 1

    async def _render_with_retry(self, url: str, body: bytes, content_type: str, fetch_sub: SubFetch) -> Rendered:
        last: _Crashed | None = None
        for _attempt in range(2):
            browser = self._browser
            if browser is None or not browser.is_connected():
                browser = await self._relaunch(browser)
            try:
                return await self._render_once(browser, url, body, content_type, fetch_sub)
            except _Crashed as exc:
                last = exc
                if not exc.page_only:
                    await self._relaunch(browser)
        raise CrawlError(ErrorType.BROWSER_ERROR, f"{url}: browser crashed twice: {last}")

    async def _render_once(
        self, browser: Browser, url: str, body: bytes, content_type: str, fetch_sub: SubFetch
    ) -> Rendered:
        started = time.monotonic()
        deadline = started + self.render_timeout
        state = Interception(url, body, content_type, fetch_sub)
        context: BrowserContext | None = None
        try:
            async with asyncio.timeout(self.render_timeout):
                context = await browser.new_context(
                    user_agent=self.user_agent,
                    service_workers="block",
                    accept_downloads=False,
                    java_script_enabled=True,
                )
                await context.route("**/*", state.on_route)
                await context.route_web_socket(lambda _u: True, state.on_websocket)
                page = await context.new_page()
                state.page = page
                context.on("page", state.on_page)
                page.on("crash", state.on_crash)
                await page.goto(url, wait_until="load", timeout=self.render_timeout * 1000)
                # Keep a slice of the budget for serializing the DOM: a page that never goes quiet
                # (polling) is still rendered, only a page that cannot answer at all is a failure.
                reserve = min(2.0, self.render_timeout * 0.25)
                await state.settle(self.settle_ms / 1000.0, deadline - reserve)
                html = await page.content()
        except TimeoutError:
            if state.crashed or not browser.is_connected():
                raise _Crashed("browser died during render", page_only=browser.is_connected()) from None
            raise CrawlError(ErrorType.BROWSER_ERROR, f"{url}: render timeout after {self.render_timeout:g}s") from None
        except PlaywrightError as exc:
            # Nothing of ours closes the page mid-render, so a closed target means a crash or a kill.
            if state.crashed or isinstance(exc, TargetClosedError) or not browser.is_connected():
                page_only = state.crashed and browser.is_connected()
                raise _Crashed(f"{type(exc).__name__}: {exc.message}", page_only=page_only) from None
            raise CrawlError(ErrorType.BROWSER_ERROR, f"{url}: render failed: {exc.message}") from None
        finally:
            state.cancel_handlers()
            if context is not None:
                await self._discard(browser, context)
        return Rendered(
            url=url,
            html=html,
            elapsed_ms=(time.monotonic() - started) * 1000.0,
            subrequests=state.subrequests,
        )

    async def _discard(self, browser: Browser, context: BrowserContext) -> None:
        if not browser.is_connected():
            return
        try:
            await asyncio.wait_for(context.close(), _CLOSE_TIMEOUT)
        except (TimeoutError, PlaywrightError):
            # A context that will not close means a wedged browser: start over rather than leak it.
            await self._relaunch(browser)
