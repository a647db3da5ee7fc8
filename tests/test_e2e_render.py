"""End to end: pages that need JavaScript are rendered (and only those), politely and safely."""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

import pytest

from crawler.render.find import find_browser
from tests.conftest import page_key, read_records, run_crawler, start_crawler
from tests.testweb import Page, Site, TestWeb

if find_browser() is None and os.environ.get("CI") != "true":
    pytest.skip("no Chromium installed (apt-get install chromium); CI=true makes this fail", allow_module_level=True)

DELAY = 0.3
TEXT = " ".join(f"Plain paragraph {i} about rivers, lanterns and copper meadows." for i in range(20))


def _plain(title: str, links: list[str] = ()) -> Page:  # type: ignore[assignment]
    anchors = "".join(f'<a href="{h}">{h}</a> ' for h in links)
    return Page(f"<html><head><title>{title}</title></head><body><p>{TEXT}</p>{anchors}</body></html>")


def _js_site() -> Site:
    make_links = (
        "for (const u of LINKS) { const a = document.createElement('a'); a.href = u; a.textContent = u;"
        " document.getElementById('root').appendChild(a); }"
    )
    js = {"Content-Type": "application/javascript"}
    pages = {
        "/": _plain("home", ["/plain", "/spa", "/xhr", "/assets"]),
        "/plain": _plain("plain"),
        "/spa": Page(
            '<html><head><title>spa</title></head><body><div id="root"></div>'
            '<script src="/app.js"></script></body></html>'
        ),
        "/app.js": Page(f"const LINKS = ['/from-script-1', '/from-script-2']; {make_links}", headers=js),
        "/xhr": Page(
            '<html><head><title>xhr</title></head><body><div id="root"></div><script>'
            "fetch('/data.json').then(r => r.json()).then(d => { const LINKS = d.links; " + make_links + " });"
            "</script></body></html>"
        ),
        "/data.json": Page('{"links": ["/from-xhr-1"]}', headers={"Content-Type": "application/json"}),
        "/assets": Page(
            "<html><head><title>assets</title><style>@font-face { font-family: f; src: url(/font.woff2); }"
            ' body { font-family: f; }</style></head><body><div id="root"></div><img src="/img.png">'
            "<script>fetch('/private/secret.json').catch(() => {});"
            " fetch('http://127.0.0.2:@PORT@/evil').catch(() => {});"
            " const LINKS = ['/after-assets']; " + make_links + "</script></body></html>"
        ),
        "/img.png": Page(b"\x89PNG\r\n\x1a\n", headers={"Content-Type": "image/png"}),
        "/font.woff2": Page(b"wOF2", headers={"Content-Type": "font/woff2"}),
        "/private/secret.json": Page("{}", headers={"Content-Type": "application/json"}),
    }
    for p in ("/from-script-1", "/from-script-2", "/from-xhr-1", "/after-assets"):
        pages[p] = _plain(p)
    return Site(pages=pages, robots="User-agent: *\nDisallow: /private/\n")


def test_js_pages_rendered_plain_pages_not_politely_and_safely(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with TestWeb({"js.test": _js_site()}) as web, TestWeb({"127.0.0.2": Site(pages={"/evil": _plain("evil")})}) as evil:
        proc = run_crawler(
            "crawl",
            web.url("js.test"),
            "-o",
            str(out),
            "--delay",
            str(DELAY),
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
            timeout=240,
        )
        log = web.log
        evil_log = evil.log
    assert proc.returncode == 0, proc.stderr
    recs = {page_key(r["url"]): r for r in read_records(out / "pages.jsonl")}
    assert recs["js.test/plain"]["rendered"] is False
    assert recs["js.test/"]["rendered"] is False
    for key, reason_expected in [("js.test/spa", True), ("js.test/xhr", True), ("js.test/assets", True)]:
        assert recs[key]["rendered"] is reason_expected, recs[key]
        assert recs[key]["render_reason"], recs[key]
    for followed in ("from-script-1", "from-script-2", "from-xhr-1", "after-assets"):
        assert recs[f"js.test/{followed}"]["status"] == 200, followed
    paths = [r.path for r in log]
    assert paths.count("/spa") == 1 and paths.count("/xhr") == 1  # the browser reused the HTTP body
    assert "/app.js" in paths and "/data.json" in paths
    assert not {"/img.png", "/font.woff2", "/private/secret.json"} & set(paths)
    assert evil_log == []
    times = sorted(r.started for r in log)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= DELAY - 0.01, min(gaps)


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid]
        found += kids
        frontier += kids
    return found


def _browser_pids(root: int) -> list[int]:
    pids = []
    for pid in _descendants(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"--crawler-browser-pool=" in cmd:
            pids.append(pid)
    return pids


def test_browser_killed_mid_crawl_every_page_still_recorded(tmp_path: Path) -> None:
    n = 8
    pages: dict[str, Page] = {"/": _plain("home", [f"/spa{i}" for i in range(n)])}
    for i in range(n):
        pages[f"/spa{i}"] = Page(
            f'<html><head><title>spa {i}</title></head><body><div id="root"></div><script>'
            f"setTimeout(() => {{ const a = document.createElement('a'); a.href = '/leaf{i}';"
            f" a.textContent = 'leaf'; document.getElementById('root').appendChild(a); }}, 300);"
            "</script></body></html>"
        )
        pages[f"/leaf{i}"] = _plain(f"leaf {i}")
    out = tmp_path / "out"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[fetch]\nretry_backoff = [0.2, 0.2]\n")
    with TestWeb({"kill.test": Site(pages=pages)}) as web:
        proc = start_crawler(
            "crawl",
            web.url("kill.test"),
            "-o",
            str(out),
            "-c",
            str(cfg),
            "--delay",
            "0.05",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
            log=tmp_path / "crawl.log",
        )
        killed = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            pids = _browser_pids(proc.pid)
            if pids and len(read_records(out / "pages.jsonl")) >= 2:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed += 1
                    except ProcessLookupError:
                        pass
            time.sleep(0.05)
        assert killed, "the browser never started"
        assert proc.wait(timeout=180) == 0, (tmp_path / "crawl.log").read_text()[-3000:]
    recs = {page_key(r["url"]): r for r in read_records(out / "pages.jsonl")}
    for i in range(n):
        assert recs[f"kill.test/spa{i}"]["rendered"] is True
        assert recs[f"kill.test/leaf{i}"]["status"] == 200
