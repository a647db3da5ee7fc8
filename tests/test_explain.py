"""`crawler explain` end to end: real crawls of the loopback test web, embedded and on Redis, then the command.

Each mode crawls one small site where every outcome happens once: a fetched page, a page robots.txt
forbids (the rule on line 3), a link with a utm_ parameter and a fragment (a duplicate of the page), a
trap-limited link (repeated segments) and one beyond max_depth, a page answering 500 until it is
dead-lettered, and a near-duplicate. A second crawl, still running with a 30 s delay, has URLs waiting:
behind the host's delay and queue, and behind a robots.txt outage.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from aiohttp import web

from crawler.app.exits import EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE
from tests.conftest import run_crawler, start_crawler
from tests.testweb import Page, Site, TestWeb

pytest_plugins = ["redis_server"]

ROBOTS = "# the test site's rules\nUser-agent: *\nDisallow: /private/\n"
TEXT = " ".join(["river stone lantern copper meadow orbit velvet harbor signal thistle"] * 12)
HOME = """<html><head><title>home</title></head><body><p>home page</p>
<a href="/page">page</a> <a href="/private/secret.html">secret</a> <a href="/page?utm_source=mail#top">again</a>
<a href="/t/x/t/x/t/x/t/x/">trap</a> <a href="/d1">deep</a> <a href="/broken">broken</a>
<a href="/copy1">copy 1</a> <a href="/copy2">copy 2</a></body></html>"""


def _page(title: str, body: str = "", links: str = "") -> Page:
    return Page(f"<html><head><title>{title}</title></head><body><p>{body or title}</p>{links}</body></html>")


async def _broken(request: web.Request) -> web.StreamResponse:
    return web.Response(status=500, text="down")


def _site() -> dict[str, Site]:
    pages: dict[str, Any] = {
        "/": Page(HOME),
        "/page": _page("page"),
        "/d1": _page("d1", links='<a href="/d2">d2</a>'),
        "/d2": _page("d2", links='<a href="/d3">d3</a>'),
        "/broken": _broken,
        "/copy1": _page("copy one", TEXT),
        "/copy2": _page("copy two", TEXT),
    }
    return {"a.test": Site(pages=pages, robots=ROBOTS)}


@dataclass
class Mode:
    """Where a crawl runs (an output folder, or a Redis job writing its logs to that folder)."""

    name: str
    out: Path
    redis_url: str | None = None
    job: str | None = None

    def where(self) -> list[str]:
        """The flags that point a command at this crawl."""
        redis = ["--redis", self.redis_url, "--job", self.job] if self.redis_url and self.job else []
        return [*redis, "-o", str(self.out)]

    def explain(self, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """`crawler explain URL` on this crawl."""
        return run_crawler("explain", url, *self.where(), *extra, timeout=60)

    def facts(self, url: str) -> tuple[int, dict[str, Any]]:
        """`crawler explain URL --json`: the exit code and the parsed object."""
        proc = self.explain(url, "--json")
        assert proc.returncode in (EXIT_OK, EXIT_UNKNOWN), proc.stderr
        return proc.returncode, orjson.loads(proc.stdout)


def _mode(request: pytest.FixtureRequest, folder: Path) -> Mode:
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        return Mode("redis", folder / "out", server.url, f"explain-{uuid.uuid4().hex[:8]}")
    return Mode("embedded", folder / "out")


@pytest.fixture(params=["embedded", "redis"])
def mode(request: pytest.FixtureRequest, tmp_path: Path) -> Mode:
    return _mode(request, tmp_path)


def _config(tmp: Path, text: str) -> Path:
    path = tmp / "crawl.toml"
    path.write_text(text)
    return path


FINISHED_CONFIG = """
[crawl]
max_depth = 2
[politeness]
delay = 0.01
[fetch]
max_attempts = 2
retry_backoff = [0.05]
server_error_interval = 0.05
"""


@pytest.fixture(scope="module", params=["embedded", "redis"])
def finished(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Mode, TestWeb]]:
    """A finished crawl of the one-site test web, in each mode (the tests only read it)."""
    folder = tmp_path_factory.mktemp("explain")
    mode = _mode(request, folder)
    cfg = _config(folder, FINISHED_CONFIG)
    with TestWeb(_site()) as web_:
        args = ["crawl", web_.url("a.test"), *mode.where(), "-c", str(cfg), "--resolve", "*.test=127.0.0.1"]
        proc = run_crawler(*args, "--no-progress", timeout=120)
        assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
        yield mode, web_


def test_fetched_robots_duplicate_trap_dead_letter_and_near_duplicate(finished: tuple[Mode, TestWeb]) -> None:
    mode, web_ = finished
    page = web_.url("a.test", "/page")

    code, fetched = mode.facts(page)
    assert code == EXIT_OK and fetched["verdict"] == "fetched" and fetched["known"]
    assert fetched["record"]["status"] == 200 and fetched["record"]["depth"] == 1
    assert fetched["frontier"]["seen_at"] is not None and fetched["frontier"]["place"] is None
    assert fetched["linked_from"]["url"] == web_.url("a.test", "/")
    assert fetched["robots"]["allowed"] is True and fetched["crawl"]["running"] is False

    code, dup = mode.facts(web_.url("a.test", "/page?utm_source=mail&utm_medium=x#top"))
    assert code == EXIT_OK and dup["duplicate_of"] == page and dup["verdict"] == "fetched"
    assert "fragment #top dropped" in dup["normalization"]
    assert "parameters stripped: utm_source, utm_medium" in dup["normalization"]

    code, robots = mode.facts(web_.url("a.test", "/private/secret.html"))
    assert code == EXIT_OK and robots["verdict"] == "robots_disallowed"
    assert robots["record"]["error"]["type"] == "robots_disallowed"
    r = robots["robots"]
    assert (r["url"], r["status"], r["allowed"]) == (web_.url("a.test", "/robots.txt"), 200, False)
    assert (r["rule"], r["line"], r["group"], r["group_line"]) == ("Disallow: /private/", 3, "User-agent: *", 2)
    assert 0 <= r["age_s"] < 120

    code, trap = mode.facts(web_.url("a.test", "/t/x/t/x/t/x/t/x/"))
    assert code == EXIT_OK and trap["verdict"] == "skipped" and trap["frontier"]["seen_at"] is None
    assert trap["scope"]["reason"] == "repeated_segments"
    assert (trap["scope"]["setting"], trap["scope"]["limit"], trap["scope"]["value"]) == ("max_repeated_segments", 3, 4)

    code, deep = mode.facts(web_.url("a.test", "/d3"))
    assert code == EXIT_OK and deep["verdict"] == "skipped"
    assert (deep["scope"]["reason"], deep["scope"]["value"], deep["scope"]["limit"]) == ("max_depth", 3, 2)
    assert deep["linked_from"]["url"] == web_.url("a.test", "/d2")

    code, dead = mode.facts(web_.url("a.test", "/broken"))
    assert code == EXIT_OK and dead["verdict"] == "dead_letter"
    assert dead["frontier"]["place"] == "dead" and dead["frontier"]["attempts"] == 2
    assert dead["frontier"]["error"]["type"] == "http_error" and "500" in dead["frontier"]["error"]["message"]
    assert dead["record"]["dead_letter"] is True and dead["record"]["attempts"] == 2
    assert web_.count("a.test", "/broken") == 2

    code, near = mode.facts(web_.url("a.test", "/copy2"))
    assert code == EXIT_OK and near["verdict"] == "near_duplicate"
    assert near["record"]["near_duplicate_of"] == web_.url("a.test", "/copy1")


def test_text_output_names_the_rule_and_unknown_urls_exit_3(finished: tuple[Mode, TestWeb]) -> None:
    mode, web_ = finished
    proc = mode.explain(web_.url("a.test", "/private/secret.html"))
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "robots_disallowed" in proc.stdout and "line 3: Disallow: /private/" in proc.stdout
    assert len(proc.stdout.splitlines()) <= 24  # one screen

    proc = mode.explain(web_.url("a.test", "/never-linked"))
    assert proc.returncode == EXIT_UNKNOWN and "never seen by this crawl" in proc.stdout
    code, other = mode.facts("http://elsewhere.test/")
    assert code == EXIT_UNKNOWN and other["verdict"] == "unknown" and other["scope"]["reason"] == "out_of_scope"

    bad = mode.explain("mailto:someone@a.test")
    assert bad.returncode == EXIT_USAGE and "not a URL the crawler could fetch" in bad.stderr


def _state(mode: Mode) -> dict[str, bytes]:
    """Every file of the output folder and (Redis) every key of the job, byte for byte."""
    files = {p.name: p.read_bytes() for p in mode.out.iterdir()}
    if mode.redis_url is None:
        return files
    client = redis.Redis.from_url(mode.redis_url)
    try:
        # Expiring coordination keys (the leader's lease, heartbeats) may lapse meanwhile: not ours to judge.
        keys = [k for k in client.scan_iter(match=f"crawl:{{{mode.job}}}:*") if not k.endswith((b"leader", b"alive"))]
        return {**files, **{k.decode(): client.dump(k) or b"" for k in keys}}
    finally:
        client.close()


def test_explaining_changes_nothing(finished: tuple[Mode, TestWeb]) -> None:
    mode, web_ = finished
    before = _state(mode)
    for path in ("/page", "/private/secret.html", "/broken", "/nowhere"):
        mode.facts(web_.url("a.test", path))
    assert _state(mode) == before


WAITING_CONFIG = """
[politeness]
delay = 30.0
robots_retry_first = 30.0
robots_give_up = 600.0
"""


def _wait_for(check: Callable[[], bool], what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-3000:]}")


def test_waiting_urls_while_the_crawl_runs(mode: Mode, tmp_path: Path) -> None:
    """Three seeds of a host with a 30 s delay, and a host whose robots.txt answers 503."""
    sites = {
        "w.test": Site(pages={f"/{i}": _page(f"w {i}") for i in (1, 2, 3)}, robots="User-agent: *\nAllow: /\n"),
        "r.test": Site(pages={"/": _page("r")}, robots="", robots_status=503),
    }
    cfg = _config(tmp_path, WAITING_CONFIG)
    log = tmp_path / "crawl.log"
    with TestWeb(sites) as web_:
        seeds = [web_.url("w.test", f"/{i}") for i in (1, 2, 3)] + [web_.url("r.test", "/")]
        started = time.time()
        args = ["crawl", *seeds, *mode.where(), "-c", str(cfg), "--resolve", "*.test=127.0.0.1", "--no-progress"]
        proc = start_crawler(*args, log=log)
        try:

            def ready() -> bool:
                first, outage = mode.explain(seeds[0], "--json"), mode.explain(seeds[3], "--json")
                if first.returncode == EXIT_USAGE:  # the crawl has not created its store yet
                    return False
                return orjson.loads(first.stdout)["verdict"] == "in_flight" and bool(
                    orjson.loads(outage.stdout)["crawl"]["hosts_waiting"]
                )

            _wait_for(ready, "the first lease and the robots.txt outage", log)
            code, third = mode.facts(seeds[2])
            assert code == EXIT_OK and third["verdict"] == "waiting" and third["crawl"]["running"] is True
            kinds = {b["kind"]: b for b in third["waiting"]["behind"]}
            assert "host_busy" in kinds  # the first URL holds the host's one place (it waits out the delay)
            assert kinds["queue"]["detail"].startswith("1 URL ahead") and third["frontier"]["ahead"] == 1
            assert started + 30 <= kinds["queue"]["until"] <= time.time() + 61  # behind the next 30 s slot
            assert third["host"]["delay"] == 30.0 and third["host"]["inflight"] == 1

            code, outage = mode.facts(seeds[3])
            assert code == EXIT_OK and outage["verdict"] == "waiting"
            kinds = {b["kind"]: b for b in outage["waiting"]["behind"]}
            assert "robots.txt unavailable (503)" in kinds["robots_txt"]["detail"]
            assert started + 29 <= kinds["robots_txt"]["until"] <= time.time() + 31
            assert kinds["retry"]["until"] == pytest.approx(kinds["robots_txt"]["until"], abs=1.0)
            assert outage["robots"]["kept"] is False  # a failed robots.txt is never kept

            text = mode.explain(seeds[3])
            assert text.returncode == EXIT_OK and "robots_txt: robots.txt unavailable (503)" in text.stdout
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    if mode.name == "embedded":  # a dead crawl is seen at once (its folder lock is gone)
        code, third = mode.facts(seeds[2])
        assert code == EXIT_OK and third["verdict"] == "waiting" and third["crawl"]["running"] is False
        assert "crawl_stopped" in {b["kind"] for b in third["waiting"]["behind"]}
