"""End to end: a host whose robots.txt cannot be fetched waits visibly, is retried within seconds, and a crawl
whose only host stays unreachable ends with dead-lettered records (the real `crawler crawl` process, loopback)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from aiohttp import web

from tests.conftest import page_key, read_records, run_crawler, start_crawler
from tests.testweb import Page, Site, TestWeb


def _unused_loopback_port() -> int:
    """A 127.0.0.1 port nothing listens on: connecting is refused at once (no traffic leaves the machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_crawl_whose_only_host_is_unreachable_says_why_and_ends_with_dead_letters(out_dir: Path) -> None:
    """robots.txt cannot be fetched (connection refused): the log names the host and the cause within seconds,
    robots.txt is retried on the short schedule, and once the seed's attempts are used up it is recorded with
    the typed error and dead-lettered, and the crawl exits 0 (failed pages are data) with a final message."""
    port = _unused_loopback_port()
    seed = f"http://down.test:{port}/"
    cfg = out_dir.parent / "c.toml"
    cfg.write_text(
        "[fetch]\nmax_attempts = 4\n[politeness]\nrobots_retry_first = 0.5\nrobots_error_ttl = 4\nrobots_give_up = 3\n"
    )
    log = out_dir.parent / "crawl.log"
    started = time.monotonic()
    proc = start_crawler(
        "crawl", seed, "-o", str(out_dir), "-c", str(cfg), "--resolve", "down.test=127.0.0.1", "--no-progress", log=log
    )
    said_why = None
    try:
        while proc.poll() is None and time.monotonic() - started < 120:
            if said_why is None and b"unavailable (connection_error)" in log.read_bytes():
                said_why = time.monotonic() - started
            time.sleep(0.05)
        rc = proc.wait(timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - started
    text = log.read_text()
    if said_why is None and "unavailable (connection_error)" in text:
        said_why = took
    assert said_why is not None and said_why < 10, text
    # 0.5 + 1 + 2 s of robots.txt retries, plus start-up: far under a minute (the default ttl alone is 300 s).
    assert took < 30, text
    assert rc == 0, text  # README, exit codes: done, failed pages are data
    assert text.count("WARNING") == 1 and f"robots.txt of http://down.test:{port} unavailable" in text
    assert "1 URLs used up their attempts and are in the dead letters (errors: connection_error 1)" in text
    (rec,) = read_records(out_dir / "pages.jsonl")
    assert rec["url"] == seed and rec["status"] is None
    assert rec["error"]["type"] == "connection_error" and "robots.txt unavailable" in rec["error"]["message"]
    assert rec["dead_letter"] is True and rec["attempts"] == 4
    listed = run_crawler("dead-letters", "list", str(out_dir))
    assert listed.returncode == 0 and seed in listed.stdout


def _robots_down_for(seconds: float, body: str) -> tuple[Page | object, list[float]]:
    """A robots.txt handler answering 503 for `seconds` after its first request, then 200 with `body`."""
    first: list[float] = []
    lock = threading.Lock()

    async def handler(request: web.Request) -> web.StreamResponse:
        with lock:
            if not first:
                first.append(time.monotonic())
        if time.monotonic() - first[0] < seconds:
            return web.Response(status=503, text="busy", headers={"Content-Type": "text/plain"})
        return web.Response(text=body, content_type="text/plain")

    return handler, first


def test_robots_txt_answering_503_for_3_s_then_200_has_its_pages_fetched_within_15_s(out_dir: Path) -> None:
    """Default retry schedule (2 s, 4 s, ...) and attempts: the pages are fetched seconds after robots.txt
    recovers, none before it, and no URL is dead-lettered."""
    page = Page('<html><head><title>x</title></head><body><a href="/a">a</a> <a href="/b">b</a></body></html>')
    robots, first = _robots_down_for(3.0, "User-agent: *\nDisallow: /b\n")
    sites = {"flaky.test": Site(pages={"/": page, "/a": page, "/b": page, "/robots.txt": robots})}  # type: ignore[dict-item]
    with TestWeb(sites) as web:
        proc = run_crawler(
            "crawl",
            web.url("flaky.test", "/"),
            "-o",
            str(out_dir),
            "--delay",
            "0.1",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
        )
        log = web.log
    assert proc.returncode == 0, proc.stderr
    robots_log = [r for r in log if r.path == "/robots.txt"]
    pages_log = [r for r in log if r.path != "/robots.txt"]
    assert [r.status for r in robots_log][:1] == [503] and robots_log[-1].status == 200
    assert 2 <= len(robots_log) <= 4, [(round(r.started - first[0], 2), r.status) for r in robots_log]
    recovered = next(r.started for r in robots_log if r.status == 200)
    assert all(r.started >= recovered for r in pages_log)  # disallow-all meanwhile
    seed_fetched = min(r.started for r in pages_log) - first[0]
    assert seed_fetched < 15, seed_fetched
    records = {page_key(r["url"]): r for r in read_records(out_dir / "pages.jsonl")}
    assert records["flaky.test/"]["status"] == 200 and records["flaky.test/a"]["status"] == 200
    assert records["flaky.test/b"]["error"]["type"] == "robots_disallowed"  # the recovered rules apply
    assert not any(r.get("dead_letter") for r in records.values())
    assert "robots.txt of http://flaky.test" in proc.stderr and "unavailable (503)" in proc.stderr
    print(f"seed fetched {seed_fetched:.2f}s after the first robots.txt request")
