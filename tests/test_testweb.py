"""The multi-host test web: host routing, logging, robots, hostile handlers, and the generated link web."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import deque
from urllib.parse import urldefrag, urljoin, urlsplit

import aiohttp
import pytest

from tests.testweb import Page, Site, TestWeb, make_link_web

# No proxies from the environment: every request must go straight to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(web: TestWeb, host: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    """A blocking GET to the test web with an explicit Host header, from the calling thread."""
    req = urllib.request.Request(f"http://127.0.0.1:{web.port}{path}", headers={"Host": host})
    try:
        with _OPENER.open(req, timeout=5) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def test_routes_by_host_and_logs() -> None:
    sites = {
        "one.test": Site({"/": Page("first site"), "/q?x=1": Page("with query")}, robots="User-agent: *\n"),
        "Two.Test": Site({"/": Page(b"second site", status=201, headers={"X-Site": "2"})}),
        "three.test": Site({}, robots="User-agent: *\nDisallow: /", robots_status=503),
    }
    with TestWeb(sites) as web:
        assert web.url("one.test", "/a") == f"http://one.test:{web.port}/a"
        assert get(web, f"one.test:{web.port}", "/")[:2] == (200, b"first site")
        status, body, headers = get(web, "two.test", "/")
        assert (status, body, headers["X-Site"]) == (201, b"second site", "2")
        assert get(web, "one.test", "/q?x=1")[1] == b"with query"
        assert get(web, "one.test", "/missing")[0] == 404
        assert get(web, "nobody.test", "/")[0] == 404
        assert get(web, "one.test", "/robots.txt")[:2] == (200, b"User-agent: *\n")
        assert get(web, "two.test", "/robots.txt")[0] == 404
        assert get(web, "three.test", "/robots.txt")[0] == 503

        log = web.log
        assert [(r.host, r.path, r.status) for r in log] == [
            ("one.test", "/", 200),
            ("two.test", "/", 201),
            ("one.test", "/q?x=1", 200),
            ("one.test", "/missing", 404),
            ("nobody.test", "/", 404),
            ("one.test", "/robots.txt", 200),
            ("two.test", "/robots.txt", 404),
            ("three.test", "/robots.txt", 503),
        ]
        assert all(r.method == "GET" and r.started <= r.finished for r in log)
        assert log[0].headers["Host"] == f"one.test:{web.port}"
        assert web.count("one.test", "/") == 1 and web.count("one.test", "/nope") == 0
        assert [r.path for r in web.requests_for("two.test")] == ["/", "/robots.txt"]
        assert web.resolve_map() == {
            "one.test": "127.0.0.1",
            "two.test": "127.0.0.1",
            "three.test": "127.0.0.1",
        }


def test_delay_handler_port_token_and_concurrency() -> None:
    async def handler(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        return aiohttp.web.Response(text=f"handled {request.method}", status=418)

    sites = {
        "s.test": Site({"/slow": Page("slow", delay=0.3), "/h": handler, "/port": Page("see http://s.test:@PORT@/x")})
    }
    with TestWeb(sites) as web:
        assert get(web, "s.test", "/h")[:2] == (418, b"handled GET")
        assert get(web, "s.test", "/port")[1] == f"see http://s.test:{web.port}/x".encode()
        started = time.monotonic()
        threads = [threading.Thread(target=get, args=(web, "s.test", "/slow")) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Four 0.3 s delays overlap: the server does not serialize requests.
        assert time.monotonic() - started < 1.0
        slow = [r for r in web.log if r.path == "/slow"]
        assert len(slow) == 4 and all(r.finished - r.started >= 0.29 for r in slow)


def test_start_stop_restart_frees_the_port() -> None:
    web = TestWeb({"a.test": Site({"/": Page("x")})}).start()
    port = web.port
    assert get(web, "a.test", "/")[0] == 200
    web.stop()
    with pytest.raises(OSError):
        _OPENER.open(f"http://127.0.0.1:{port}/", timeout=2)


def test_generator_is_deterministic_and_shaped() -> None:
    sites, reachable, disallowed = make_link_web(4, 10, seed=3)
    again = make_link_web(4, 10, seed=3)
    assert {h: {p: v.body for p, v in s.pages.items()} for h, s in sites.items()} == {
        h: {p: v.body for p, v in s.pages.items()} for h, s in again[0].items()
    }
    assert (reachable, disallowed) == again[1:]
    assert set(sites) == {"h0.test", "h1.test", "h2.test", "h3.test"}
    assert {f"h{i}.test/" for i in range(4)} <= reachable
    assert disallowed and all("/private/" in k for k in disallowed)
    assert not any("/private/" in k for k in reachable)
    assert all(f"{h}/orphan.html" not in reachable for h in sites)
    bodies = [p.body for s in sites.values() for p in s.pages.values()]
    assert len(set(bodies)) == len(bodies)
    assert all(s.robots == "User-agent: *\nDisallow: /private/\n" for s in sites.values())
    no_cross = make_link_web(3, 6, cross_links=False)[0]
    assert not any("@PORT@" in str(p.body) for s in no_cross.values() for p in s.pages.values())


def _hrefs(html: str) -> list[str]:
    out, start = [], 0
    while (i := html.find('href="', start)) != -1:
        j = html.find('"', i + 6)
        out.append(html[i + 6 : j])
        start = j + 1
    return out


def test_reachable_set_matches_an_independent_crawl() -> None:
    sites, reachable, disallowed = make_link_web(n_hosts=5, pages_per_host=12, seed=7)
    with TestWeb(sites) as web:
        seen: set[str] = set()
        blocked: set[str] = set()
        depth: dict[str, int] = {}
        queue: deque[str] = deque()
        for host in sites:
            robots = get(web, host, "/robots.txt")[1].decode()
            assert "Disallow: /private/" in robots
            queue.append(web.url(host, "/"))
            depth[f"{host}/"] = 0
        while queue:
            url = queue.popleft()
            parts = urlsplit(url)
            key = f"{parts.hostname}{parts.path}"
            if key in seen:
                continue
            seen.add(key)
            status, body, _ = get(web, f"{parts.hostname}:{parts.port}", parts.path)
            assert status == 200, url
            for href in _hrefs(body.decode()):
                target = urldefrag(urljoin(url, href))[0]
                t = urlsplit(target)
                assert t.port == web.port, target
                tkey = f"{t.hostname}{t.path}"
                if t.path.startswith("/private/"):
                    blocked.add(tkey)
                elif tkey not in seen:
                    depth.setdefault(tkey, depth[key] + 1)
                    queue.append(target)
        assert seen == reachable
        assert blocked == disallowed
        assert max(depth.values()) >= 3  # some pages need several hops
        # The private pages exist (a robots-ignoring crawler would get them), and nothing else was fetched.
        assert get(web, "h0.test", next(k for k in disallowed if k.startswith("h0.test"))[7:])[0] == 200
        assert {f"{r.host}{r.path}" for r in web.log if r.path != "/robots.txt"} == reachable | {
            next(k for k in disallowed if k.startswith("h0.test"))
        }
