"""The failure matrix (crawler/worker/retry.py `FAILURE_MATRIX`), row by row, against a real loopback test web.

Each test drives a lease through the real `LeaseRunner` and the embedded store with a `ManualClock` (jitter 1.0),
so outcome kinds and `retry_at` are asserted exactly; the server's log shows what was requested, and the
`Retry-After: 2` row is also timed for real (an `OffsetClock`), from the log, with a tolerance.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser

from crawler.core.config import FetchSettings
from crawler.extract.html import Page as Extracted
from crawler.extract.html import extract_lexbor, extract_stdlib
from crawler.worker.lease import Finished
from crawler.worker.retry import FAILURE_MATRIX, POLICIES, classify, failure_of
from tests.test_worker import ManualClock, OffsetClock, Rig, T, html, make_config, rig
from tests.testweb import Page, Site, TestWeb, abort_connection, sequence, silence_after_headers

README = Path(__file__).resolve().parent.parent / "README.md"


async def _attempts(r: Rig, clock: ManualClock) -> list[Finished]:
    """Run the seeded URL's leases until one is not a retry, moving the clock to each retry_at."""
    out = [await r.run(await r.lease())]
    while out[-1].outcome.kind == "retry":
        await r.complete(out[-1])
        clock.advance_to(out[-1].outcome.retry_at)
        out.append(await r.run(await r.lease()))
    return out


def _retry_times(fins: list[Finished]) -> list[float]:
    return [f.outcome.retry_at - T for f in fins if f.outcome.kind == "retry"]


def test_every_row_is_named_documented_and_in_the_readme() -> None:
    """One table: unique names, every column filled, and the README's failure table lists exactly these rows."""
    names = [p.name for p in FAILURE_MATRIX]
    assert len(set(names)) == len(names)
    for p in FAILURE_MATRIX:
        assert p.detects and p.response and p.schedule, p.name
    table = README.read_text().split("<!-- failure-matrix -->")[1]
    readme_rows = re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE)
    assert readme_rows == names


def test_classify_picks_the_documented_row() -> None:
    """Status and error → row, with Retry-After parsed and capped."""

    def row(status: int | None = None, retry_after: str | None = None) -> str | None:
        p = classify(failure_of(None, status, retry_after, now=T, cap=3600.0))
        return p.name if p is not None else None

    assert [row(s) for s in (200, 301, 404, 410, 400, 401, 403, 405, 408, 429, 500, 501, 503)] == [
        None,
        None,
        "not_found",
        "not_found",
        *["client_error"] * 5,
        "rate_limited",
        *["server_error"] * 3,
    ]
    assert row(503, "7") == "rate_limited"
    assert failure_of(None, 429, "86400", now=T, cap=60.0).retry_after == 60.0


async def test_network_timeout_backs_off_exponentially_then_dead_letters(tmp_path: Path) -> None:
    """network row: a read timeout is retried after retry_backoff[0], then [1] (60 s, 300 s, the defaults), and
    the third failure is a dead letter with error `timeout`; the server saw three requests."""
    sites = {"a.test": Site(pages={"/": silence_after_headers(0.5)})}
    clock = ManualClock()
    with TestWeb(sites) as web:
        cfg = make_config(web, fetch={"connect_timeout": 1.0, "read_timeout": 0.2, "total_timeout": 1.0})
        assert cfg.fetch.retry_backoff == (60.0, 300.0, 1800.0) and cfg.fetch.max_attempts == 3
        async with rig(tmp_path / "out", cfg, ["a.test"], clock=clock) as r:
            r.built.worker.runner.jitter = lambda: 1.0
            await r.seed(web.url("a.test"))
            fins = await _attempts(r, clock)
        await asyncio.sleep(0.7)  # the server logs a request when its handler ends (0.5 s of silence)
        assert web.count("a.test", "/") == 3
    assert _retry_times(fins) == [60.0, 60.0 + 300.0]
    last = fins[-1]
    assert last.outcome.kind == "dead" and last.record is not None and last.record.dead_letter
    assert last.record.error is not None and last.record.error["type"] == "timeout"


async def test_connection_error_uses_the_configured_backoff(tmp_path: Path) -> None:
    """network row: every interval is configurable (retry_backoff = [7, 11], max_attempts 3)."""
    sites = {"a.test": Site(pages={"/": abort_connection()})}
    clock = ManualClock()
    with TestWeb(sites) as web:
        cfg = make_config(web, fetch={"retry_backoff": [7.0, 11.0]})
        async with rig(tmp_path / "out", cfg, ["a.test"], clock=clock) as r:
            r.built.worker.runner.jitter = lambda: 1.0
            await r.seed(web.url("a.test"))
            fins = await _attempts(r, clock)
        assert web.count("a.test", "/") == 3
    assert _retry_times(fins) == [7.0, 18.0]
    assert fins[-1].outcome.kind == "dead"


async def test_404_and_410_are_recorded_without_retry(tmp_path: Path) -> None:
    """not_found row: one request, a record with `http_error`, kind "done" (not a dead letter)."""
    sites = {"a.test": Site(pages={"/404": Page("gone", status=404), "/410": Page("gone", status=410)})}
    clock = ManualClock()
    with TestWeb(sites) as web:
        cfg = make_config(web)
        for path in ("/404", "/410"):
            async with rig(tmp_path / path.strip("/"), cfg, ["a.test"], clock=clock) as r:
                await r.seed(web.url("a.test", path))
                fins = await _attempts(r, clock)
            assert len(fins) == 1 and fins[0].outcome.kind == "done"
            rec = fins[0].record
            assert rec is not None and rec.error is not None and rec.error["type"] == "http_error"
            assert rec.dead_letter is False and rec.status == int(path[1:])
            assert web.count("a.test", path) == 1


async def test_other_4xx_is_retried_like_network_errors(tmp_path: Path) -> None:
    """client_error row: 403 twice, then 200 → retried at retry_backoff[0] and [1], then done."""
    sites = {
        "a.test": Site(pages={"/": sequence(Page("no", status=403), Page("bad", status=400), then=Page(html("ok")))})
    }
    clock = ManualClock()
    with TestWeb(sites) as web:
        cfg = make_config(web)
        async with rig(tmp_path / "out", cfg, ["a.test"], clock=clock) as r:
            r.built.worker.runner.jitter = lambda: 1.0
            await r.seed(web.url("a.test"))
            fins = await _attempts(r, clock)
        assert [q.status for q in web.requests_for("a.test") if q.path == "/"] == [403, 400, 200]
    assert _retry_times(fins) == [60.0, 360.0]
    rec = fins[-1].record
    assert fins[-1].outcome.kind == "done" and rec is not None and rec.title == "ok" and rec.attempts == 3


async def test_5xx_backs_off_linearly(tmp_path: Path) -> None:
    """server_error row: 500 → retried server_error_interval (300 s) later, then 300 s later again; the third 500
    is a dead letter."""
    sites = {"a.test": Site(pages={"/": Page("broken", status=500)})}
    clock = ManualClock()
    with TestWeb(sites) as web:
        cfg = make_config(web)
        assert cfg.fetch.server_error_interval == 300.0
        async with rig(tmp_path / "out", cfg, ["a.test"], clock=clock) as r:
            r.built.worker.runner.jitter = lambda: 1.0
            await r.seed(web.url("a.test"))
            fins = await _attempts(r, clock)
        assert web.count("a.test", "/") == 3
    assert _retry_times(fins) == [300.0, 300.0 + 300.0]
    rec = fins[-1].record
    assert fins[-1].outcome.kind == "dead" and rec is not None and rec.status == 500


async def test_429_retry_after_retries_the_url_when_the_server_says(tmp_path: Path) -> None:
    """rate_limited row: `Retry-After: 2` → the URL's retry_at is exactly 2 s on (not retry_backoff[0]), equal
    to the host's due time; without Retry-After the host's doubled delay (1 s from delay 0) decides."""
    sites = {
        "a.test": Site(pages={"/": sequence(Page("busy", 429, {"Retry-After": "2"}), then=Page(html("ok")))}),
        "b.test": Site(pages={"/": sequence(Page("busy", 429), then=Page(html("ok")))}),
    }
    clock = ManualClock()
    with TestWeb(sites) as web:
        cfg = make_config(web)
        for host, wait in (("a.test", 2.0), ("b.test", 1.0)):
            async with rig(tmp_path / host, cfg, [host], clock=clock) as r:
                r.built.worker.runner.jitter = lambda: 1.0
                start = clock()
                await r.seed(web.url(host))
                fins = await _attempts(r, clock)
            first = fins[0].outcome
            assert first.kind == "retry" and first.retry_at == first.host_due == start + wait, host
            assert fins[-1].outcome.kind == "done" and len(fins) == 2


async def test_429_retry_after_2_is_retried_about_2_s_later_for_real(tmp_path: Path) -> None:
    """rate_limited row on the wall clock: the server's log shows the second request ~2 s after the 429."""
    sites = {"a.test": Site(pages={"/": sequence(Page("busy", 429, {"Retry-After": "2"}), then=Page(html("ok")))})}
    clock = OffsetClock()
    with TestWeb(sites) as web:
        cfg = make_config(web)
        async with rig(tmp_path / "out", cfg, ["a.test"], clock=clock) as r:
            await r.seed(web.url("a.test"))
            fin = await r.run(await r.lease())
            assert fin.outcome.kind == "retry"
            await r.complete(fin)
            while not (leases := await r.store.claim(clock(), 1)):
                await asyncio.sleep(0.02)
            done = await r.run(leases[0])
        log = [q for q in web.log if q.path == "/"]
    assert done.outcome.kind == "done"
    assert [q.status for q in log] == [429, 200]
    gap = log[1].started - log[0].finished
    assert 1.95 <= gap < 2.6, gap


class BrokenLexbor(LexborHTMLParser):
    """A lexbor tree that fails like a parser bug would."""

    def __init__(self, html: str) -> None:
        raise RuntimeError("lexbor gave up")


def broken_lexbor(html: str, token: str) -> Extracted:
    return extract_lexbor(html, token, tree_class=BrokenLexbor)


def broken_stdlib(html: str, token: str) -> Extracted:
    raise ValueError("html.parser gave up")


async def test_parse_error_falls_back_to_the_second_parser_then_records(tmp_path: Path) -> None:
    """parse_error row: lexbor fails → the same body (one request, no refetch) is parsed by `html.parser` and the
    page is a normal record; both fail → a `parse_error` record, done (no retry), with the regex-scanned links."""
    body = html("Parsed", ["/x", "/y"])
    sites = {"a.test": Site(pages={"/": Page(body)})}
    clock = ManualClock()
    with TestWeb(sites) as web:
        cfg = make_config(web)
        for name, parsers in (("fallback", (broken_lexbor, extract_stdlib)), ("both", (broken_lexbor, broken_stdlib))):
            async with rig(tmp_path / name, cfg, ["a.test"], clock=clock) as r:
                r.built.worker.runner.analyzer.parsers = parsers
                await r.seed(web.url("a.test"))
                fins = await _attempts(r, clock)
            assert len(fins) == 1 and fins[0].outcome.kind == "done", name
            rec = fins[0].record
            assert rec is not None
            assert rec.links == [web.url("a.test", "/x"), web.url("a.test", "/y")], name
            if name == "fallback":
                assert rec.error is None and rec.title == "Parsed"
            else:
                assert rec.error is not None and rec.error["type"] == "parse_error" and rec.title is None
                assert "lexbor gave up" in rec.error["message"] and "html.parser gave up" in rec.error["message"]
        assert web.count("a.test", "/") == 2  # once per rig: never refetched for parsing
    assert not POLICIES["parse_error"].retries


def test_the_fallback_parser_agrees_with_lexbor() -> None:
    """The second parser finds the same fields as the first on an ordinary page."""
    page = (
        "<html><head><title>T &amp; x</title><meta name=description content=d><meta name=robots content=noindex>"
        "<link rel=canonical href=/c><base href=/b/></head><body><a href=/a rel=nofollow>a</a><a href=/z>z</a>"
        "<script>s()</script>hi <noscript><a href=/n>n</a></noscript></body></html>"
    )
    a, b = extract_lexbor(page, ""), extract_stdlib(page, "")
    assert (a.parser, b.parser) == ("lexbor", "stdlib")
    b.parser = a.parser
    assert a == b


def test_attempts_are_capped_by_max_attempts() -> None:
    """The last row of the README table: after fetch.max_attempts no row retries (the runner dead-letters)."""
    from crawler.worker.retry import retry_at

    fetch = FetchSettings(max_attempts=2)
    f = failure_of(None, 500, None, now=T, cap=3600.0)
    policy = classify(f)
    assert policy is not None
    assert retry_at(fetch, policy, 1, f, host_due=T, now=T, jitter=1.0) == T + 300.0
    assert retry_at(fetch, policy, 2, f, host_due=T, now=T, jitter=1.0) is None
