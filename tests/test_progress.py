"""The progress line: pages, queued, rate, errors, hosts, and an ETA only when a page limit is set."""

from crawler.core.stats import Stats
from crawler.output.progress import describe


def test_progress_line_with_and_without_a_limit() -> None:
    stats = Stats()
    stats.incr("pages", 50)
    stats.incr("failed", 2)
    snap = stats.snapshot(queued=120, in_flight=8, hosts=5)
    snap["pages_per_s"] = 10.0
    line = describe(snap, max_pages=100)
    assert "pages 50/100" in line and "queued 120" in line and "in-flight 8" in line
    assert "10.0 pages/s" in line and "errors 2" in line and "hosts 5" in line
    assert "ETA 0:00:05" in line
    assert "ETA -" in describe(snap, max_pages=0) and "pages 50 " in describe(snap, max_pages=0)


def test_progress_line_names_the_hosts_waiting_for_robots_txt_and_why() -> None:
    """A crawl stalled on robots.txt must not look idle: waiting hosts, cause, tries and next try are shown."""
    snap = Stats().snapshot(queued=1, in_flight=0, hosts=1)
    assert "waiting" not in describe(snap, max_pages=0)
    snap["robots_waiting"] = [
        {"host": f"http://h{i}.test", "reason": reason, "tries": i + 1, "retry_in": 4.0}
        for i, reason in enumerate(["dns_error", "503", "timeout", "connection_error"])
    ]
    line = describe(snap, max_pages=0)
    assert "waiting for robots.txt 4: http://h0.test (dns_error, try 1, next in 4s)" in line
    assert "http://h1.test (503, try 2, next in 4s)" in line and "timeout" in line
    assert "connection_error" not in line and line.endswith("+1 more")


async def test_embedded_snapshot_lists_the_waiting_origins() -> None:
    from crawler.app.embedded import waiting_hosts
    from crawler.core.errors import CrawlError, ErrorType
    from crawler.fetch.robots import RobotsCache, RobotsResponse

    async def unreachable(url: str) -> RobotsResponse:
        raise CrawlError(ErrorType.DNS, "no such host")

    now = 1000.0
    cache = RobotsCache(unreachable, product_token="x", error_first=2.0, clock=lambda: now)
    await cache.get("http://gone.test")
    assert waiting_hosts(cache, now=now + 0.5) == [
        {"host": "http://gone.test", "reason": "dns_error", "tries": 1, "retry_in": 1.5}
    ]
