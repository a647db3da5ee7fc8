"""End to end: the real `crawler crawl` process against the multi-host test web on 127.0.0.1."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson

from tests.conftest import page_key, read_records, run_crawler, start_crawler
from tests.judges import pages_only
from tests.testweb import Page, Site, TestWeb, make_link_web

DELAY = 0.2


def _seed_args(web: TestWeb, hosts: list[str]) -> list[str]:
    return [web.url(h, "/") for h in hosts]


def _wait_for_lines(path: Path, n: int, timeout: float = 60) -> None:
    """Poll until the output file holds at least `n` records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (path.exists() and path.read_bytes().count(b"\n") >= n):
        time.sleep(0.02)


def test_polite_complete_crawl_of_five_hosts(out_dir: Path) -> None:
    sites, reachable, disallowed = make_link_web(n_hosts=5, pages_per_host=12)
    assert disallowed, "the generated web must link into the disallowed path"
    with TestWeb(sites) as web:
        proc = run_crawler(
            "crawl",
            *_seed_args(web, sorted(sites)),
            "-o",
            str(out_dir),
            "--delay",
            str(DELAY),
            "--max-depth",
            "50",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
        )
        log = web.log
    assert proc.returncode == 0, proc.stderr
    all_records = pages_only(read_records(out_dir / "pages.jsonl"))
    refused = [r for r in all_records if r["error"] is not None]
    records = [r for r in all_records if r["error"] is None]
    keys = Counter(page_key(r["url"]) for r in records)
    assert set(keys) == reachable
    assert max(keys.values()) == 1, [k for k, v in keys.items() if v > 1]
    assert all(r["status"] == 200 for r in records)
    # Disallowed links are recorded once each as refused by robots.txt, without a request.
    assert Counter(page_key(r["url"]) for r in refused) == Counter(disallowed)
    assert all(r["error"]["type"] == "robots_disallowed" and r["status"] is None for r in refused)
    # robots.txt obeyed: nothing under /private/ was ever requested.
    assert not [r for r in log if r.path.startswith("/private/")]
    # Politeness, seen from the server: per host, arrivals at least DELAY apart (robots.txt included).
    by_host: dict[str, list[float]] = defaultdict(list)
    for r in log:
        by_host[r.host].append(r.started)
    assert set(by_host) == set(sites)
    for host, times in by_host.items():
        times.sort()
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= DELAY - 0.005, (host, min(gaps))
        assert sum(1 for r in log if r.host == host and r.path == "/robots.txt") == 1
    stats = orjson.loads((out_dir / "stats.json").read_bytes())
    # Each host is also asked for /sitemap.xml (robots.txt names none): one more record per host.
    assert stats["pages"] == len(reachable) + len(disallowed) + len(sites)
    assert stats["sitemaps"] == len(sites)
    assert stats["robots_disallowed"] == len(disallowed)
    assert stats["finished"] is True
    first = records[0]
    for field in (
        "url",
        "final_url",
        "status",
        "content_type",
        "depth",
        "fetched_at",
        "elapsed_ms",
        "title",
        "description",
        "canonical",
        "meta_robots",
        "links",
        "simhash",
        "near_duplicate_of",
        "rendered",
        "error",
        "attempts",
    ):
        assert field in first
    assert len(first["simhash"]) == 16


def test_sigkill_midway_then_resume_records_every_page_once(out_dir: Path, tmp_path: Path) -> None:
    sites, reachable, _ = make_link_web(n_hosts=6, pages_per_host=40, seed=7)
    with TestWeb(sites) as web:
        args = [
            "crawl",
            *_seed_args(web, sorted(sites)),
            "-o",
            str(out_dir),
            "--delay",
            "0.02",
            "--max-depth",
            "100",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
        ]
        proc = start_crawler(*args, log=tmp_path / "first.log")
        pages = out_dir / "pages.jsonl"
        _wait_for_lines(pages, len(reachable) // 3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = len(read_records(pages))
        assert 0 < killed_at < len(reachable), "the kill must land mid-crawl"
        second = run_crawler(*args)
    assert second.returncode == 0, second.stderr
    keys = Counter(page_key(r["url"]) for r in pages_only(read_records(pages)) if r["error"] is None)
    assert set(keys) == reachable
    assert max(keys.values()) == 1, [k for k, v in keys.items() if v > 1]
    # The hosts' guessed sitemaps, recorded once each across the kill too.
    probes = Counter(page_key(r["url"]) for r in read_records(pages) if r["sitemap_urls"] is not None)
    assert probes == {f"{h}/sitemap.xml": 1 for h in sites}


def test_robots_unavailable_host_is_not_crawled_and_others_are(out_dir: Path) -> None:
    page = Page('<html><head><title>x</title></head><body><a href="/a">a</a></body></html>')
    sites = {
        "ok.test": Site(pages={"/": page, "/a": page}, robots="User-agent: *\nDisallow:\n"),
        "down.test": Site(pages={"/": page, "/a": page}, robots="oops", robots_status=500),
        "gone.test": Site(pages={"/": page, "/a": page}, robots=None),
    }
    with TestWeb(sites) as web:
        cfg = out_dir.parent / "c.toml"
        cfg.write_text(
            "[fetch]\nmax_attempts = 2\nretry_backoff = [0.1]\n[politeness]\nrobots_error_ttl = 1\nrobots_give_up = 0\n"
        )
        proc = run_crawler(
            "crawl",
            *_seed_args(web, sorted(sites)),
            "-o",
            str(out_dir),
            "-c",
            str(cfg),
            "--delay",
            "0.05",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
        )
        log = web.log
    assert proc.returncode == 0, proc.stderr
    by_key = {page_key(r["url"]): r for r in read_records(out_dir / "pages.jsonl")}
    assert by_key["ok.test/"]["status"] == 200 and by_key["ok.test/a"]["status"] == 200
    assert by_key["gone.test/a"]["status"] == 200  # 404 robots.txt: allow all
    down = by_key["down.test/"]
    assert down["status"] is None and down["error"]["type"] == "robots_disallowed"
    assert down["dead_letter"] is True
    assert not [r for r in log if r.host == "down.test" and r.path != "/robots.txt"]
    assert sum(1 for r in log if r.host == "down.test") >= 2  # robots.txt retried after its error TTL


def test_sigterm_drains_then_resume_completes(out_dir: Path, tmp_path: Path) -> None:
    sites, reachable, _ = make_link_web(n_hosts=4, pages_per_host=30, seed=11)
    with TestWeb(sites) as web:
        args = [
            "crawl",
            *_seed_args(web, sorted(sites)),
            "-o",
            str(out_dir),
            "--delay",
            "0.05",
            "--max-depth",
            "100",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
        ]
        proc = start_crawler(*args, log=tmp_path / "first.log")
        pages = out_dir / "pages.jsonl"
        _wait_for_lines(pages, 10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143  # SIGTERM before the frontier was empty: 128 + 15, resumable
        stats = orjson.loads((out_dir / "stats.json").read_bytes())
        assert stats["finished"] is False and stats["in_flight"] == 0  # leases handed back on the way out
        assert stats["pages"] == len(read_records(pages))
        # No seeds this time: the folder's frontier resumes with its own seeds and scope.
        second = run_crawler(
            "crawl",
            "-o",
            str(out_dir),
            "--delay",
            "0.05",
            "--max-depth",
            "100",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
        )
    assert second.returncode == 0, second.stderr
    keys = Counter(page_key(r["url"]) for r in pages_only(read_records(pages)) if r["error"] is None)
    assert set(keys) == reachable and max(keys.values()) == 1


def test_a_request_that_fails_without_retry_still_keeps_the_hosts_gap(out_dir: Path, tmp_path: Path) -> None:
    """A too-large body is a final error, but the request did reach the host: the next one waits."""
    big = Page("x" * 5000, headers={"Content-Type": "text/html"})
    sites = {"gap.test": Site(pages={"/big": big, "/ok": Page("<p>fine</p>")})}
    cfg = tmp_path / "c.toml"
    cfg.write_text("[fetch]\nmax_body_bytes = 2048\n")
    with TestWeb(sites) as web:
        # /big comes first, right after robots.txt: its claim-time spacing is used up by then.
        proc = run_crawler(
            "crawl",
            web.url("gap.test", "/big"),
            web.url("gap.test", "/ok"),
            "-o",
            str(out_dir),
            "-c",
            str(cfg),
            "--delay",
            "0.3",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
            "--no-sitemaps",
        )
        log = sorted(web.log, key=lambda r: r.started)
    assert proc.returncode == 0, proc.stderr
    errors = {page_key(r["url"]): (r["error"] or {}).get("type") for r in read_records(out_dir / "pages.jsonl")}
    assert errors == {"gap.test/big": "too_large", "gap.test/ok": None}
    assert [r.path for r in log] == ["/robots.txt", "/big", "/ok"]
    assert min(b.started - a.started for a, b in itertools.pairwise(log)) >= 0.29


def test_concurrency_two_keeps_request_starts_a_delay_apart(out_dir: Path, tmp_path: Path) -> None:
    slow = Page("<html><body>slow page with some text</body></html>", delay=0.5)
    pages = {"/": Page("".join(f'<a href="/s{i}">{i}</a>' for i in range(6)))}
    pages.update({f"/s{i}": slow for i in range(6)})
    cfg = tmp_path / "c.toml"
    cfg.write_text('[domains."two.test"]\nconcurrency = 2\ndelay = 0.2\n')
    with TestWeb({"two.test": Site(pages=pages)}) as web:
        proc = run_crawler(
            "crawl",
            web.url("two.test"),
            "-o",
            str(out_dir),
            "-c",
            str(cfg),
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
            "--no-sitemaps",
        )
        log = sorted(web.log, key=lambda r: r.started)
    assert proc.returncode == 0, proc.stderr
    assert len(log) == 8
    assert min(b.started - a.started for a, b in itertools.pairwise(log)) >= 0.19
    overlapping = sum(1 for a, b in itertools.pairwise(log) if b.started < a.finished)
    assert overlapping >= 2  # two in flight at once: the concurrency is used
    assert max(sum(1 for r in log if r.started <= t.started < r.finished) for t in log) <= 2
