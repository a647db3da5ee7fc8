"""The metrics endpoint in-process: what it shows, that it is one registry per process, that a scrape is
answered while the event loop is busy, that per-host series stay bounded; and the flags' errors (exit 2)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
from contextlib import AsyncExitStack
from pathlib import Path

import prometheus_client
import pytest

from crawler.app.metrics import SCRAPE_WAIT, Metrics
from crawler.app.metrics_http import open_metrics
from crawler.core.config import MetricsSettings, load_config
from crawler.core.errors import ConfigError
from crawler.core.histogram import Histogram
from crawler.core.stats import Counter, Stats, status_class
from crawler.core.urlitem import UrlItem
from frontier.sqlite.store import SqliteStore
from frontier.store import HostLimits
from tests.conftest import run_crawler
from tests.metrics_scrape import Scrape, scrape
from tests.redis_server import free_port
from tests.testweb import Page, Site, TestWeb


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    buckets, total = h.cumulative()
    assert buckets == [(0.1, 2), (1.0, 4), (float("inf"), 5)]  # `le` bounds include the bound itself
    assert total == pytest.approx(8.65) and h.count == 5


def test_status_classes() -> None:
    assert [status_class(s) for s in (200, 204, 301, 404, 503, None, 99, 600)] == [
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "error",
        "error",
        "error",
    ]


async def test_endpoint_shows_what_the_process_counted() -> None:
    port = free_port()
    stats = Stats()
    async with AsyncExitStack() as stack:
        metrics = await open_metrics(stack, MetricsSettings(port=port))
        assert metrics is not None
        metrics.watch_stats(stats)
        other = Stats()  # a second part of the same process (the frontier of `crawl --redis`): summed
        metrics.watch_stats(other)
        stats.incr(Counter.PAGES, 3)
        stats.page(200, 1000)
        stats.page(200, 500)
        stats.page(None, 0)
        stats.error("timeout")
        other.incr(Counter.DUPLICATE_URLS, 7)
        other.skip("out_of_scope", 2)
        metrics.fetch_seconds.observe(0.02)
        metrics.politeness_wait.observe(1.5)
        got = await asyncio.to_thread(scrape, port)
        assert got.labels("crawler_pages_total", "status_class") == {
            "2xx": 2,
            "3xx": 0,
            "4xx": 0,
            "5xx": 0,
            "error": 1,
        }
        assert got.value("crawler_page_bytes_total", status_class="2xx") == 1500
        assert got.value("crawler_errors_total", type="timeout") == 1
        assert got.value("crawler_errors_total", type="dns_error") == 0  # every type has a series
        assert got.value("crawler_duplicate_urls_total") == 7
        assert got.value("crawler_skipped_urls_total", reason="out_of_scope") == 2
        assert got.types["crawler_fetch_duration_seconds"] == "histogram"
        assert got.value("crawler_fetch_duration_seconds_bucket", le="0.025") == 1
        assert got.value("crawler_fetch_duration_seconds_count") == 1
        assert got.value("crawler_politeness_wait_seconds_bucket", le="1.0") == 0
        assert got.value("crawler_politeness_wait_seconds_bucket", le="2.0") == 1
        assert got.value("process_resident_memory_bytes") > 0
        # Its own registry: nothing of ours lands in prometheus_client's global one.
        assert not [m.name for m in prometheus_client.REGISTRY.collect() if m.name.startswith("crawler_")]
    # The stack closed the server: nothing listens on the port any more.
    with pytest.raises(urllib.error.URLError):
        scrape(port, timeout=1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the scrapes' TIME_WAIT, not a listener
        s.bind(("127.0.0.1", port))
        s.listen()


async def test_two_metrics_objects_do_not_share_state() -> None:
    one, two = Metrics(MetricsSettings()), Metrics(MetricsSettings())
    one.fetch_seconds.observe(0.1)
    stats = Stats()
    stats.page(200, 1)
    one.watch_stats(stats)
    assert one.registry is not two.registry
    assert one.registry.get_sample_value("crawler_pages_total", {"status_class": "2xx"}) == 1
    assert two.registry.get_sample_value("crawler_pages_total", {"status_class": "2xx"}) is None
    assert two.registry.get_sample_value("crawler_fetch_duration_seconds_count") == 0


async def test_scrape_is_answered_while_the_event_loop_is_busy(tmp_path: Path) -> None:
    """Counters are read off the loop; queue sizes need the loop, so a scrape waits for it SCRAPE_WAIT at most
    and then shows the last values read."""
    port = free_port()
    async with AsyncExitStack() as stack:
        metrics = await open_metrics(stack, MetricsSettings(port=port))
        assert metrics is not None
        stats = Stats()
        metrics.watch_stats(stats)
        store = await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits())
        stack.push_async_callback(store.close)
        metrics.watch_store(stack, store)
        await store.add([UrlItem("http://a.test/1", "a.test", 0)], 1.0)
        first = await asyncio.to_thread(scrape, port)  # the loop is free: the read is fresh
        assert first.value("crawler_frontier_urls", state="queued") == 1
        await store.add([UrlItem("http://a.test/2", "a.test", 0)], 1.0)
        stats.page(200, 10)
        answered: list[tuple[float, Scrape]] = []

        def scrape_once() -> None:
            got = scrape(port)
            answered.append((time.monotonic(), got))

        blocked_at = time.monotonic()
        thread = threading.Thread(target=scrape_once)
        thread.start()
        time.sleep(3.0)  # the loop is stuck (a long parse, say): no await for three seconds
        thread.join(timeout=10)
        assert answered, "no answer"
        at, got = answered[0]
        assert at - blocked_at < SCRAPE_WAIT + 1.0 < 3.0
        assert got.value("crawler_pages_total", status_class="2xx") == 1  # counters: live
        assert got.value("crawler_frontier_urls", state="queued") == 1  # queue sizes: as last read
        await asyncio.sleep(0.05)  # the loop is back: the read the scrape asked for runs now
        again = await asyncio.to_thread(scrape, port)
        assert again.value("crawler_frontier_urls", state="queued") == 2


async def test_host_queue_depth_shows_only_the_deepest_hosts(tmp_path: Path) -> None:
    port = free_port()
    async with AsyncExitStack() as stack:
        metrics = await open_metrics(stack, MetricsSettings(port=port, top_hosts=3))
        assert metrics is not None
        store = await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits())
        stack.push_async_callback(store.close)
        # 40 hosts, h<i> with i % 9 + 1 URLs: a label per host would be 40 series.
        await store.add(
            [UrlItem(f"http://h{i}.test/{j}", f"h{i}.test", 0) for i in range(40) for j in range(i % 9 + 1)], 1.0
        )
        metrics.watch_store(stack, store)
        got: Scrape = await asyncio.to_thread(scrape, port)
        assert got.labels("crawler_host_queued_urls", "host") == {"h17.test": 9, "h26.test": 9, "h35.test": 9}
        assert got.value("crawler_frontier_urls", state="queued") == sum(i % 9 + 1 for i in range(40))
        assert got.value("crawler_frontier_hosts") == 40


async def test_a_port_in_use_is_a_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        async with AsyncExitStack() as stack:
            with pytest.raises(ConfigError, match=rf"--metrics-port {port}: cannot listen on 127.0.0.1:{port}: "):
                await open_metrics(stack, MetricsSettings(port=port))
    async with AsyncExitStack() as stack:
        # An address of no interface here (TEST-NET-1): bind() fails locally, nothing is sent.
        with pytest.raises(ConfigError, match=r"cannot listen on 192.0.2.1:\d+: Cannot assign requested address"):
            await open_metrics(stack, MetricsSettings(port=free_port(), host="192.0.2.1"))
        assert await open_metrics(stack, MetricsSettings(port=0)) is None  # 0: off


def test_metrics_config_keys_are_checked() -> None:
    assert load_config(overrides={"metrics": {"port": 9100, "host": "0.0.0.0"}}).metrics.port == 9100
    with pytest.raises(ConfigError, match=r"metrics.port: must be <= 65535"):
        load_config(overrides={"metrics": {"port": 70000}})
    with pytest.raises(ConfigError, match=r"unknown key metrics.prot"):
        load_config(overrides={"metrics": {"prot": 1}})


def test_bad_metrics_flags_exit_2_naming_the_flag(tmp_path: Path) -> None:
    for args, expected in [
        (["crawl", "http://a.test/", "--metrics-port", "http"], "argument --metrics-port: expected a port number"),
        (["crawl", "http://a.test/", "--metrics-port", "70000"], "argument --metrics-port: expected a port number"),
        (["worker", "--redis", "redis://127.0.0.1:1/0", "--metrics-port", "-1"], "argument --metrics-port"),
        (["frontier", "--redis", "redis://127.0.0.1:1/0", "--metrics-port", "x"], "argument --metrics-port"),
    ]:
        proc = run_crawler(*args, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert expected in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_busy_metrics_port_stops_before_any_work(tmp_path: Path) -> None:
    """A crawl, a worker and a frontier whose port is taken exit 2 with a clear message; no request goes out,
    and Redis is not even contacted (nothing listens on port 1)."""
    site = Site(pages={"/": Page("<html><body>hi</body></html>")})
    with TestWeb({"a.test": site}) as web, socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        out = tmp_path / "o"
        crawl = ["crawl", web.url("a.test"), "-o", str(out), "--resolve", "*.test=127.0.0.1", "--no-progress"]
        worker = ["worker", "--redis", "redis://127.0.0.1:1/0", "-o", str(tmp_path / "w")]
        frontier = ["frontier", "--redis", "redis://127.0.0.1:1/0"]
        for args in (crawl, worker, frontier):
            proc = run_crawler(*args, "--metrics-port", port, timeout=60)
            assert proc.returncode == 2, (args[0], proc.stderr)
            assert (
                f"crawler: error: --metrics-port {port}: cannot listen on 127.0.0.1:{port}: Address already in use"
                in (proc.stderr)
            ), proc.stderr
        assert web.log == []
        assert not (out / "pages.jsonl").exists()
