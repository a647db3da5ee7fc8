"""`explain_url`'s verdicts on a real embedded store and record log, for the states a small crawl rarely shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from crawler.app.explain_facts import Sources, explain_url
from crawler.core.config import load_config
from crawler.core.errors import CrawlError
from crawler.core.urlitem import UrlItem
from frontier.sqlite.inspect import SqliteInspector
from frontier.sqlite.store import SqliteStore
from frontier.store import HostLimits, Outcome

T0 = 1_700_000_000.0
HOME = "http://a.test/"


def _record(url: str, **fields: Any) -> bytes:
    rec = {"url": url, "final_url": url, "status": 200, "depth": 0, "fetched_at": "2023-11-14T22:13:20.000Z"}
    rec.update(links=[], links_followed=True, redirects=[], error=None, attempts=1, dead_letter=False)
    rec.update(fields)
    return orjson.dumps(rec) + b"\n"


async def _sources(tmp_path: Path, records: list[bytes], **config: Any) -> Sources:
    (tmp_path / "pages.jsonl").write_bytes(b"".join(records))
    cfg = load_config([], config)
    return Sources("embedded", SqliteInspector.open(tmp_path), cfg, ["a.test"], [tmp_path / "pages.jsonl"])


async def test_in_flight_done_and_fetched_via_redirect(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits()) as store:
        await store.add([UrlItem(HOME, "a.test"), UrlItem("http://a.test/r", "a.test")], T0)
        [lease] = await store.claim(T0, 10)
        await store.flush()
        src = await _sources(tmp_path, [_record("http://a.test/r", final_url="http://a.test/t")])
        assert (await explain_url(HOME, src, T0))["verdict"] == "in_flight"
        await store.complete([Outcome(lease, "done", T0, seen=("http://a.test/t",))], T0)
        await store.flush()
        done = await explain_url(HOME, src, T0)  # seen and finished, but its record is not in the log
        assert done["verdict"] == "done" and done["known"]
        via = await explain_url("http://a.test/t", src, T0)
        assert via["verdict"] == "fetched_via_redirect" and via["redirected_from"]["url"] == "http://a.test/r"
        await src.inspector.close()


@pytest.mark.parametrize(
    ("link", "reason", "value"),
    [
        ("http://a.test:25/mail", "bad_port", None),
        ("http://a.test/" + "x" * 100, "url_too_long", 114),
        ("http://a.test/1/2/3/4/5/6", "too_many_segments", 6),
        ("http://b.test/", "out_of_scope", None),
    ],
)
async def test_skipped_links_name_their_rule(tmp_path: Path, link: str, reason: str, value: int | None) -> None:
    async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits()):
        pass  # an empty store: the link was never admitted
    src = await _sources(tmp_path, [_record(HOME, links=[link])], crawl={"max_url_length": 100, "max_path_segments": 5})
    facts = await explain_url(link, src, T0)
    assert facts["verdict"] == "skipped" and facts["known"]
    assert (facts["scope"]["reason"], facts["scope"]["value"]) == (reason, value)
    assert facts["linked_from"]["url"] == HOME
    await src.inspector.close()


async def test_over_budget_not_followed_and_not_queued(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits(budget=1)) as store:
        await store.add([UrlItem(HOME, "a.test")], T0)
    records = [
        _record(HOME, links=["http://a.test/over"]),
        _record("http://c.test/", links=["http://c.test/nofollow"], links_followed=False),
        _record("http://d.test/", links=["http://d.test/lost"]),
    ]
    src = await _sources(tmp_path, records, crawl={"allow_domains": ["a.test", "c.test", "d.test"]})
    src.allow_domains = []
    over = await explain_url("http://a.test/over", src, T0)
    assert over["verdict"] == "skipped" and over["summary"].startswith("over_budget")
    nofollow = await explain_url("http://c.test/nofollow", src, T0)
    assert nofollow["verdict"] == "skipped" and nofollow["summary"].startswith("not_followed")
    lost = await explain_url("http://d.test/lost", src, T0)
    assert lost["verdict"] == "not_queued"
    await src.inspector.close()


async def test_refusals_and_failures_come_from_the_record(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits()):
        pass
    private = {"type": "private_address", "message": "a.test resolves to a refused address"}
    records = [
        _record(HOME, status=None, error=private),
        _record("http://a.test/404", status=404, error={"type": "http_error", "message": "HTTP 404"}),
    ]
    src = await _sources(tmp_path, records)
    assert (await explain_url(HOME, src, T0))["verdict"] == "private_address"
    failed = await explain_url("http://a.test/404", src, T0)
    assert failed["verdict"] == "failed" and "http_error" in failed["summary"]
    with pytest.raises(CrawlError):
        await explain_url("javascript:alert(1)", src, T0)
    await src.inspector.close()


async def test_waiting_behind_an_open_circuit_breaker(tmp_path: Path) -> None:
    """The crawl publishes why a host is held back (`hosts_waiting`); a queued URL of it shows that."""
    async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits(spacing=2.0)) as store:
        await store.add([UrlItem(HOME, "a.test"), UrlItem("http://a.test/2", "a.test")], T0)
        [lease] = await store.claim(T0, 10)
        await store.complete([Outcome(lease, "retry", host_due=T0 + 60, retry_at=T0 + 60)], T0)
    src = await _sources(tmp_path, [])
    src.waits = [{"host": "a.test", "cause": "circuit_breaker", "failures": 5, "until": T0 + 60}]
    src.running = True
    facts = await explain_url("http://a.test/2", src, T0 + 1)
    assert facts["verdict"] == "waiting" and facts["waiting"]["until"] >= T0 + 60
    behind = {b["kind"]: b for b in facts["waiting"]["behind"]}
    breaker = behind["circuit_breaker"]
    assert breaker["until"] == T0 + 60 and "5 consecutive failures" in breaker["detail"]
    assert behind["host_due"]["until"] == T0 + 60
    assert behind["queue"]["detail"].startswith("1 URL ahead")  # the retry keeps its place in front
    await src.inspector.close()
