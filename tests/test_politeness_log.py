"""Politeness seen from the server: request starts on one host stay a delay apart, robots.txt included.

These tests drive the real `crawler crawl` command (embedded, and `--redis` with a private
redis-server) against the multi-host test web and judge only the server's request log: for every
host, consecutive request *starts* (robots.txt among them) must be at least the host's delay apart.
The set-ups aim at the moment right after a host's robots.txt answers, when several of its URLs
are already leased (per-host concurrency 2) and all of them were waiting for that answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import page_key, read_records, run_crawler
from tests.redis_server import RedisServer
from tests.testweb import Handler, LoggedRequest, Page, Site, TestWeb

pytest_plugins = ["redis_server"]

TOLERANCE = 0.02  # seconds: scheduling noise allowed on each gap, far below the gaps we check
ROBOTS_DELAY = 0.7  # robots.txt answers this late: longer than the delay, so URLs are due while it is in flight
PAGE_DELAY = 0.6  # pages answer this late: longer than the delay, so two requests to a host overlap
MODES = ["embedded", "redis"]


def _leaf(host: str, path: str) -> Page:
    return Page(
        f"<html><head><title>{host}{path}</title></head><body><p>leaf {path}</p></body></html>", delay=PAGE_DELAY
    )


def _site(host: str, n_pages: int, robots: str) -> Site:
    """A seed page linking to `/p1`…`/pN` (leaves) and a robots.txt that answers ROBOTS_DELAY s late."""
    links = "".join(f'<li><a href="/p{i}">p{i}</a></li>' for i in range(1, n_pages + 1))
    pages: dict[str, Page | Handler] = {
        "/": Page(f"<html><head><title>{host}</title></head><body><ul>{links}</ul></body></html>"),
        # Served from `pages` (checked before the built-in robots.txt), so it can be slow.
        "/robots.txt": Page(robots, headers={"Content-Type": "text/plain"}, delay=ROBOTS_DELAY),
    }
    pages.update({f"/p{i}": _leaf(host, f"/p{i}") for i in range(1, n_pages + 1)})
    return Site(pages=pages)


def _seeds(web: TestWeb, hosts: list[str], direct: int) -> list[str]:
    """Each host's `/` plus `/p1`…`/p{direct}`: several URLs of every host queued before any request."""
    return [web.url(h, p) for h in hosts for p in ["/", *(f"/p{i}" for i in range(1, direct + 1))]]


def _crawl(
    mode: str,
    web: TestWeb,
    seeds: list[str],
    cfg: Path,
    out: Path,
    make_redis_server: Callable[..., RedisServer] | None,
    job: str,
) -> None:
    args = [
        "crawl",
        *seeds,
        "-o",
        str(out),
        "-c",
        str(cfg),
        "--concurrency",
        "16",
        "--resolve",
        "*.test=127.0.0.1",
        "--allow-private",
        "--no-progress",
    ]
    if mode == "redis":
        assert make_redis_server is not None
        server = make_redis_server()
        args += ["--redis", server.url, "--job", job]
    proc = run_crawler(*args, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _paths(n_pages: int) -> list[str]:
    return ["/", *(f"/p{i}" for i in range(1, n_pages + 1))]


def _records_ok(out: Path) -> set[str]:
    files = [out / "pages.jsonl", *sorted(out.glob("pages-*.jsonl"))]
    return {page_key(r["url"]) for p in files for r in read_records(p) if r["error"] is None}


def _gaps(log: list[LoggedRequest], host: str) -> list[tuple[float, str, str]]:
    """(gap, earlier path, later path) between consecutive request starts on `host`."""
    reqs = sorted((r for r in log if r.host == host), key=lambda r: r.started)
    return [(b.started - a.started, a.path, b.path) for a, b in itertools.pairwise(reqs)]


def _assert_spaced(log: list[LoggedRequest], hosts: list[str], delay: float) -> dict[str, float]:
    """Every host's consecutive request starts are `delay` apart (within TOLERANCE); returns min gaps."""
    by_host = {host: _gaps(log, host) for host in hosts}
    assert all(by_host.values()), f"a host got fewer than two requests: {by_host}"
    minima = {h: min(g[0] for g in gaps) for h, gaps in by_host.items()}
    report = {
        h: {
            "min_gap": round(minima[h], 4),
            "too_close": [(round(g, 4), a, b) for g, a, b in gaps if g < delay - TOLERANCE],
            "starts": [(round(g, 3), b) for g, _, b in gaps],
        }
        for h, gaps in by_host.items()
    }
    print(f"min gaps per host (delay {delay} s): {minima}")
    assert all(m >= delay - TOLERANCE for m in minima.values()), f"starts closer than {delay} s: {report}"
    return minima


@pytest.mark.parametrize("mode", MODES)
def test_two_hosts_concurrency_two_keep_starts_a_delay_apart_after_slow_robots(
    mode: str, tmp_path: Path, request: pytest.FixtureRequest, redis_job: str
) -> None:
    """Per-host concurrency 2 and delay 0.5 s on two hosts, several URLs of each leased while robots.txt
    is still in flight: the server sees no two starts on one host closer than 0.5 s (20 ms tolerance),
    the first page requests after robots.txt included, and concurrency 2 is actually used (overlaps)."""
    delay, n_pages = 0.5, 8
    hosts = ["a.test", "b.test"]
    sites = {h: _site(h, n_pages, "User-agent: *\nAllow: /\n") for h in hosts}
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f"[politeness]\ndelay = {delay}\n"
        + "".join(f'[domains."{h}"]\nconcurrency = 2\ndelay = {delay}\n' for h in hosts)
    )
    make = request.getfixturevalue("make_redis_server") if mode == "redis" else None
    with TestWeb(sites) as web:
        _crawl(mode, web, _seeds(web, hosts, direct=4), cfg, tmp_path / "out", make, redis_job)
        log = web.log
    # The /sitemap.xml each host is asked for (a 404, recorded without error) waits its turn like a page.
    probes = {f"{h}/sitemap.xml" for h in hosts}
    assert _records_ok(tmp_path / "out") == {f"{h}{p}" for h in hosts for p in _paths(n_pages)} | probes
    for host in hosts:
        first = min((r for r in log if r.host == host), key=lambda r: r.started)
        assert first.path == "/robots.txt", (host, first.path)
        assert sum(1 for r in log if r.host == host and r.path == "/robots.txt") == 1
    _assert_spaced(log, hosts, delay)
    # The scenario is the one that matters: two requests to a host did overlap (concurrency 2 in use).
    for host in hosts:
        reqs = sorted((r for r in log if r.host == host), key=lambda r: r.started)
        assert any(b.started < a.finished for a, b in itertools.pairwise(reqs)), f"{host}: never two in flight"


@pytest.mark.parametrize("mode", MODES)
def test_robots_crawl_delay_spaces_starts_with_concurrency_two(
    mode: str, tmp_path: Path, request: pytest.FixtureRequest, redis_job: str
) -> None:
    """robots.txt `Crawl-delay: 1` outweighs a configured delay of 0.2 s with per-host concurrency 2:
    the server sees request starts on the host at least 1 s apart (20 ms tolerance), robots.txt and the
    first pages after it included, although several URLs were leased before the Crawl-delay was known."""
    crawl_delay, n_pages = 1.0, 6
    host = "slow.test"
    sites = {host: _site(host, n_pages, "User-agent: *\nCrawl-delay: 1\nAllow: /\n")}
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[politeness]\ndelay = 0.2\n[domains."{host}"]\nconcurrency = 2\ndelay = 0.2\n')
    make = request.getfixturevalue("make_redis_server") if mode == "redis" else None
    with TestWeb(sites) as web:
        _crawl(mode, web, _seeds(web, [host], direct=3), cfg, tmp_path / "out", make, redis_job)
        log = web.log
    assert _records_ok(tmp_path / "out") == {f"{host}{p}" for p in _paths(n_pages)} | {f"{host}/sitemap.xml"}
    assert min((r for r in log if r.host == host), key=lambda r: r.started).path == "/robots.txt"
    _assert_spaced(log, [host], crawl_delay)
