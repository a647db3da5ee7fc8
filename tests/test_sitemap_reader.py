"""Sitemaps in the worker (`crawler.worker.sitemaps.SitemapReader`) and how sitemap items travel (messages).

In-process: the reader is given what a fetch produced (robots.txt rules, a response body) and judged on
the items it hands to the frontier.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from crawler.app.builder import build_worker, make_scope
from crawler.cluster.messages import decode_lease, decode_outcome, encode_lease, encode_links, encode_outcome
from crawler.core.config import Config, config_from_dict
from crawler.core.errors import ErrorType
from crawler.core.record import Record
from crawler.core.stats import Counter, Stats
from crawler.core.urlitem import SITEMAP, SITEMAP_FOR, SITEMAP_PROBE, UrlItem
from crawler.core.urlnorm import host_key
from crawler.core.validators import Validators
from crawler.extract.neardup import LocalNearDup, NearDupIndex
from crawler.fetch.http import Response
from crawler.fetch.pages import PageFetch
from crawler.fetch.robots_rules import RobotsRules, parse_robots
from crawler.ingest.admit import Ingest
from crawler.worker.frontier import StoreFrontier
from crawler.worker.sitemaps import SitemapReader
from frontier.sqlite.store import SqliteStore
from frontier.store import Lease, Outcome
from tests.conftest import page_key, read_records
from tests.test_worker import html, make_config
from tests.testweb import Page, Site, TestWeb

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def reader(**crawl: Any) -> tuple[SitemapReader, Stats, Config]:
    cfg = config_from_dict({"crawl": {"allow_domains": ["a.test", "h.test"], **crawl}})
    stats = Stats()
    ingest = Ingest(cfg, make_scope(cfg, []), stats)
    return SitemapReader(cfg, ingest, stats, cfg.for_host), stats, cfg


def fetched(url: str, robots_txt: str | None, fetched_at: float = 1.0) -> PageFetch:
    if robots_txt is None:
        rules = RobotsRules("allow_all", "404 allow all", fetched_at=fetched_at, expires_at=fetched_at + 100)
    else:
        rules = parse_robots(robots_txt.encode(), product_token="PoliteCrawler", fetched_at=fetched_at)
    return PageFetch(url=url, final_url=url, rules=rules)


def response(url: str, body: bytes) -> Response:
    return Response(url, 200, {}, body, "application/xml", None, None, None, 1.0, len(body), "127.0.0.1")


async def read(r: SitemapReader, item: UrlItem, body: bytes) -> tuple[Record, Any, list[UrlItem]]:
    rec = Record(url=item.url, final_url=item.url)
    error, items = await r.read(rec, response(item.url, body), item.url, item, 1000)
    return rec, error, items


def test_robots_sitemaps_are_offered_once_per_robots_txt() -> None:
    r, _, cfg = reader()
    text = "User-agent: *\nSitemap: http://a.test/s.xml\nSitemap: /relative.xml\nSitemap: http://maps.h.test/a.xml\n"
    found = r.discover(fetched("http://a.test/page", text), cfg.for_host("a.test"))
    assert found == [
        UrlItem("http://a.test/s.xml", "a.test", 0, kind=SITEMAP),
        UrlItem("http://a.test/relative.xml", "a.test", 0, kind=SITEMAP),
        UrlItem("http://maps.h.test/a.xml", "maps.h.test", 0, kind=SITEMAP_FOR + "a.test"),
    ]
    assert r.discover(fetched("http://a.test/other", text), cfg.for_host("a.test")) == []  # same robots.txt
    # Fetched anew (a day later): offered again, and this process already knows them.
    assert r.discover(fetched("http://a.test/x", text, fetched_at=2.0), cfg.for_host("a.test")) == []


def test_without_sitemap_lines_the_host_sitemap_xml_is_guessed() -> None:
    r, _, cfg = reader()
    assert r.discover(fetched("http://a.test:8080/p", None), cfg.for_host("a.test:8080")) == [
        UrlItem("http://a.test:8080/sitemap.xml", "a.test:8080", 0, kind=SITEMAP_PROBE)
    ]
    assert r.discover(fetched("https://a.test/p", "User-agent: *\nDisallow: /x\n"), cfg.for_host("a.test")) == [
        UrlItem("https://a.test/sitemap.xml", "a.test", 0, kind=SITEMAP_PROBE)
    ]


def test_nothing_is_offered_while_robots_txt_is_unavailable_or_sitemaps_are_off() -> None:
    r, _, cfg = reader()
    waiting = PageFetch(
        url="http://a.test/",
        final_url="http://a.test/",
        rules=RobotsRules("disallow_all", "503", fetched_at=1, expires_at=2),
    )
    assert r.discover(waiting, cfg.for_host("a.test")) == []
    assert r.discover(PageFetch(url="http://a.test/", final_url="http://a.test/"), cfg.for_host("a.test")) == []
    off, _, off_cfg = reader(sitemaps=False)
    assert off.discover(fetched("http://a.test/", None), off_cfg.for_host("a.test")) == []


def test_sitemap_files_per_host_are_capped() -> None:
    r, stats, cfg = reader(sitemap_max_files=2)
    text = "".join(f"Sitemap: http://a.test/s{i}.xml\n" for i in range(3))
    assert len(r.discover(fetched("http://a.test/", text), cfg.for_host("a.test"))) == 2
    assert stats.skipped["sitemap_files"] == 1


async def test_an_index_queues_its_sitemaps_one_level_deeper_up_to_the_limit() -> None:
    body = f'<sitemapindex xmlns="{NS}"><sitemap><loc>http://a.test/c1.xml</loc></sitemap></sitemapindex>'.encode()
    r, stats, _ = reader(sitemap_max_depth=1)
    rec, error, items = await read(r, UrlItem("http://a.test/i.xml", "a.test", 0, kind=SITEMAP_PROBE), body)
    assert error is None and items == [UrlItem("http://a.test/c1.xml", "a.test", 1, kind=SITEMAP)]
    assert (rec.sitemap_urls, rec.links, rec.links_followed) == (1, ["http://a.test/c1.xml"], True)
    rec, error, items = await read(r, UrlItem("http://a.test/deeper.xml", "a.test", 1, kind=SITEMAP), body)
    assert items == [] and stats.skipped["sitemap_depth"] == 1 and rec.sitemap_urls == 1


async def test_urls_are_queued_newest_first_and_only_for_hosts_the_sitemap_speaks_for() -> None:
    rows = [
        ("http://a.test/old", "2001-01-01"),
        ("http://a.test/none", None),
        ("http://a.test/new", "2024-01-01"),
        ("http://h.test/foreign", "2030-01-01"),
        ("http://a.test/new#frag", None),  # the same URL once normalized: listed once
        ("not a url at all:", None),
    ]
    body = f'<urlset xmlns="{NS}">'
    for loc, mod in rows:
        body += f"<url><loc>{loc}</loc>" + (f"<lastmod>{mod}</lastmod>" if mod else "") + "</url>"
    r, stats, _ = reader()
    rec, error, items = await read(
        r, UrlItem("http://a.test/s.xml", "a.test", 1, kind=SITEMAP), (body + "</urlset>").encode()
    )
    assert error is None
    assert [(i.url, i.depth, i.kind) for i in items] == [
        ("http://a.test/new", 2, ""),
        ("http://a.test/old", 2, ""),
        ("http://a.test/none", 2, ""),
    ]
    assert items[0].lastmod is not None and items[2].lastmod is None
    assert rec.sitemap_urls == 6 and len(rec.links) == 4  # normalized and distinct, foreign one included
    assert stats.skipped["sitemap_foreign_host"] == 1 and stats.c[Counter.SITEMAP_URLS] == 6
    # Named by h.test's robots.txt (a cross-submit), a sitemap on a.test may list h.test's URLs too.
    cross = UrlItem("http://a.test/s2.xml", "a.test", 0, kind=SITEMAP_FOR + "h.test")
    _, _, items = await read(r, cross, (body + "</urlset>").encode())
    assert "http://h.test/foreign" in [i.url for i in items]


async def test_a_guess_that_finds_no_sitemap_is_no_error_but_a_named_one_is() -> None:
    r, _, _ = reader()
    page = b"<!doctype html><html><body>soft 404</body></html>"
    _, error, items = await read(r, UrlItem("http://a.test/sitemap.xml", "a.test", 0, kind=SITEMAP_PROBE), page)
    assert (error, items) == (None, [])
    _, error, _ = await read(r, UrlItem("http://a.test/sitemap.xml", "a.test", 0, kind=SITEMAP), page)
    assert error is not None and error.type is ErrorType.SITEMAP_ERROR


async def test_a_big_sitemap_is_read_in_a_thread_with_the_same_result() -> None:
    r, _, _ = reader()
    body = ("\n".join(f"http://a.test/p{i}" for i in range(20_000)) + "\n").encode()
    assert len(body) > 256 * 1024
    rec, error, items = await read(r, UrlItem("http://a.test/s.txt", "a.test", 0, kind=SITEMAP), body)
    assert error is None and rec.sitemap_urls == 20_000 and len(items) == 20_000 and len(rec.links) == 1000


def test_a_sitemap_redirected_to_another_host_stays_a_sitemap() -> None:
    r, _, _ = reader()
    moved = r.moved(UrlItem("http://a.test/s.xml", "a.test", 1, kind=SITEMAP), "http://cdn.a.test/s.xml")
    assert moved == [UrlItem("http://cdn.a.test/s.xml", "cdn.a.test", 1, kind=SITEMAP_FOR + "a.test")]
    back = r.moved(
        UrlItem("http://cdn.a.test/t.xml", "cdn.a.test", 0, kind=SITEMAP_FOR + "a.test"), "http://a.test/t.xml"
    )
    assert back == [UrlItem("http://a.test/t.xml", "a.test", 0, kind=SITEMAP)]


# ------------------------------------------------------------------ messages


ITEMS = [
    UrlItem("http://a.test/p", "a.test", 3, 1),
    UrlItem("http://a.test/s.xml", "a.test", 0, 2, kind=SITEMAP),
    UrlItem("http://a.test/q", "a.test", 2, 0, lastmod=1_714_521_600.25),
]


def test_messages_carry_kind_and_lastmod_and_pages_cost_nothing_more() -> None:
    for item in ITEMS:
        lease = Lease(item, 7, 99.5)
        assert decode_lease(encode_lease(lease)) == lease
    # A page's lease message is what it always was.
    assert encode_lease(Lease(ITEMS[0], 7, 99.5)) == b'[7,99.5,"http://a.test/p","a.test",3,1]'
    links = [UrlItem(i.url, i.host, i.depth, 0, i.kind, i.lastmod) for i in ITEMS]
    assert decode_outcome(encode_links(ITEMS, "w1")) == ("w1", links)
    # With a recrawl's validators too: they come first, the kind and lastmod after them.
    both = Lease(ITEMS[2], 9, 99.5, Validators(etag='"e"'))
    assert decode_lease(encode_lease(both)) == both
    assert decode_lease(encode_lease(Lease(ITEMS[0], 9, 99.5, Validators(etag='"e"')))).item == ITEMS[0]
    outcome = Outcome(Lease(ITEMS[1], 8, 99.5), "done", 5.0, links=ITEMS)
    worker, back = decode_outcome(encode_outcome(outcome, "w2"))
    assert worker == "w2" and isinstance(back, Outcome)
    assert back.lease == outcome.lease and list(back.links) == links


# ------------------------------------------------------------------ replay after a crash


async def test_a_sitemap_record_replayed_after_a_crash_is_read_again_not_written_again(tmp_path: Path) -> None:
    """A sitemap's record in the log past the last commit lists at most max_outlinks URLs and not which are
    sitemaps, so its lease reads the sitemap again for its items; no second record is written."""
    base = "http://m.test:@PORT@"
    body = f'<urlset xmlns="{NS}"><url><loc>{base}/p1</loc></url><url><loc>{base}/p2</loc></url></urlset>'
    pages = {
        "/robots.txt": Page(f"User-agent: *\nSitemap: {base}/map.xml\n", headers={"Content-Type": "text/plain"}),
        "/map.xml": Page(body, headers={"Content-Type": "application/xml"}),
        "/p1": Page(html("p1")),
        "/p2": Page(html("p2")),
    }
    with TestWeb({"m.test": Site(pages=pages)}) as web:
        cfg = make_config(web, crawl={"sitemaps": True})
        url = web.url("m.test", "/map.xml")
        logged = {"url": url, "error": None, "sitemap_urls": 2, "links": [], "links_followed": True}
        async with AsyncExitStack() as stack:
            store = await SqliteStore.open(tmp_path, host_limits=cfg.host_limits)
            stack.push_async_callback(store.close)
            built = await build_worker(
                stack,
                cfg,
                frontier=StoreFrontier(store),
                scope=make_scope(cfg, ["m.test"]),
                stats=(stats := Stats()),
                neardup=LocalNearDup(NearDupIndex(3)),
                sink_path=tmp_path / "pages.jsonl",
                stats_path=None,
                replay={url: logged},
            )
            await store.add([UrlItem(url, host_key(url), 0, kind=SITEMAP)], time.time())
            await built.worker.run()
        assert web.count("m.test", "/map.xml") == 1
    written = sorted(page_key(r["url"]) for r in read_records(tmp_path / "pages.jsonl"))
    assert written == ["m.test/p1", "m.test/p2"]  # the sitemap's own record is the one already in the log
    assert (stats.c[Counter.PAGES], stats.c[Counter.SITEMAPS]) == (3, 1)


def test_no_sitemap_is_queued_whose_urls_would_all_be_too_deep() -> None:
    r, stats, cfg = reader(max_depth=0)
    assert r.discover(fetched("http://a.test/", "Sitemap: http://a.test/s.xml\n"), cfg.for_host("a.test")) == []
    assert stats.skipped["max_depth"] == 1
