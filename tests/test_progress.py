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
