"""One exit-code policy for every command (README "Exit codes"): 0 done, 1 failed, 2 usage, 128+N interrupted."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from crawler.app.exits import EXIT_FAILED, EXIT_OK, interrupted, job_exit, service_exit
from tests.conftest import read_records, run_crawler, start_crawler
from tests.redis_server import RedisServer
from tests.testweb import Page, Site, TestWeb, make_link_web

pytest_plugins = ["redis_server"]


def test_policy_from_final_stats() -> None:
    """Finished (or max_pages reached) is 0; a signal before the end is 128+N; anything else failed."""
    assert job_exit({"finished": True, "stopped": None}) == EXIT_OK
    assert job_exit({"finished": False, "stopped": "SIGINT"}) == 130 == interrupted("SIGINT")
    assert job_exit({"finished": False, "stopped": "SIGTERM"}) == 143
    assert job_exit({"finished": False, "stopped": "commit failed"}) == EXIT_FAILED
    assert job_exit({"finished": False, "stopped": None}) == EXIT_FAILED


def _wait_for_lines(path: Path, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {n} lines")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_max_pages_crawl_exits_128_plus_signal_and_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    """`crawl --max-pages N` stopped by a signal before N is not done: 128+N (it used to exit 0), resumable."""
    sites, reachable, _ = make_link_web(1, 60, seed=7, cross_links=False)
    out = tmp_path / "o"
    with TestWeb(sites) as web:
        args = [
            "crawl",
            web.url("h0.test", "/"),
            "-o",
            str(out),
            "--max-pages",
            "40",
            "--delay",
            "0.05",
            "--max-depth",
            "100",
        ]
        args += ["--resolve", "*.test=127.0.0.1", "--allow-private", "--no-progress"]
        proc = start_crawler(*args, log=tmp_path / "first.log")
        _wait_for_lines(out / "pages.jsonl", 3)
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
        log = (tmp_path / "first.log").read_text()
        assert code == 128 + int(sig), log
        assert "interrupted" in log
        first = len(read_records(out / "pages.jsonl"))
        assert 3 <= first < 40 <= len(reachable)
        again = run_crawler(*args[:1], *args[2:])  # resume: same folder, no seeds
        assert again.returncode == EXIT_OK, again.stderr
    assert len(read_records(out / "pages.jsonl")) == 40


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGTERM])
def test_interrupted_crawl_on_redis_exits_128_plus_signal(
    tmp_path: Path, sig: signal.Signals, redis_server: RedisServer, redis_job: str
) -> None:
    """`crawl --redis` runs a frontier and a worker in one process: one signal stops both, promptly, 128+N."""
    sites, _, _ = make_link_web(1, 60, seed=3, cross_links=False)
    out = tmp_path / "o"
    with TestWeb(sites) as web:
        args = ["crawl", web.url("h0.test", "/"), "-o", str(out), "--delay", "0.05", "--max-depth", "100"]
        args += ["--redis", redis_server.url, "--job", redis_job, "--resolve", "*.test=127.0.0.1", "--allow-private"]
        proc = start_crawler(*args, "--no-progress", log=tmp_path / "run.log")
        _wait_for_any_lines(out, 3)
        sent = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
    log = (tmp_path / "run.log").read_text()
    assert code == 128 + int(sig), log
    assert took < 8.0, f"took {took:.1f}s to stop\n{log}"
    assert "Traceback" not in log


def test_worker_exit_policy() -> None:
    """A worker is a service: stopping it as asked is success, a failure that stopped it is not."""
    assert service_exit({"finished": False, "stopped": "SIGTERM"}) == EXIT_OK
    assert service_exit({"finished": True, "stopped": None}) == EXIT_OK
    assert service_exit({"finished": False, "stopped": "commit failed"}) == EXIT_FAILED


def _wait_for_any_lines(folder: Path, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(p.read_bytes().count(b"\n") for p in folder.glob("pages-*.jsonl")) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {n} records in {folder}")


def test_finished_and_max_pages_exit_zero(tmp_path: Path) -> None:
    """A crawl that empties its frontier, and one that reaches --max-pages, both exit 0."""
    page = Page("<html><body><a href='/x'>x</a><a href='/y'>y</a></body></html>")
    sites = {"a.test": Site(pages={"/": page, "/x": page, "/y": page})}
    with TestWeb(sites) as web:
        common = ["--delay", "0", "--resolve", "*.test=127.0.0.1", "--allow-private", "--no-progress"]
        done = run_crawler("crawl", web.url("a.test", "/"), "-o", str(tmp_path / "a"), *common)
        capped = run_crawler("crawl", web.url("a.test", "/"), "-o", str(tmp_path / "b"), "--max-pages", "2", *common)
    assert done.returncode == EXIT_OK, done.stderr
    assert len(read_records(tmp_path / "a" / "pages.jsonl")) == 4  # 3 pages and the host's /sitemap.xml (a 404)
    assert capped.returncode == EXIT_OK, capped.stderr
    assert len(read_records(tmp_path / "b" / "pages.jsonl")) == 2


def test_redis_unreachable_exits_1_with_a_message(tmp_path: Path) -> None:
    """A worker whose Redis never answers gives up after --redis-deadline with exit 1 and says why."""
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_crawler(
        "submit", "http://a.test/", "--redis", f"redis://127.0.0.1:{port}/0", "--redis-deadline", "1", timeout=60
    )
    assert proc.returncode == EXIT_FAILED, proc.stderr
    assert "Redis" in proc.stderr and "Traceback" not in proc.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    """Bad flags and bad configuration exit 2 before anything is crawled."""
    proc = run_crawler("crawl", "http://a.test/", "--concurrency", "0", "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    proc = run_crawler("worker", "--redis", "http://not-redis/", "-o", str(tmp_path / "o"))
    assert proc.returncode == 2 and "redis://" in proc.stderr
