"""Retries end in dead letters, and `crawler dead-letters requeue` brings them back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from aiohttp import web

from tests.conftest import page_key, read_records, run_crawler
from tests.testweb import Page, Site, TestWeb


def test_three_failures_dead_letter_then_requeue_and_fetch(tmp_path: Path) -> None:
    state = {"broken": True}

    async def flaky(request: web.Request) -> web.StreamResponse:
        if state["broken"]:
            return web.Response(status=500, text="down")
        return web.Response(
            text="<html><head><title>back</title></head><body>ok</body></html>", content_type="text/html"
        )

    home = Page('<html><head><title>home</title></head><body><a href="/flaky">f</a></body></html>')
    sites = {"a.test": Site(pages={"/": home, "/flaky": flaky})}
    cfg = tmp_path / "c.toml"
    cfg.write_text("[fetch]\nmax_attempts = 3\nretry_backoff = [0.05, 0.05]\nserver_error_interval = 0.05\n")
    out = tmp_path / "out"
    with TestWeb(sites) as web_:
        args = [
            "crawl",
            web_.url("a.test"),
            "-o",
            str(out),
            "-c",
            str(cfg),
            "--delay",
            "0.01",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
        ]
        first = run_crawler(*args)
        assert first.returncode == 0, first.stderr
        assert web_.count("a.test", "/flaky") == 3
        listed = run_crawler("dead-letters", "list", str(out))
        assert listed.returncode == 0, listed.stderr
        (dead,) = [orjson.loads(line) for line in listed.stdout.splitlines()]
        assert page_key(dead["url"]) == "a.test/flaky"
        assert dead["error"]["type"] == "http_error" and "500" in dead["error"]["message"]
        none = run_crawler("dead-letters", "requeue", str(out), "--type", "timeout")
        assert none.returncode == 0 and "requeued 0" in none.stderr
        state["broken"] = False
        requeued = run_crawler("dead-letters", "requeue", str(out), "--type", "http_error")
        assert requeued.returncode == 0 and "requeued 1" in requeued.stderr, requeued.stderr
        again = run_crawler("crawl", "-o", str(out), "-c", str(cfg), "--resolve", "*.test=127.0.0.1", "--no-progress")
        assert again.returncode == 0, again.stderr
        assert web_.count("a.test", "/flaky") == 4
    records = [r for r in read_records(out / "pages.jsonl") if page_key(r["url"]) == "a.test/flaky"]
    assert [r["dead_letter"] for r in records] == [True, False]
    assert records[0]["error"]["type"] == "http_error" and records[0]["attempts"] == 3
    assert records[1]["error"] is None and records[1]["title"] == "back"
    listed = run_crawler("dead-letters", "list", str(out))
    assert listed.stdout.strip() == ""


def test_list_type_filters_before_limit(tmp_path: Path) -> None:
    """`--type T --limit 1` lists the oldest letter of type T even when older letters of other types exist."""

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1.0)
        return web.Response(text="late")

    async def broken(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="down")

    # One host, one request at a time: the two timeouts die before the 500 does.
    home = Page('<html><body><a href="/slow1">1</a><a href="/slow2">2</a><a href="/broken">3</a></body></html>')
    sites = {"a.test": Site(pages={"/": home, "/slow1": slow, "/slow2": slow, "/broken": broken})}
    cfg = tmp_path / "c.toml"
    cfg.write_text("[fetch]\nmax_attempts = 1\nread_timeout = 0.2\nconnect_timeout = 0.2\ntotal_timeout = 0.5\n")
    out = tmp_path / "out"
    with TestWeb(sites) as web_:
        first = run_crawler(
            "crawl", web_.url("a.test"), "-o", str(out), "-c", str(cfg), "--delay", "0.01",
            "--resolve", "*.test=127.0.0.1", "--no-progress",
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
    every = [orjson.loads(line) for line in run_crawler("dead-letters", "list", str(out)).stdout.splitlines()]
    assert [(page_key(d["url"]), d["error"]["type"]) for d in every] == [
        ("a.test/slow1", "timeout"),
        ("a.test/slow2", "timeout"),
        ("a.test/broken", "http_error"),
    ]
    listed = run_crawler("dead-letters", "list", str(out), "--type", "http_error", "--limit", "1")
    assert listed.returncode == 0, listed.stderr
    assert [page_key(orjson.loads(line)["url"]) for line in listed.stdout.splitlines()] == ["a.test/broken"]
    two = run_crawler("dead-letters", "list", str(out), "--type", "timeout", "--limit", "1")
    assert [page_key(orjson.loads(line)["url"]) for line in two.stdout.splitlines()] == ["a.test/slow1"]
