"""The worker's parts in-process: the real embedded store (SqliteStore in tmp_path), a real loopback test web.

Everything is wired by `build_worker` with an injected clock, as the commands wire it. Two clocks are used:
* `ManualClock` stands still until a test moves it. With `politeness.delay = 0` the host slots never wait,
  so due times, retry times and robots.txt expiries can be asserted exactly.
* `OffsetClock` runs with the wall clock but far ahead of it, for tests that need real spacing: any part
  that read `time.time()` instead of the injected clock would be off by the offset and fail the test.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web as aioweb

from crawler.app.builder import Crawling, build_worker, make_scope
from crawler.core.config import Config, config_from_dict
from crawler.core.stats import Counter, Stats
from crawler.core.urlitem import UrlItem
from crawler.core.urlnorm import host_key
from crawler.core.validators import Validators
from crawler.extract.neardup import LocalNearDup, NearDupIndex
from crawler.output.sink import RecordLog
from crawler.worker.frontier import StoreFrontier
from crawler.worker.lease import Finished
from frontier.sqlite.store import SqliteStore
from frontier.store import AddResult, Lease, Outcome
from tests.conftest import page_key, read_records
from tests.testweb import Page, Site, TestWeb, abort_connection, make_link_web, redirect
from tests.warc_files import record_at

PAGES = "pages.jsonl"
STATS = "stats.json"
T = 1_800_000_000.0  # where a ManualClock starts (2027): far from the wall clock on purpose
OFFSET = 1_000_000.0  # how far an OffsetClock runs ahead of the wall clock


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = T) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance_to(self, when: float) -> None:
        assert when >= self.now
        self.now = when


class OffsetClock:
    """The wall clock shifted by OFFSET."""

    def __call__(self) -> float:
        return time.time() + OFFSET


def html(title: str, links: Sequence[str] = ()) -> str:
    """A small HTML page with a title and links."""
    anchors = "".join(f'<a href="{h}">{i}</a> ' for i, h in enumerate(links))
    return f"<!doctype html><html><head><title>{title}</title></head><body><p>{title}</p>{anchors}</body></html>"


def make_config(web: TestWeb, **sections: dict[str, Any]) -> Config:
    """Loopback networking, no rendering, no politeness delay, no sitemaps unless a section says otherwise.

    (Sitemaps would add a /sitemap.xml request and record per host; tests/test_sitemap_reader.py and
    tests/test_e2e_sitemaps.py have them on.)
    """
    data: dict[str, Any] = {
        "network": {"resolve": web.resolve_map(), "allow_private": True},
        "fetch": {"render": "never"},
        "politeness": {"delay": 0.0},
        "crawl": {"sitemaps": False},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return config_from_dict(data)


@dataclass
class Rig:
    """One wired crawling process over an output folder."""

    store: SqliteStore
    frontier: StoreFrontier
    built: Crawling
    stats: Stats
    out: Path
    clock: Callable[[], float]

    @property
    def pages(self) -> Path:
        return self.out / PAGES

    async def seed(self, *urls: str) -> AddResult:
        return await self.store.add(self.built.ingest.admit_seeds(urls), self.clock())

    async def lease(self) -> Lease:
        """Claim exactly one lease now."""
        leases = await self.store.claim(self.clock(), 1)
        assert len(leases) == 1, leases
        return leases[0]

    async def run(self, lease: Lease) -> Finished:
        return await self.built.worker.runner.run(lease)

    async def complete(self, finished: Finished) -> None:
        """Hand one outcome and its links to the store, as the committer does."""
        await self.frontier.finish([finished.outcome], list(finished.outcome.links), self.clock())


@asynccontextmanager
async def rig(
    out: Path,
    cfg: Config,
    domains: Sequence[str],
    *,
    clock: Callable[[], float],
    frontier: Callable[[SqliteStore], StoreFrontier] = StoreFrontier,
) -> AsyncIterator[Rig]:
    """The embedded store in `out` and a worker built around it (both closed on exit)."""
    async with AsyncExitStack() as stack:
        store = await SqliteStore.open(out, host_limits=lambda h: cfg.for_host(h).limits(), seen_ttl=cfg.crawl.seen_ttl)
        stack.push_async_callback(store.close)
        front = frontier(store)
        stats = Stats()
        built = await build_worker(
            stack,
            cfg,
            frontier=front,
            scope=make_scope(cfg, domains),
            stats=stats,
            neardup=LocalNearDup(NearDupIndex(3)),
            sink_path=out / PAGES,
            stats_path=out / STATS,
            clock=clock,
        )
        yield Rig(store, front, built, stats, out, clock)


# ---------------------------------------------------------------------------------------------------
# LeaseRunner


async def test_a_200_page_is_done_with_its_record_and_links(tmp_path: Path) -> None:
    """A 200 HTML page: a record with its title and links; in-scope links admitted at depth + 1 (out of scope
    dropped, tracking parameters stripped); kind "done"; host_due is the slot's due time, at least the delay
    after both robots.txt and the page passed the slot, on the injected clock."""
    delay = 0.25
    links = ["/x", "/x#frag", "http://b.test:@PORT@/", "http://elsewhere.test/", "/y?utm_source=z"]
    sites = {
        "a.test": Site(pages={"/": Page(html("Home", links))}, robots="User-agent: *\nDisallow: /private\n"),
        "b.test": Site(pages={}),
    }
    clock = OffsetClock()
    with TestWeb(sites) as web:
        cfg = make_config(web, politeness={"delay": delay})
        async with rig(tmp_path / "out", cfg, ["a.test", "b.test"], clock=clock) as r:
            await r.seed(web.url("a.test"))
            lease = await r.lease()
            before = clock()
            fin = await r.run(lease)
            after = clock()
            host = host_key(web.url("a.test"))
            assert fin.outcome.host_due == r.built.slots.due(host)
        log = web.log
    rec = fin.record
    assert rec is not None
    assert (rec.url, rec.final_url, rec.status, rec.title) == (web.url("a.test"), web.url("a.test"), 200, "Home")
    assert (rec.depth, rec.attempts, rec.error, rec.dead_letter) == (0, 1, None, False)
    x, y, b = web.url("a.test", "/x"), web.url("a.test", "/y"), web.url("b.test")
    assert rec.links == [x, b, "http://elsewhere.test/", y]
    assert rec.links_followed is True
    out = fin.outcome
    assert (out.kind, out.lease, out.error, out.retry_at) == ("done", lease, None, 0.0)
    assert list(out.links) == [UrlItem(x, host, 1), UrlItem(b, host_key(b), 1), UrlItem(y, host, 1)]
    assert r.stats.skipped["out_of_scope"] == 1
    assert r.stats.c[Counter.FETCHED] == 1
    # robots.txt, then the page, each through the slot: the page waited the delay after robots.txt ended.
    assert [q.path for q in log] == ["/robots.txt", "/"]
    assert log[1].started - log[0].finished >= delay - 0.005
    # The host is due the delay after the page ended (and the page started the delay after robots.txt).
    assert before + 2 * delay <= out.host_due <= after + delay


@pytest.mark.parametrize(("backoff", "retry_in"), [(300.0, 120.0), (60.0, 120.0)])
async def test_503_with_retry_after_is_retried_no_earlier_than_the_host_allows(
    tmp_path: Path, backoff: float, retry_in: float
) -> None:
    """503 + Retry-After: 120 → kind "retry" without a record; the host is held exactly 120 s; the URL comes back
    when Retry-After says (the failure matrix's rate_limited row), whatever `fetch.retry_backoff` is. The store
    then hands the URL out again exactly at retry_at, with its attempt counted."""
    sites = {"a.test": Site(pages={"/": Page("busy", status=503, headers={"Retry-After": "120"})})}
    clock = ManualClock()
    with TestWeb(sites) as web:
        cfg = make_config(web, fetch={"retry_backoff": [backoff], "max_attempts": 3})
        async with rig(tmp_path / "out", cfg, ["a.test"], clock=clock) as r:
            r.built.worker.runner.jitter = lambda: 1.0
            await r.seed(web.url("a.test"))
            fin = await r.run(await r.lease())
            host = host_key(web.url("a.test"))
            assert fin.record is None
            assert fin.outcome.kind == "retry"
            assert fin.outcome.host_due == T + 120.0 == r.built.slots.due(host)
            assert fin.outcome.retry_at == T + retry_in
            assert r.stats.c[Counter.RETRIES] == 1 and r.stats.c[Counter.PAGES] == 0
            await r.complete(fin)
            assert await r.store.claim(T + retry_in - 0.001, 1) == []
            assert await r.store.next_due(T) == T + retry_in
            clock.advance_to(T + retry_in)
            again = await r.lease()
            assert again.item == UrlItem(web.url("a.test"), host, 0, attempts=1)


@pytest.mark.parametrize(
    ("page", "max_attempts", "status", "error_type"),
    [
        (Page("down", status=503), 2, 503, "http_error"),
        (abort_connection(), 1, None, "connection_error"),
    ],
    ids=["503", "connection-dropped"],
)
async def test_used_up_attempts_make_a_dead_letter(
    tmp_path: Path, page: Any, max_attempts: int, status: int | None, error_type: str
) -> None:
    """When the last allowed attempt fails (503 again, or the connection dropped), the lease dies: a record with
    dead_letter true and the typed error, kind "dead", and the store lists it as a dead letter."""
    sites = {"a.test": Site(pages={"/": page})}
    clock = ManualClock()
    with TestWeb(sites) as web:
        cfg = make_config(web, fetch={"retry_backoff": [10.0], "max_attempts": max_attempts})
        async with rig(tmp_path / "out", cfg, ["a.test"], clock=clock) as r:
            r.built.worker.runner.jitter = lambda: 1.0
            url = web.url("a.test")
            await r.seed(url)
            fin = await r.run(await r.lease())
            for _ in range(max_attempts - 1):  # the earlier attempts come back as retries
                assert fin.outcome.kind == "retry" and fin.record is None
                await r.complete(fin)
                clock.advance_to(fin.outcome.retry_at)
                fin = await r.run(await r.lease())
            rec = fin.record
            assert rec is not None
            assert fin.outcome.kind == "dead"
            assert rec.dead_letter is True
            assert rec.attempts == max_attempts
            assert rec.status == status
            assert rec.error is not None and rec.error["type"] == error_type
            assert fin.outcome.error == rec.error
            await r.complete(fin)
            counts = await r.store.counts()
            assert (counts.queued, counts.leased, counts.dead) == (0, 0, 1)
            [dead] = await r.store.dead_letters()
            assert dead.item.url == url and dead.error == rec.error
            assert r.stats.c[Counter.DEAD_LETTERS] == 1
            assert r.stats.c[Counter.RETRIES] == max_attempts - 1
            assert r.stats.errors[error_type] == 1
        assert web.count("a.test", "/") == max_attempts


@pytest.mark.parametrize(
    ("robots_page", "error_type"),
    [(Page("oops", status=500), "robots_disallowed"), (abort_connection(), "connection_error")],
    ids=["robots-500", "robots-connection-dropped"],
)
async def test_unavailable_robots_txt_retries_when_its_cache_entry_expires(
    tmp_path: Path, robots_page: Any, error_type: str
) -> None:
    """robots.txt answering 500 (or dropping the connection): the page is not requested; the lease is retried
    exactly when the cached "disallow all" expires (politeness.robots_retry_first after the first failure, then
    double that, capped at robots_error_ttl, on the injected clock) and the host is held until then; when the
    attempts are used up, the dead record carries the cause."""
    first, ttl = 15.0, 20.0
    sites = {"a.test": Site(pages={"/": Page(html("never fetched")), "/robots.txt": robots_page})}
    clock = ManualClock()
    with TestWeb(sites) as web:
        cfg = make_config(
            web,
            politeness={"robots_error_ttl": ttl, "robots_retry_first": first, "robots_give_up": 10.0},
            fetch={"retry_backoff": [1.0], "max_attempts": 2},
        )
        async with rig(tmp_path / "out", cfg, ["a.test"], clock=clock) as r:
            r.built.worker.runner.jitter = lambda: 1.0
            await r.seed(web.url("a.test"))
            fin = await r.run(await r.lease())
            assert fin.record is None
            assert fin.outcome.kind == "retry"
            assert fin.outcome.retry_at == fin.outcome.host_due == T + first
            await r.complete(fin)
            assert await r.store.claim(T + first - 0.001, 1) == []
            clock.advance_to(T + first)
            fin = await r.run(await r.lease())  # robots.txt expired: asked again, fails again
            rec = fin.record
            assert rec is not None and fin.outcome.kind == "dead"
            assert rec.status is None and rec.dead_letter is True
            assert rec.error is not None and rec.error["type"] == error_type
            assert "robots.txt unavailable" in rec.error["message"]
            assert fin.outcome.host_due == T + first + ttl  # 2 * first, capped at ttl
        assert web.count("a.test", "/robots.txt") == 2
        assert web.count("a.test", "/") == 0


async def test_a_url_waits_out_a_short_robots_outage_whatever_its_attempts(tmp_path: Path) -> None:
    """Attempts used up, but robots.txt has failed for less than robots_give_up: the URL waits (retry at the
    next robots.txt try); once the outage is older than that, it is recorded and dead-lettered."""
    sites = {"a.test": Site(pages={"/": Page(html("never fetched")), "/robots.txt": Page("down", status=503)})}
    clock = ManualClock()
    with TestWeb(sites) as web:
        cfg = make_config(
            web,
            politeness={"robots_error_ttl": 4.0, "robots_retry_first": 4.0, "robots_give_up": 10.0},
            fetch={"retry_backoff": [1.0], "max_attempts": 1},
        )
        async with rig(tmp_path / "out", cfg, ["a.test"], clock=clock) as r:
            await r.seed(web.url("a.test"))
            kinds = []
            for _ in range(5):
                fin = await r.run(lease := await r.lease())
                kinds.append((round(clock() - T), lease.item.attempts, fin.outcome.kind))
                if fin.outcome.kind == "dead":
                    break
                await r.complete(fin)
                clock.advance_to(fin.outcome.retry_at)
    # Tried at 0, 4 and 8 s (outage younger than 10 s: waits although max_attempts = 1), dead at 12 s.
    assert kinds == [(0, 0, "retry"), (4, 1, "retry"), (8, 2, "retry"), (12, 3, "dead")], kinds


async def test_redirects_same_host_through_the_slot_and_cross_host_as_a_link(tmp_path: Path) -> None:
    """A same-host redirect is followed, its hop waiting the delay in the host's slot; a redirect to another host
    is not followed but recorded as redirect_to and offered as a link at depth + 1 (that host never contacted)."""
    delay = 0.25
    new = Page(html("New"))
    sites = {
        "a.test": Site(pages={"/old": redirect("/new", 301), "/new": new, "/away": redirect("http://b.test:@PORT@/l")}),
        "b.test": Site(pages={"/l": new}),
    }
    clock = OffsetClock()
    with TestWeb(sites) as web:
        cfg = make_config(web, politeness={"delay": delay})
        old, away, landing = web.url("a.test", "/old"), web.url("a.test", "/away"), web.url("b.test", "/l")
        async with rig(tmp_path / "out", cfg, ["a.test", "b.test"], clock=clock) as r:
            await r.seed(old, away)
            first = await r.run(await r.lease())
            await r.complete(first)
            await asyncio.sleep(max(0.0, first.outcome.host_due - clock()))
            second = await r.run(await r.lease())
            stats = r.stats
        log = web.log
    rec = first.record
    assert rec is not None and first.outcome.kind == "done"
    assert (rec.url, rec.final_url, rec.status, rec.title) == (old, web.url("a.test", "/new"), 200, "New")
    assert rec.redirects == [{"url": old, "status": 301, "location": web.url("a.test", "/new")}]
    assert rec.redirect_to is None
    paths = [q.path for q in log]
    assert paths == ["/robots.txt", "/old", "/new", "/away"]
    assert log[2].started - log[1].finished >= delay - 0.005  # the hop passed the slot
    assert log[3].started - log[2].finished >= delay - 0.005
    rec = second.record
    assert rec is not None and second.outcome.kind == "done"
    assert (rec.status, rec.redirect_to, rec.links, rec.links_followed) == (302, landing, [landing], True)
    assert rec.error is None
    assert list(second.outcome.links) == [UrlItem(landing, host_key(landing), 1)]
    assert not [q for q in log if q.host == "b.test"]
    assert stats.c[Counter.REDIRECTS] == 1


async def test_conditional_request_only_for_the_leased_url_and_a_304_is_no_redirect(tmp_path: Path) -> None:
    """A recrawled lease's validators go with the request for its own URL, through the host's slot; a redirect
    hop is asked unconditionally (the validators are not its own), and a 304 is an answer, never followed."""
    delay = 0.2
    tag = '"t1"'
    sites = {
        "a.test": Site(
            pages={
                "/moved": redirect("/target", 301),
                "/target": Page(html("Target"), headers={"ETag": tag}),  # would answer 304 to If-None-Match
                "/same": Page(b"", status=304, headers={"Location": "/elsewhere", "ETag": '"s2"'}),
                "/elsewhere": Page(html("never")),
            }
        )
    }
    clock = OffsetClock()
    sent = Validators(etag=tag)
    with TestWeb(sites) as web:
        cfg = make_config(web, politeness={"delay": delay})
        async with rig(tmp_path / "out", cfg, ["a.test"], clock=clock) as r:
            await r.seed(web.url("a.test", "/moved"), web.url("a.test", "/same"))
            moved = await r.run(replace(await r.lease(), validators=sent))
            await r.complete(moved)
            await asyncio.sleep(max(0.0, moved.outcome.host_due - clock()))
            same = await r.run(replace(await r.lease(), validators=sent))
            stats = r.stats
        log = web.log
    asked = [(q.path, q.headers.get("If-None-Match"), q.status) for q in log if q.path != "/robots.txt"]
    assert asked == [("/moved", tag, 301), ("/target", None, 200), ("/same", tag, 304)]
    pages = [q for q in log if q.path != "/robots.txt"]
    assert all(b.started - a.finished >= delay - 0.005 for a, b in itertools.pairwise(pages))
    rec = moved.record
    assert rec is not None and (rec.status, rec.title, rec.unchanged) == (200, "Target", False)
    assert moved.outcome.validators is None  # a redirected page keeps no validators
    rec = same.record
    assert rec is not None and (rec.status, rec.unchanged, rec.error, rec.redirects) == (304, True, None, [])
    assert same.outcome.kind == "done" and same.outcome.validators == Validators(etag='"s2"')
    assert (stats.c[Counter.CONDITIONAL], stats.c[Counter.UNCHANGED]) == (2, 1)


# ---------------------------------------------------------------------------------------------------
# Committer


class SpyFrontier(StoreFrontier):
    """StoreFrontier noting what was on disk in the record log, and what the store held, when `finish` ran."""

    def __init__(self, store: SqliteStore, log: Path) -> None:
        super().__init__(store)
        self.log = log
        self.calls: list[tuple[list[str], list[str], int]] = []  # (urls finished, urls on disk, leased)
        self.fail = False

    async def finish(self, outcomes: Sequence[Outcome], links: Sequence[UrlItem], now: float) -> AddResult:
        on_disk = [rec["url"] for rec in read_records(self.log)]
        leased = (await self.store.counts()).leased
        self.calls.append(([o.lease.item.url for o in outcomes], on_disk, leased))
        if self.fail:
            raise RuntimeError("frontier unavailable")
        return await super().finish(outcomes, links, now)


async def test_committer_writes_records_before_outcomes_and_commits_applied_offsets_only(tmp_path: Path) -> None:
    """Records reach pages.jsonl on disk before the store sees their outcomes; `checkpoint` commits the log
    offset up to the last applied batch: when a batch fails, the offset stays behind its records, which are then
    exactly what a resume reads back from the log."""
    page = Page(html("p", ["/next"]))
    sites = {h: Site(pages={"/": page, "/next": page}) for h in ("a.test", "b.test", "c.test")}
    clock = ManualClock()
    out = tmp_path / "out"
    with TestWeb(sites) as web:
        cfg = make_config(web)
        spy: list[SpyFrontier] = []

        def make_spy(store: SqliteStore) -> SpyFrontier:
            spy.append(SpyFrontier(store, out / PAGES))
            return spy[0]

        async with rig(out, cfg, list(sites), clock=clock, frontier=make_spy) as r:
            frontier, committer, sink = spy[0], r.built.worker.committer, r.built.worker.sink
            urls = [web.url(h) for h in ("a.test", "b.test", "c.test")]
            await r.seed(*urls)
            leases = await r.store.claim(clock(), 3)
            done = {lease.item.url: await r.run(lease) for lease in leases}
            for url in urls[:2]:
                sink.write(done[url].record)  # type: ignore[arg-type]
                committer.add(done[url].outcome)
            assert r.pages.stat().st_size == 0  # buffered until the committer flushes
            assert committer.pending == 2
            assert sorted(committer.held_tokens()) == sorted(done[u].outcome.lease.token for u in urls[:2])

            await committer.apply()
            assert frontier.calls == [(urls[:2], urls[:2], 3)]  # on disk before the store changed
            counts = await r.store.counts()
            assert (counts.leased, counts.done, counts.queued) == (1, 2, 2)  # the two /next links queued
            await committer.checkpoint()
            applied = r.pages.stat().st_size
            assert int(await r.store.get_meta("log_offset") or -1) == applied > 0
            assert orjson.loads(await r.store.get_meta("stats") or "{}")["pages"] == 0  # counted by the Worker

            # The third batch cannot reach the store: its record is on disk, but the offset stays behind it.
            frontier.fail = True
            sink.write(done[urls[2]].record)  # type: ignore[arg-type]
            committer.add(done[urls[2]].outcome)
            with pytest.raises(RuntimeError, match="frontier unavailable"):
                await committer.apply()
            assert frontier.calls[-1] == ([urls[2]], urls, 1)
            assert int(await r.store.get_meta("log_offset") or -1) == applied  # a crash now replays it
            assert r.pages.stat().st_size > applied
            assert [rec["url"] for rec in RecordLog.recover_tail(r.pages, applied)] == [urls[2]]
            # The failed batch is kept, links included, and applied by the next checkpoint.
            assert committer.pending == 1 and committer.held_tokens() == [done[urls[2]].outcome.lease.token]
            frontier.fail = False
            await committer.checkpoint()
            assert frontier.calls[-1] == ([urls[2]], urls, 1)
            assert int(await r.store.get_meta("log_offset") or -1) == r.pages.stat().st_size
            counts = await r.store.counts()
            assert (counts.leased, counts.done, counts.queued) == (0, 3, 3)
        stats_json = orjson.loads((out / STATS).read_bytes())
    assert {c.value for c in Counter} <= set(stats_json)


async def test_with_warc_the_archive_is_written_before_the_log_and_its_outcomes_stay_held(tmp_path: Path) -> None:
    """The archive writes off the event loop; while it does, the outcomes it holds up still count as pending
    (else the worker could call a crawl finished whose links are not in the frontier yet) and their leases as
    held. The record reaches the log after its WARC data, pointing at it."""
    page = Page(html("p", ["/next"]))
    clock = ManualClock()
    out = tmp_path / "out"
    with TestWeb({"a.test": Site(pages={"/": page, "/next": page})}) as web:
        async with rig(out, make_config(web, output={"warc": True}), ["a.test"], clock=clock) as r:
            worker, committer = r.built.worker, r.built.worker.committer
            assert worker.archive is not None and committer.archive is worker.archive
            await r.seed(web.url("a.test"))
            lease = await r.lease()
            finished = await r.run(lease)
            assert finished.record is not None and finished.exchange is not None
            worker.archive.add_page(finished.record, finished.exchange)  # what the worker does with a record
            worker.sink.write(finished.record)
            committer.add(finished.outcome)
            applying = asyncio.create_task(committer.apply())
            await asyncio.sleep(0)  # the apply now waits for the archive's thread
            assert committer.pending == 1 and committer.held_tokens() == [lease.token]
            assert r.pages.stat().st_size == 0
            await applying
            assert committer.pending == 0 and (await r.store.counts()).queued == 1  # /next is in the frontier
            (rec,) = read_records(r.pages)
            ptr = rec["warc"]
            found = record_at(out / ptr["file"], ptr["offset"])
            assert found["type"] == "response" and found["warc"]["WARC-Target-URI"] == rec["url"]


# ---------------------------------------------------------------------------------------------------
# Worker.run


def _politeness_gaps(log: list[Any]) -> dict[str, float]:
    """The smallest gap between two request arrivals per host, as the server saw them."""
    starts: dict[str, list[float]] = {}
    for q in log:
        starts.setdefault(q.host, []).append(q.started)
    return {h: min(b - a for a, b in itertools.pairwise(sorted(s))) for h, s in starts.items() if len(s) > 1}


async def test_worker_run_crawls_a_two_host_site_to_completion(tmp_path: Path) -> None:
    """A whole `Worker.run()` in-process: every reachable page recorded exactly once, disallowed links recorded
    once as refused (never requested), politeness held per host, finished True, the frontier empty and its log
    offset at the end of pages.jsonl, and stats.json listing every Counter."""
    delay = 0.05
    sites, reachable, disallowed = make_link_web(n_hosts=2, pages_per_host=6, seed=3)
    out = tmp_path / "out"
    with TestWeb(sites) as web:
        cfg = make_config(web, politeness={"delay": delay}, crawl={"max_depth": 50})
        async with rig(out, cfg, list(sites), clock=OffsetClock()) as r:
            await r.seed(*(web.url(h) for h in sites))
            worker = r.built.worker
            await asyncio.wait_for(worker.run(), 20)
            counts = await r.store.counts()
            offset = int(await r.store.get_meta("log_offset") or -1)
        log = web.log
    assert worker.finished is True and worker.stop_reason is None
    records = read_records(out / PAGES)
    ok = Tally(page_key(rec["url"]) for rec in records if rec["error"] is None)
    assert set(ok) == reachable and max(ok.values()) == 1
    refused = [rec for rec in records if rec["error"] is not None]
    assert Tally(page_key(rec["url"]) for rec in refused) == Tally(disallowed)
    assert {rec["error"]["type"] for rec in refused} == {"robots_disallowed"}
    assert not [q for q in log if q.path.startswith("/private/")]
    assert all(gap >= delay - 0.005 for gap in _politeness_gaps(log).values()), _politeness_gaps(log)
    assert (counts.queued, counts.leased, counts.done, counts.dead) == (0, 0, len(records), 0)
    assert offset == (out / PAGES).stat().st_size
    stats = orjson.loads((out / STATS).read_bytes())
    assert {c.value for c in Counter} <= set(stats)
    assert stats["pages"] == len(records) == len(reachable) + len(disallowed)
    assert stats["robots_disallowed"] == len(disallowed)
    assert stats["finished"] is True
    assert (stats["queued"], stats["in_flight"]) == (0, 0)


async def test_max_pages_stops_after_exactly_that_many_records(tmp_path: Path) -> None:
    """crawl.max_pages = 3: exactly 3 records, no lease left out, finished True (a limit is not an interruption)."""
    sites, reachable, _ = make_link_web(n_hosts=2, pages_per_host=6, seed=3)
    out = tmp_path / "out"
    with TestWeb(sites) as web:
        cfg = make_config(web, crawl={"max_pages": 3, "max_depth": 50})
        async with rig(out, cfg, list(sites), clock=OffsetClock()) as r:
            await r.seed(*(web.url(h) for h in sites))
            worker = r.built.worker
            await asyncio.wait_for(worker.run(), 20)
            counts = await r.store.counts()
    records = read_records(out / PAGES)
    assert len(records) == 3
    assert len({rec["url"] for rec in records}) == 3
    assert worker.finished is True
    assert (counts.leased, counts.done) == (0, 3)
    assert counts.queued > 0  # work was left, not exhausted
    stats = orjson.loads((out / STATS).read_bytes())
    assert (stats["pages"], stats["finished"]) == (3, True)
    assert len(reachable) > 3


async def test_stop_mid_crawl_releases_unfinished_leases_and_resumes(tmp_path: Path) -> None:
    """`stop("SIGTERM")` while a slow page is in flight: `run` returns with finished False and stop_reason SIGTERM,
    the unfinished lease is released (nothing leased), the log offset covers every record written; a second
    worker on the same folder finishes the crawl, every page recorded exactly once over both runs."""
    slow = {"on": True}

    async def slow_page(request: aioweb.Request) -> aioweb.StreamResponse:
        deadline = time.monotonic() + 30
        while slow["on"] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return aioweb.Response(text=html("slow"), content_type="text/html")

    def site() -> Site:
        pages: dict[str, Any] = {"/": Page(html("home", ["/slow", "/f1"]))}
        pages["/slow"] = slow_page
        pages["/f1"] = Page(html("f1", ["/f2"]))
        pages["/f2"] = Page(html("f2"))
        return Site(pages=pages)

    sites = {"a.test": site(), "b.test": site()}
    expected = {f"{h}{p}" for h in sites for p in ("/", "/slow", "/f1", "/f2")}
    out = tmp_path / "out"
    with TestWeb(sites) as web:
        cfg = make_config(web, politeness={"delay": 0.02})
        async with rig(out, cfg, list(sites), clock=OffsetClock()) as r:
            await r.seed(*(web.url(h) for h in sites))
            worker = r.built.worker
            running = asyncio.create_task(worker.run(drain_timeout=0.3))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (
                any(lease.item.url.endswith("/slow") for lease in worker.tasks.values())
                and len(read_records(out / PAGES)) >= 2
            ):
                await asyncio.sleep(0.02)
            assert any(lease.item.url.endswith("/slow") for lease in worker.tasks.values()), "no slow page in flight"
            worker.stop("SIGTERM")
            await asyncio.wait_for(running, 10)
            counts = await r.store.counts()
            offset = int(await r.store.get_meta("log_offset") or -1)
        first = read_records(out / PAGES)
        assert worker.finished is False and worker.stop_reason == "SIGTERM"
        assert counts.leased == 0 and counts.queued >= 1
        assert offset == (out / PAGES).stat().st_size
        assert RecordLog.recover_tail(out / PAGES, offset) == []  # nothing to replay: all applied
        assert not [rec for rec in first if rec["url"].endswith("/slow")]
        assert orjson.loads((out / STATS).read_bytes())["finished"] is False

        slow["on"] = False
        async with rig(out, cfg, list(sites), clock=OffsetClock()) as r2:
            assert (await r2.store.counts()).leased == 0
            await asyncio.wait_for(r2.built.worker.run(), 20)
            assert r2.built.worker.finished is True
    records = read_records(out / PAGES)
    keys = Tally(page_key(rec["url"]) for rec in records)
    assert set(keys) == expected and max(keys.values()) == 1
    assert all(rec["error"] is None for rec in records)
    assert len(first) < len(records)
