"""BrowserPool against real Chromium and real loopback servers: interception, settling, crashes, lookup."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest

from crawler.core.errors import CrawlError, ErrorType
from crawler.extract.html import extract
from crawler.fetch.http import HttpFetcher
from crawler.fetch.net import AddressPolicy
from crawler.render.find import SYSTEM_BROWSERS, find_browser
from crawler.render.intercept import MAX_SUBFETCHES
from crawler.render.pool import BrowserPool, BrowserUnavailable, default_pool_size
from crawler.render.types import SubFetch, SubResponse
from tests.testweb import Page, Site, TestWeb

BROWSER = find_browser()
if BROWSER is None and os.environ.get("CI") != "true":
    pytest.skip("no Chromium installed (apt-get install chromium); CI=true makes this fail", allow_module_level=True)

UA = "test-crawler/1.0 (+http://example.invalid/bot)"
JS = {"Content-Type": "text/javascript"}
JSON = {"Content-Type": "application/json"}

SCRIPT_LINKS = """<!doctype html><html><head><title>t</title></head><body><ul id="nav"></ul>
<script>
window.addEventListener('load', () => setTimeout(() => {
  for (const p of ['/js/one', '/js/two', '/js/three']) {
    const li = document.createElement('li'); const a = document.createElement('a');
    a.href = p; a.textContent = p; li.appendChild(a); document.getElementById('nav').appendChild(li);
  }
}, 150));
</script></body></html>"""

XHR = """<!doctype html><html><body><div id="root"></div><script src="/app.js"></script></body></html>"""
APP_JS = """fetch('/api/links.json').then(r => r.json()).then(list => {
  const root = document.getElementById('root');
  for (const u of list) { const a = document.createElement('a'); a.href = u; a.textContent = u; root.appendChild(a); }
});"""

# Everything here must be refused without the server seeing it; @RAW@ is a bare listening socket.
ASSETS = """<!doctype html><html><head>
<meta http-equiv="refresh" content="0;url=/refreshed">
<link rel="preconnect" href="http://127.0.0.1:@RAW@/"><link rel="dns-prefetch" href="http://far.test/">
<link rel="stylesheet" href="/style.css">
<style>@font-face { font-family: Webby; src: url(/font.woff2) format("woff2"); } p { font-family: Webby; }</style>
</head><body><p id="marker">original document</p>
<img src="/pic.png"><img src="http://127.0.0.1:@RAW@/direct.png">
<iframe src="/frame.html"></iframe>
<script src="http://other.test:@PORT@/evil.js"></script>
<script>
fetch('/private/secret.json').catch(() => {});
try { new WebSocket('ws://a.test:@PORT@/ws'); } catch (e) {}
navigator.sendBeacon('/beacon', 'x');
window.open('/popup.html');
window.addEventListener('load', () => setTimeout(() => { location.href = '/elsewhere'; }, 50));
</script></body></html>"""

STORAGE = """<!doctype html><html><body><p id="out"></p><script>
document.getElementById('out').textContent = 'cookie=[' + document.cookie + '] ls=[' + localStorage.getItem('k') + ']';
document.cookie = 'k=v; path=/'; localStorage.setItem('k', 'v');
</script></body></html>"""

FLOOD = """<!doctype html><html><body><script>
for (let i = 0; i < 100; i++) fetch('/api/links.json?i=' + i).catch(() => {});
</script></body></html>"""

HANG = """<!doctype html><html><body><p>spin</p><script>while (true) {}</script></body></html>"""

NEVER_SERVED = ["/style.css", "/font.woff2", "/pic.png", "/frame.html", "/private/secret.json", "/ws"]
NEVER_SERVED += ["/beacon", "/popup.html", "/elsewhere", "/refreshed"]


def _sites() -> dict[str, Site]:
    pages: dict[str, Page] = {
        "/script-links": Page(SCRIPT_LINKS),
        "/xhr": Page(XHR),
        "/app.js": Page(APP_JS, headers=JS),
        "/api/links.json": Page('["/from-json/1", "/from-json/2"]', headers=JSON),
        "/assets": Page(ASSETS),
        "/storage": Page(STORAGE),
        "/hang": Page(HANG),
        "/flood": Page(FLOOD),
    }
    pages.update({p: Page("served anyway") for p in NEVER_SERVED})
    return {
        "a.test": Site(pages),  # type: ignore[arg-type]
        "other.test": Site({"/evil.js": Page("document.title = 'evil';", headers=JS)}),
    }


@pytest.fixture
def web() -> Iterator[TestWeb]:
    with TestWeb(_sites()) as w:
        yield w


@pytest.fixture
async def fetcher(web: TestWeb) -> AsyncIterator[HttpFetcher]:
    async with HttpFetcher(AddressPolicy(resolve=web.resolve_map()), user_agent=UA) as f:
        yield f


def make_fetch_sub(fetcher: HttpFetcher, seen: list[tuple[str, str]]) -> SubFetch:
    """A crawler-like fetch_sub: refuses /private/ (as robots.txt would), fetches the rest for real."""

    async def fetch_sub(url: str, kind: str) -> SubResponse | None:
        seen.append((url, kind))
        if urlsplit(url).path.startswith("/private/"):
            return None
        resp = await fetcher.fetch(url)
        return SubResponse(resp.status, dict(resp.headers), resp.body)

    return fetch_sub


@pytest.fixture
async def pool() -> AsyncIterator[BrowserPool]:
    async with BrowserPool(size=2, user_agent=UA, settle_ms=200, render_timeout=15) as p:
        yield p


async def _main_doc(fetcher: HttpFetcher, web: TestWeb, path: str) -> tuple[str, bytes, str]:
    url = web.url("a.test", path)
    resp = await fetcher.fetch(url)
    web.clear_log()  # from here on, every logged request was made for the render
    return url, resp.body, resp.headers["content-type"]


async def test_links_inserted_by_script_after_load(pool: BrowserPool, fetcher: HttpFetcher, web: TestWeb) -> None:
    url, body, ctype = await _main_doc(fetcher, web, "/script-links")
    assert extract(body.decode()).links == []
    seen: list[tuple[str, str]] = []
    out = await pool.render(url, body=body, content_type=ctype, fetch_sub=make_fetch_sub(fetcher, seen))
    assert extract(out.html).links == ["/js/one", "/js/two", "/js/three"]
    assert out.url == url and out.elapsed_ms > 0
    assert web.count("a.test", "/script-links") == 0  # the document came from `body`, not the server


async def test_xhr_links_go_through_fetch_sub(pool: BrowserPool, fetcher: HttpFetcher, web: TestWeb) -> None:
    url, body, ctype = await _main_doc(fetcher, web, "/xhr")
    seen: list[tuple[str, str]] = []
    out = await pool.render(url, body=body, content_type=ctype, fetch_sub=make_fetch_sub(fetcher, seen))
    assert extract(out.html).links == ["/from-json/1", "/from-json/2"]
    assert seen == [(web.url("a.test", "/app.js"), "script"), (web.url("a.test", "/api/links.json"), "fetch")]
    assert [r.path for r in web.log] == ["/app.js", "/api/links.json"]
    assert (web.url("a.test", "/api/links.json"), "fetch", "served") in out.subrequests


async def test_everything_else_is_refused_without_touching_the_network(
    pool: BrowserPool, fetcher: HttpFetcher, web: TestWeb
) -> None:
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(8)
    raw.setblocking(False)
    try:
        url, body, ctype = await _main_doc(fetcher, web, "/assets")
        body = body.replace(b"@RAW@", str(raw.getsockname()[1]).encode())
        seen: list[tuple[str, str]] = []
        out = await pool.render(url, body=body, content_type=ctype, fetch_sub=make_fetch_sub(fetcher, seen))
        with pytest.raises(BlockingIOError):
            raw.accept()  # no preconnect, no direct image load: Chromium opened no socket of its own
    finally:
        raw.close()

    assert "original document" in out.html  # the scripted navigation and the meta refresh went nowhere
    assert web.log == []
    outcome = {(urlsplit(u).path, kind): how for u, kind, how in out.subrequests}
    assert outcome[("/pic.png", "image")] == "blocked"
    assert outcome[("/direct.png", "image")] == "blocked"
    assert outcome[("/font.woff2", "font")] == "blocked"
    assert outcome[("/style.css", "stylesheet")] == "blocked"
    assert outcome[("/evil.js", "script")] == "blocked"  # other host: never offered to fetch_sub
    assert outcome[("/private/secret.json", "fetch")] == "refused"  # fetch_sub said no
    assert outcome[("/frame.html", "document")] == "blocked"
    assert outcome[("/elsewhere", "document")] == "blocked"
    assert outcome[("/ws", "websocket")] == "blocked"
    assert [urlsplit(u).path for u, _ in seen] == ["/private/secret.json"]


async def test_subrequests_offered_to_fetch_sub_are_capped(
    pool: BrowserPool, fetcher: HttpFetcher, web: TestWeb
) -> None:
    url, body, ctype = await _main_doc(fetcher, web, "/flood")
    seen: list[tuple[str, str]] = []
    out = await pool.render(url, body=body, content_type=ctype, fetch_sub=make_fetch_sub(fetcher, seen))
    assert len(seen) == MAX_SUBFETCHES
    assert len(web.log) == MAX_SUBFETCHES
    outcomes = [how for _, kind, how in out.subrequests if kind == "fetch"]
    assert outcomes.count("served") == MAX_SUBFETCHES
    assert outcomes.count("blocked") == 100 - MAX_SUBFETCHES


async def test_contexts_do_not_share_cookies_or_storage(pool: BrowserPool, fetcher: HttpFetcher, web: TestWeb) -> None:
    url, body, ctype = await _main_doc(fetcher, web, "/storage")
    fetch_sub = make_fetch_sub(fetcher, [])
    first = await pool.render(url, body=body, content_type=ctype, fetch_sub=fetch_sub)
    second = await pool.render(url, body=body, content_type=ctype, fetch_sub=fetch_sub)
    assert "cookie=[] ls=[null]" in first.html
    assert "cookie=[] ls=[null]" in second.html


async def test_concurrent_renders_share_the_bounded_pool(pool: BrowserPool, fetcher: HttpFetcher, web: TestWeb) -> None:
    url, body, ctype = await _main_doc(fetcher, web, "/xhr")
    fetch_sub = make_fetch_sub(fetcher, [])
    outs = await asyncio.gather(
        *(pool.render(url, body=body, content_type=ctype, fetch_sub=fetch_sub) for _ in range(4))
    )
    assert all(extract(o.html).links == ["/from-json/1", "/from-json/2"] for o in outs)


async def test_hung_page_times_out_and_pool_recovers(fetcher: HttpFetcher, web: TestWeb) -> None:
    fetch_sub = make_fetch_sub(fetcher, [])
    async with BrowserPool(size=1, user_agent=UA, settle_ms=100, render_timeout=3) as pool:
        url, body, ctype = await _main_doc(fetcher, web, "/hang")
        with pytest.raises(CrawlError) as info:
            await pool.render(url, body=body, content_type=ctype, fetch_sub=fetch_sub)
        assert info.value.type is ErrorType.BROWSER_ERROR
        assert "render timeout" in info.value.message
        url, body, ctype = await _main_doc(fetcher, web, "/xhr")
        out = await pool.render(url, body=body, content_type=ctype, fetch_sub=fetch_sub)
        assert extract(out.html).links == ["/from-json/1", "/from-json/2"]


async def test_browser_killed_mid_render_is_retried_once(fetcher: HttpFetcher, web: TestWeb) -> None:
    async with BrowserPool(size=1, user_agent=UA, settle_ms=200, render_timeout=15) as pool:
        first_pids = pool.browser_pids()
        assert first_pids
        inner = make_fetch_sub(fetcher, [])
        kills: list[int] = []

        async def killing_fetch_sub(url: str, kind: str) -> SubResponse | None:
            if kind == "fetch" and not kills:
                # The render is now waiting on this very request: take the whole browser down.
                for pid in pool.browser_pids():
                    os.kill(pid, signal.SIGKILL)
                    kills.append(pid)
                await asyncio.sleep(0.3)
            return await inner(url, kind)

        url, body, ctype = await _main_doc(fetcher, web, "/xhr")
        out = await pool.render(url, body=body, content_type=ctype, fetch_sub=killing_fetch_sub)
        assert kills and pool.launches == 2
        assert extract(out.html).links == ["/from-json/1", "/from-json/2"]
        assert not set(first_pids) & set(pool.browser_pids())
        again = await pool.render(url, body=body, content_type=ctype, fetch_sub=inner)
        assert extract(again.html).links == ["/from-json/1", "/from-json/2"]
    assert pool.browser_pids() == []  # shutdown left no Chromium behind


async def test_browser_killed_every_time_gives_browser_error(fetcher: HttpFetcher, web: TestWeb) -> None:
    async with BrowserPool(size=1, user_agent=UA, settle_ms=200, render_timeout=15) as pool:
        inner = make_fetch_sub(fetcher, [])

        async def always_kill(url: str, kind: str) -> SubResponse | None:
            if kind == "fetch":
                for pid in pool.browser_pids():
                    os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(0.3)
            return await inner(url, kind)

        url, body, ctype = await _main_doc(fetcher, web, "/xhr")
        with pytest.raises(CrawlError) as info:
            await pool.render(url, body=body, content_type=ctype, fetch_sub=always_kill)
        assert info.value.type is ErrorType.BROWSER_ERROR
        out = await pool.render(url, body=body, content_type=ctype, fetch_sub=inner)
        assert extract(out.html).links == ["/from-json/1", "/from-json/2"]
    assert pool.browser_pids() == []


def test_find_browser_prefers_existing_executables(tmp_path: object) -> None:
    system = next((p for p in SYSTEM_BROWSERS if os.access(p, os.X_OK)), None)
    found = find_browser()
    assert found is not None and os.access(found, os.X_OK)
    if system == "/usr/bin/chromium" and "ms-playwright" not in found:
        assert found == "/usr/bin/chromium"
    assert find_browser("/nonexistent/chrome") == found  # a bogus configured path falls through
    assert find_browser("/nonexistent/chrome", fallbacks=False) is None
    assert find_browser(found, fallbacks=False) == found
    assert 1 <= default_pool_size() <= 16


async def test_no_browser_raises_browser_unavailable() -> None:
    pool = BrowserPool(user_agent=UA, executable_path="/nonexistent/chrome", fallbacks=False)
    with pytest.raises(BrowserUnavailable, match="/nonexistent/chrome"):
        async with pool:
            pass
