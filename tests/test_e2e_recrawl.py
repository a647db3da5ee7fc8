"""Recrawl end to end: a finished crawl run again fetches what expired, conditionally, embedded and on Redis.

The test web honours `If-None-Match` / `If-Modified-Since` for pages that declare an `ETag` or a
`Last-Modified` (`tests.testweb.not_modified`); every judgement below is made from its request log.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import orjson

from tests.conftest import page_key, read_records, run_crawler, start_crawler
from tests.judges import assert_polite
from tests.redis_server import RedisServer
from tests.testweb import LoggedRequest, Page, Site, TestWeb, redirect
from tests.warc_files import read_warc, warcio_check

pytest_plugins = ["redis_server"]

DELAY = 0.05
TTL = 3.0
LM = "Wed, 21 Oct 2015 07:28:00 GMT"
CONDITIONAL = ("If-None-Match", "If-Modified-Since")


def _html(*links: str) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return f"<html><head><title>t</title></head><body><p>{anchors}</p></body></html>"


def _site() -> dict[str, Site]:
    return {
        "a.test": Site(
            {
                "/": Page(_html("/a", "/b", "/c", "/r", "/weird"), headers={"ETag": '"root-1"'}),
                "/a": Page(_html("/a1"), headers={"ETag": 'W/"a-1"', "Last-Modified": LM}),
                "/a1": Page(_html(), headers={"Last-Modified": LM}),  # linked only from /a, which answers 304
                "/b": Page(_html()),  # no validators: fetched in full every time
                "/c": Page(_html(), headers={"ETag": '"c-1"'}),  # changes before the recrawl
                "/r": redirect("/r-target", 301),
                "/r-target": Page(b"", status=304),  # a 304 on a redirect hop (sent without validators)
                "/weird": Page(b"", status=304),  # a 304 to a request without validators
            }
        )
    }


def _change_c(web: TestWeb) -> None:
    """/c gets a new body (with a new link) and a new ETag: a recrawl must parse it again."""
    pages = web.sites["a.test"].pages
    pages["/c-new"] = Page(_html())
    pages["/c"] = Page(_html("/c-new"), headers={"ETag": '"c-2"'})


def _pages(log: list[LoggedRequest]) -> list[LoggedRequest]:
    return [r for r in log if r.path != "/robots.txt"]


def _conditional(r: LoggedRequest) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k in CONDITIONAL}


def _assert_recrawl_requests(log: list[LoggedRequest]) -> None:
    """Every page once, conditional exactly where the last fetch left validators; 304s where unchanged."""
    pages = _pages(log)
    assert Counter(r.path for r in pages) == dict.fromkeys(
        ["/", "/a", "/a1", "/b", "/c", "/c-new", "/r", "/r-target", "/weird"], 1
    )
    sent = {r.path: _conditional(r) for r in pages}
    assert sent == {
        "/": {"If-None-Match": '"root-1"'},
        "/a": {"If-None-Match": 'W/"a-1"', "If-Modified-Since": LM},
        "/a1": {"If-Modified-Since": LM},
        "/c": {"If-None-Match": '"c-1"'},
        "/b": {},
        "/c-new": {},
        "/r": {},  # a redirect's validators are not kept (they would belong to the target)
        "/r-target": {},
        "/weird": {},
    }
    served = {r.path: r.status for r in pages}
    assert (served["/"], served["/a"], served["/a1"], served["/c"], served["/b"]) == (304, 304, 304, 200, 200)
    assert_polite(log, DELAY)


def _assert_recrawl_records(records: list[dict]) -> None:
    by_path = {page_key(r["url"]).split("/", 1)[1]: r for r in records}
    assert sorted(by_path) == ["", "a", "a1", "b", "c", "c-new", "r", "weird"]
    for path in ("", "a", "a1"):
        rec = by_path[path]
        assert (rec["status"], rec["unchanged"], rec["error"], rec["links"]) == (304, True, None, [])
    assert (by_path["b"]["status"], by_path["b"]["unchanged"]) == (200, False)
    assert by_path["c"]["status"] == 200 and not by_path["c"]["unchanged"]
    assert [page_key(u) for u in by_path["c"]["links"]] == ["a.test/c-new"]  # parsed again
    assert by_path["c-new"]["status"] == 200
    for path in ("r", "weird"):
        assert by_path[path]["status"] == 304 and not by_path[path]["unchanged"]
        assert by_path[path]["error"]["type"] == "http_error"
        assert "without validators" in by_path[path]["error"]["message"]


def _assert_warc_of_recrawl(files: list[Path]) -> None:
    """The archive stays readable; a 304 is archived as what it is, its request with the validators sent."""
    assert len(files) == 2 and warcio_check(files).returncode == 0  # one file per run that fetched anything
    second = read_warc(files[1])
    assert second[0]["type"] == "warcinfo"
    by_uri = {}
    for rec in second[1:]:  # after the warcinfo
        by_uri.setdefault(page_key(rec["warc"]["WARC-Target-URI"]), {})[rec["type"]] = rec
    root = by_uri["a.test/"]
    assert root["response"]["http"].statusline.startswith("304") and root["response"]["payload"] == b""
    assert root["request"]["http"].get_header("If-None-Match") == '"root-1"'

    assert by_uri["a.test/c"]["response"]["http"].statusline.startswith("200")


def test_recrawl_embedded_fetches_expired_pages_conditionally(out_dir: Path) -> None:
    with TestWeb(_site()) as web:
        args = [
            "crawl",
            web.url("a.test", "/"),
            "-o",
            str(out_dir),
            "--delay",
            str(DELAY),
            "--resolve",
            "a.test=127.0.0.1",
            "--no-sitemaps",  # each run is held to exact requests (sitemaps and recrawl: test_e2e_sitemaps.py)
            "--seen-ttl",
            str(TTL),
            "--warc",
            "--no-progress",
        ]
        first = run_crawler(*args)
        assert first.returncode == 0, first.stderr
        ended = time.monotonic()
        records = read_records(out_dir / "pages.jsonl")
        assert len(records) == 7 and not any(r["unchanged"] for r in records)
        assert not any(_conditional(r) for r in web.log)

        # Within the TTL nothing is due: the same command fetches nothing, not even robots.txt. (A TTL of an hour
        # here, as the seconds-long one could run out on a loaded machine between two runs.)
        within = [*args[:-3], "3600", "--warc", "--no-progress"]
        web.clear_log()
        again = run_crawler(*within)
        assert again.returncode == 0, again.stderr
        assert web.log == [] and len(read_records(out_dir / "pages.jsonl")) == 7

        _change_c(web)
        time.sleep(max(0.0, TTL + 0.3 - (time.monotonic() - ended)))
        web.clear_log()
        recrawl = run_crawler(*args)
        assert recrawl.returncode == 0, recrawl.stderr
        assert "recrawl: 7 pages" in recrawl.stderr and "(4 with validators)" in recrawl.stderr
        _assert_recrawl_requests(web.log)
        _assert_recrawl_records(read_records(out_dir / "pages.jsonl")[7:])
        stats = orjson.loads((out_dir / "stats.json").read_bytes())
        assert (stats["unchanged"], stats["conditional"], stats["pages"]) == (3, 4, 15)
        _assert_warc_of_recrawl(sorted((out_dir / "warc").glob("*.warc.gz")))

        # And once more: everything was fetched moments ago, so nothing is.
        web.clear_log()
        assert run_crawler(*within).returncode == 0
        assert web.log == []


def test_recrawl_on_redis_with_a_frontier_and_a_worker(
    tmp_path: Path, redis_server: RedisServer, redis_job: str
) -> None:
    common = ["--redis", redis_server.url, "--job", redis_job]
    flags = ["--delay", str(DELAY), "--resolve", "a.test=127.0.0.1", "--seen-ttl", str(TTL), "--no-sitemaps"]
    with TestWeb(_site()) as web:
        seed = web.url("a.test", "/")
        first = run_crawler("crawl", seed, *common, *flags, "-o", str(tmp_path / "run1"), "--no-progress")
        assert first.returncode == 0, first.stderr
        ended = time.monotonic()
        assert len(read_records(next((tmp_path / "run1").glob("pages-*.jsonl")))) == 7

        _change_c(web)
        time.sleep(max(0.0, TTL + 0.3 - (time.monotonic() - ended)))
        web.clear_log()
        # The recrawl as a deployment runs it: submit again, then a frontier service and a worker process.
        submitted = run_crawler("submit", seed, *common, *flags)
        assert submitted.returncode == 0, submitted.stderr
        assert "recrawl: 7 pages" in submitted.stderr and "(4 with validators)" in submitted.stderr
        frontier = start_crawler("frontier", *common, log=tmp_path / "frontier.log")
        try:
            worker = run_crawler("worker", *common, "--id", "w1", "-o", str(tmp_path / "run2"), "--exit-when-done")
        finally:
            frontier.send_signal(signal.SIGTERM)
            frontier.wait(timeout=30)
        assert worker.returncode == 0, worker.stderr
        _assert_recrawl_requests(web.log)
        _assert_recrawl_records(read_records(tmp_path / "run2" / "pages-w1.jsonl"))
        stats = orjson.loads((tmp_path / "run2" / "stats-w1.json").read_bytes())
        assert (stats["unchanged"], stats["conditional"]) == (3, 4)
