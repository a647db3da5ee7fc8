"""Scraping `/metrics` of real crawler processes while they crawl the loopback test web: embedded, a frontier
and a worker on Redis, and `crawl --redis` (one endpoint for both parts). A politeness delay makes each
crawl last long enough to scrape twice and see counters and histograms move."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import run_crawler, start_crawler
from tests.metrics_scrape import Scrape, scrape_until
from tests.redis_server import RedisServer, free_port
from tests.testweb import TestWeb, make_link_web

pytest_plugins = ["redis_server"]

DELAY = 0.4  # 3 hosts of ~14 pages: a crawl of ~6 s
RESOLVE = ["--resolve", "*.test=127.0.0.1"]


@pytest.fixture
def web() -> Iterator[TestWeb]:
    sites, _reachable, _disallowed = make_link_web(n_hosts=3, pages_per_host=10, seed=5)
    with TestWeb(sites) as served:
        yield served


def _seeds(web: TestWeb) -> list[str]:
    return [web.url(f"h{i}.test") for i in range(3)]


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _pages(s: Scrape) -> float:
    return s.total("crawler_pages_total")


def _moved(first: Scrape, second: Scrape, *names: str) -> None:
    for name in names:
        assert second.total(name) > first.total(name), (name, first.total(name), second.total(name))


def _scrape_twice(port: int, alive: Callable[[], bool]) -> tuple[Scrape, Scrape]:
    """A scrape once pages are being recorded, and one once a few more pages were recorded."""
    first = scrape_until(port, lambda s: _pages(s) >= 1, alive=alive)
    second = scrape_until(port, lambda s: _pages(s) >= _pages(first) + 3, alive=alive)
    return first, second


def test_embedded_crawl_metrics_move(web: TestWeb, tmp_path: Path) -> None:
    port = free_port()
    # Sitemaps off: the 2xx count below must move between the scrapes, not only the hosts' /sitemap.xml 404s.
    proc = start_crawler(
        "crawl", *_seeds(web), "-o", str(tmp_path / "out"), "--delay", str(DELAY), *RESOLVE, "--no-progress",
        "--metrics-port", str(port), "--no-sitemaps", log=tmp_path / "crawl.log",
    )  # fmt: skip
    try:
        first, second = _scrape_twice(port, lambda: proc.poll() is None)
        _moved(
            first,
            second,
            "crawler_pages_total",
            "crawler_page_bytes_total",
            "crawler_fetched_total",
            "crawler_fetch_duration_seconds_count",
            "crawler_fetch_duration_seconds_sum",
            "crawler_politeness_wait_seconds_count",
            "crawler_robots_cache_hits_total",
        )
        assert second.value("crawler_pages_total", status_class="2xx") > first.value(
            "crawler_pages_total", status_class="2xx"
        )
        assert second.types["crawler_fetch_duration_seconds"] == "histogram"
        # The per-host delay shows: requests after the first on a host waited about DELAY at its gate.
        waited = second.value("crawler_politeness_wait_seconds_bucket", le="+Inf") - second.value(
            "crawler_politeness_wait_seconds_bucket", le="0.1"
        )
        assert waited >= 1
        assert second.value("crawler_robots_cache_misses_total") >= 3  # one per host, at least
        assert second.value("crawler_frontier_urls", state="done") >= 1
        # Three hosts, top 10 shown: every queued URL is in the per-host series (keyed by host:port).
        shown = [s.labels("crawler_host_queued_urls", "host") for s in (first, second)]
        assert any(shown)
        for scrape, deepest in zip((first, second), shown, strict=True):
            assert {h.split(":")[0] for h in deepest} <= {"h0.test", "h1.test", "h2.test"}
            assert sum(deepest.values()) == scrape.value("crawler_frontier_urls", state="queued")
        assert "crawler_redis_requests_total" not in second.text  # no Redis in an embedded crawl
        assert proc.wait(timeout=120) == 0, (tmp_path / "crawl.log").read_text()[-3000:]
    finally:
        _stop(proc)


def test_frontier_and_worker_metrics_move(
    web: TestWeb, tmp_path: Path, make_redis_server: Callable[..., RedisServer], redis_job: str
) -> None:
    server = make_redis_server()
    common = ["--redis", server.url, "--job", redis_job]
    cfg = tmp_path / "job.toml"
    cfg.write_text(f"[politeness]\ndelay = {DELAY}\n[crawl]\nmax_depth = 100\n")
    proc = run_crawler("submit", *_seeds(web), *common, "-c", str(cfg), *RESOLVE)
    assert proc.returncode == 0, proc.stderr
    fport, wport = free_port(), free_port()
    frontier = start_crawler("frontier", *common, "--metrics-port", str(fport), log=tmp_path / "frontier.log")
    worker = start_crawler(
        "worker", *common, "--id", "w1", "-o", str(tmp_path / "out"), "--metrics-port", str(wport),
        log=tmp_path / "worker.log",
    )  # fmt: skip
    try:
        alive = lambda: frontier.poll() is None and worker.poll() is None  # noqa: E731
        w1, w2 = _scrape_twice(wport, alive)
        _moved(
            w1,
            w2,
            "crawler_pages_total",
            "crawler_fetch_duration_seconds_count",
            "crawler_politeness_wait_seconds_count",
            "crawler_redis_requests_total",
        )
        assert w2.value("crawler_redis_requests_total", kind="script") > w1.value(
            "crawler_redis_requests_total", kind="script"
        )
        assert w2.value("crawler_leases_in_flight") >= 0
        assert "crawler_workers_alive" not in w2.text  # the frontier's, not the worker's
        f1 = scrape_until(fport, lambda s: s.total("crawler_workers_alive") == 1, alive=alive)
        f2 = scrape_until(
            fport, lambda s: s.total("crawler_redis_requests_total") > f1.total("crawler_redis_requests_total")
        )
        assert f2.value("crawler_frontier_leader") == 1
        assert f2.value("crawler_workers_alive") == 1
        assert f2.value("crawler_frontier_urls", state="done") + f2.value("crawler_frontier_urls", state="queued") > 0
        assert "crawler_fetch_duration_seconds_count 0.0" in f2.text  # the frontier fetches nothing
    finally:
        _stop(worker, frontier)


def test_crawl_on_redis_shows_frontier_and_worker_on_one_endpoint(
    web: TestWeb, tmp_path: Path, make_redis_server: Callable[..., RedisServer], redis_job: str
) -> None:
    server = make_redis_server()
    port = free_port()
    proc = start_crawler(
        "crawl", *_seeds(web), "--redis", server.url, "--job", redis_job, "-o", str(tmp_path / "out"),
        "--delay", str(DELAY), *RESOLVE, "--no-progress", "--metrics-port", str(port), log=tmp_path / "crawl.log",
    )  # fmt: skip
    try:
        first, second = _scrape_twice(port, lambda: proc.poll() is None)
        _moved(
            first, second, "crawler_pages_total", "crawler_fetch_duration_seconds_count", "crawler_redis_requests_total"
        )
        assert second.value("crawler_workers_alive") == 1 and second.value("crawler_frontier_leader") == 1
        assert proc.wait(timeout=120) == 0, (tmp_path / "crawl.log").read_text()[-3000:]
    finally:
        _stop(proc)
    # The flag is this process's: the job's stored configuration does not carry it to other processes.
    import redis

    client = redis.Redis.from_url(server.url)
    try:
        stored = client.get(f"crawl:{{{redis_job}}}:config")
    finally:
        client.close()
    assert stored is not None and b"metrics" not in stored and b'"delay"' in stored
