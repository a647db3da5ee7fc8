"""End to end: sitemaps feed the frontier (issue 11, Sitemaps; Acceptance 2).

Each test runs the real `crawler` process against the loopback test web and judges the records,
`stats.json` and the server's request log.
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import page_key, read_records, run_crawler, start_crawler
from tests.judges import assert_polite
from tests.redis_server import RedisServer
from tests.testweb import Page, Site, TestWeb

pytest_plugins = ["redis_server"]

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
XML = {"Content-Type": "application/xml"}


def html(title: str, links: Iterable[str] = ()) -> Page:
    anchors = "".join(f'<a href="{h}">{i}</a> ' for i, h in enumerate(links))
    return Page(f"<html><head><title>{title}</title></head><body><p>{title}</p>{anchors}</body></html>")


def urlset(entries: Iterable[tuple[str, str | None]]) -> bytes:
    rows = "".join(f"<url><loc>{loc}</loc>{f'<lastmod>{mod}</lastmod>' if mod else ''}</url>" for loc, mod in entries)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{NS}">{rows}</urlset>\n'.encode()


def index(locs: Iterable[str]) -> bytes:
    rows = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="{NS}">{rows}</sitemapindex>\n'.encode()


def robots(*lines: str) -> Page:
    """robots.txt served as a page, so `@PORT@` in its Sitemap lines is filled in."""
    return Page("User-agent: *\n" + "".join(f"{line}\n" for line in lines), headers={"Content-Type": "text/plain"})


def crawl(web: TestWeb, out: Path, *seeds: str, config: str = "", extra: Iterable[str] = ()) -> dict[str, Any]:
    """Run `crawler crawl` on `seeds` (hosts of the test web); returns records by port-free key, and stats."""
    args = ["crawl", *(web.url(s) for s in seeds), "-o", str(out), "--delay", "0", "--resolve", "*.test=127.0.0.1"]
    if config:
        (out.parent / "c.toml").write_text(config)
        args += ["-c", str(out.parent / "c.toml")]
    proc = run_crawler(*args, "--no-progress", *extra)
    assert proc.returncode == 0, proc.stderr
    return {
        "records": {page_key(r["url"]): r for r in read_records(out / "pages.jsonl")},
        "lines": read_records(out / "pages.jsonl"),
        "stats": orjson.loads((out / "stats.json").read_bytes()),
    }


def paths(web: TestWeb, host: str) -> list[str]:
    return [r.path for r in sorted(web.requests_for(host), key=lambda r: r.started)]


# ------------------------------------------------------------------ the sitemap index site

PAGES_GZ = [f"/gz/{i}" for i in range(6)]
# s2's pages, listed oldest first; the crawl must fetch them newest first.
PAGES_XML = [("/x/old", "2020-01-01"), ("/x/new", "2024-06-01T12:00:00Z"), ("/x/undated", None), ("/x/mid", "2022-03")]
FETCH_ORDER_XML = ["/x/new", "/x/mid", "/x/old", "/x/undated"]


def index_site() -> dict[str, Site]:
    """a.test: `/` links nothing; robots.txt names a sitemap index of a gzipped and a plain child.

    s2 also lists a URL of another in-scope host (sub.a.test: not its to list) and one out of scope
    (other.test); neither may be fetched.
    """
    a = "http://a.test:@PORT@"
    pages: dict[str, Any] = {
        "/": html("home"),
        "/robots.txt": robots("Disallow: /private/", f"Sitemap: {a}/sitemap_index.xml"),
        "/sitemap_index.xml": Page(index([f"{a}/maps/s1.xml.gz", f"{a}/maps/s2.xml"]), headers=XML),
        "/maps/s2.xml": Page(
            urlset(
                [(f"{a}{p}", mod) for p, mod in PAGES_XML]
                + [("http://sub.a.test:@PORT@/not-yours", None), ("http://other.test:@PORT@/out", None)]
            ),
            headers=XML,
        ),
    }
    for p in PAGES_GZ + [p for p, _ in PAGES_XML]:
        pages[p] = html(p)
    return {
        "a.test": Site(pages=pages),
        "sub.a.test": Site(pages={"/": html("sub"), "/not-yours": html("no")}),
        "other.test": Site(pages={"/out": html("out")}),
    }


def add_gzipped_child(web: TestWeb) -> None:
    """s1.xml.gz, built once the port is known (a gzipped body is not searched for @PORT@)."""
    body = urlset((web.url("a.test", p), "2023-01-01") for p in PAGES_GZ)
    web.sites["a.test"].pages["/maps/s1.xml.gz"] = Page(
        gzip.compress(body), headers={"Content-Type": "application/x-gzip"}
    )


def check_index_crawl(web: TestWeb, records: dict[str, dict[str, Any]], stats: dict[str, Any] | None) -> None:
    """Every URL of the index's children reached once at depth 2; nothing outside; each sitemap fetched once."""
    for p in PAGES_GZ + [p for p, _ in PAGES_XML]:
        rec = records[f"a.test{p}"]
        assert rec["status"] == 200 and rec["error"] is None and rec["depth"] == 2, rec
        assert rec["sitemap_urls"] is None
    idx = records["a.test/sitemap_index.xml"]
    assert (idx["status"], idx["error"], idx["depth"], idx["sitemap_urls"]) == (200, None, 0, 2)
    assert [page_key(u) for u in idx["links"]] == ["a.test/maps/s1.xml.gz", "a.test/maps/s2.xml"]
    s1 = records["a.test/maps/s1.xml.gz"]
    assert (s1["content_type"], s1["sitemap_urls"], s1["depth"], s1["error"]) == ("application/x-gzip", 6, 1, None)
    s2 = records["a.test/maps/s2.xml"]
    assert (s2["content_type"], s2["sitemap_urls"], s2["error"]) == ("application/xml", 6, None)
    assert len(s2["links"]) == 6 and s2["links_followed"] is True
    for path in ("/sitemap_index.xml", "/maps/s1.xml.gz", "/maps/s2.xml", "/robots.txt"):
        assert web.count("a.test", path) == 1, path
    assert web.count("a.test", "/sitemap.xml") == 0  # robots.txt named a sitemap: no guessing
    assert web.requests_for("other.test") == []
    assert "sub.a.test/not-yours" not in records and web.count("sub.a.test", "/not-yours") == 0
    fetched = [p for p in paths(web, "a.test") if p.startswith("/x/")]
    assert fetched == FETCH_ORDER_XML  # newest lastmod first, undated last
    expected = {"a.test/", "a.test/sitemap_index.xml", "a.test/maps/s1.xml.gz", "a.test/maps/s2.xml"}
    expected |= {f"a.test{p}" for p in PAGES_GZ + [p for p, _ in PAGES_XML]}
    assert set(records) == expected
    if stats is not None:
        assert stats["sitemaps"] == 3 and stats["sitemap_urls"] == 2 + 6 + 6
        assert stats["skipped"]["sitemap_foreign_host"] == 2


def test_a_sitemap_index_from_robots_txt_reaches_every_url(tmp_path: Path) -> None:
    """Acceptance 2: seeded only with a root page that links nowhere, the crawl reaches every sitemap URL."""
    with TestWeb(index_site()) as web:
        add_gzipped_child(web)
        got = crawl(web, tmp_path / "out", "a.test")
        check_index_crawl(web, got["records"], got["stats"])
        assert len(got["lines"]) == len(got["records"])  # each URL recorded once
        assert_polite(web.log, 0.0)


def test_sitemap_xml_is_tried_when_robots_txt_names_none(tmp_path: Path) -> None:
    """b.test names no sitemap but serves /sitemap.xml (plain text); c.test has neither robots.txt nor one."""
    b = "http://b.test:@PORT@"
    sites = {
        "b.test": Site(
            pages={
                "/": html("b"),
                "/sitemap.xml": Page(f"{b}/t1\n{b}/t2\n", headers={"Content-Type": "text/plain"}),
                "/t1": html("t1"),
                "/t2": html("t2"),
            },
            robots="User-agent: *\nDisallow:\n",
        ),
        "c.test": Site(pages={"/": html("c")}),
    }
    with TestWeb(sites) as web:
        got = crawl(web, tmp_path / "out", "b.test", "c.test")
    recs = got["records"]
    assert {"b.test/t1", "b.test/t2"} <= set(recs) and recs["b.test/t1"]["depth"] == 1
    probe = recs["b.test/sitemap.xml"]
    assert (probe["status"], probe["sitemap_urls"], probe["error"], probe["depth"]) == (200, 2, None, 0)
    # No /sitemap.xml on c.test: the guess is recorded with its 404, and it is no failure.
    missing = recs["c.test/sitemap.xml"]
    assert (missing["status"], missing["error"], missing["sitemap_urls"], missing["dead_letter"]) == (
        404,
        None,
        0,
        False,
    )
    assert got["stats"]["failed"] == 0
    assert web.count("c.test", "/sitemap.xml") == 1


def test_sitemaps_can_be_turned_off_per_domain_and_for_the_crawl(tmp_path: Path) -> None:
    sites = {h: Site(pages={"/": html(h)}) for h in ("d.test", "e.test")}
    with TestWeb(sites) as web:
        got = crawl(web, tmp_path / "one", "d.test", "e.test", config='[domains."e.test"]\nsitemaps = false\n')
        assert web.count("d.test", "/sitemap.xml") == 1 and web.count("e.test", "/sitemap.xml") == 0
        assert set(got["records"]) == {"d.test/", "d.test/sitemap.xml", "e.test/"}
        web.clear_log()
        got = crawl(web, tmp_path / "two", "d.test", "e.test", config="[crawl]\nsitemaps = false\n")
        assert [r.path for r in web.log if "sitemap" in r.path] == []
        assert set(got["records"]) == {"d.test/", "e.test/"}


def bomb(decoded: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = f'<?xml version="1.0"?><urlset xmlns="{NS}">'.encode()
    parts = [comp.compress(head)] + [comp.compress(b" " * 2**20) for _ in range(decoded // 2**20)]
    return b"".join([*parts, comp.flush()])


def test_bad_sitemaps_are_error_records_and_the_crawl_goes_on(tmp_path: Path) -> None:
    """Malformed XML, an HTML page, over 50,000 URLs, a gzip bomb and an oversized body: typed error records."""
    f = "http://f.test:@PORT@"
    many = "\n".join(f"http://other.test:@PORT@/{i}" for i in range(50_001)) + "\n"
    names = ("bad.xml", "page.xml", "many.txt", "bomb.xml.gz", "huge.xml", "good.xml")
    sites = {
        "f.test": Site(
            pages={
                "/": html("f"),
                "/robots.txt": robots(*(f"Sitemap: {f}/{name}" for name in names)),
                # Cut off in the middle of its second entry.
                "/bad.xml": Page(f'<urlset xmlns="{NS}"><url><loc>{f}/early</loc></url><url><loc>{f}/la', headers=XML),
                "/page.xml": html("an HTML page where a sitemap should be"),
                "/many.txt": Page(many, headers={"Content-Type": "text/plain"}),
                "/bomb.xml.gz": Page(bomb(200 * 2**20), headers={"Content-Type": "application/gzip"}),
                "/huge.xml": Page(urlset((f"{f}/h{i}", None) for i in range(60_000)), headers=XML),
                "/good.xml": Page(urlset([(f"{f}/ok", None)]), headers=XML),
                "/early": html("early"),
                "/ok": html("ok"),
            }
        ),
        "other.test": Site(pages={}),
    }
    config = "[crawl]\nsitemap_max_bytes = 2000000\n"
    with TestWeb(sites) as web:
        got = crawl(web, tmp_path / "out", "f.test", config=config)
        assert web.requests_for("other.test") == []
    recs = got["records"]
    assert recs["f.test/ok"]["status"] == 200 and recs["f.test/early"]["status"] == 200

    def err(name: str) -> tuple[str, int]:
        rec = recs[f"f.test/{name}"]
        assert rec["dead_letter"] is False and rec["attempts"] == 1
        return rec["error"]["type"], rec["sitemap_urls"]

    assert err("bad.xml") == ("sitemap_error", 1)  # what came before the fault is kept
    assert err("page.xml") == ("sitemap_error", 0)
    assert err("many.txt") == ("sitemap_error", 50_000)
    assert len(recs["f.test/many.txt"]["links"]) == 1000  # the record's list is capped (max_outlinks)
    assert err("bomb.xml.gz") == ("too_large", 0)
    assert err("huge.xml") == ("too_large", 0)  # the body itself is over sitemap_max_bytes
    assert "more than 50000" in recs["f.test/many.txt"]["error"]["message"]
    assert got["stats"]["errors_by_type"] == {"sitemap_error": 3, "too_large": 2}


def test_a_sitemap_robots_txt_disallows_is_not_fetched(tmp_path: Path) -> None:
    g = "http://g.test:@PORT@"
    sites = {
        "g.test": Site(
            pages={
                "/": html("g"),
                "/robots.txt": robots("Disallow: /private/", f"Sitemap: {g}/private/sitemap.xml"),
                "/private/sitemap.xml": Page(urlset([(f"{g}/secret", None)]), headers=XML),
                "/secret": html("secret"),
            }
        )
    }
    with TestWeb(sites) as web:
        got = crawl(web, tmp_path / "out", "g.test")
        assert paths(web, "g.test") == ["/robots.txt", "/"]
    rec = got["records"]["g.test/private/sitemap.xml"]
    assert rec["status"] is None and rec["error"]["type"] == "robots_disallowed" and rec["sitemap_urls"] == 0
    assert "g.test/secret" not in got["records"]


def test_cross_submitted_sitemap_may_list_the_naming_hosts_urls(tmp_path: Path) -> None:
    """h.test's robots.txt names a sitemap on maps.h.test: it may list h.test's URLs (sitemaps.org cross-submit)."""
    sites = {
        "h.test": Site(
            pages={
                "/": html("h"),
                "/robots.txt": robots("Sitemap: http://maps.h.test:@PORT@/for-h.xml"),
                "/listed": html("listed"),
            }
        ),
        "maps.h.test": Site(
            pages={
                "/for-h.xml": Page(
                    urlset([("http://h.test:@PORT@/listed", None), ("http://maps.h.test:@PORT@/own", None)]),
                    headers=XML,
                ),
                "/own": html("own"),
            },
            robots="User-agent: *\nDisallow:\n",
        ),
    }
    with TestWeb(sites) as web:
        got = crawl(web, tmp_path / "out", "h.test")
    recs = got["records"]
    assert recs["maps.h.test/for-h.xml"]["sitemap_urls"] == 2
    assert recs["h.test/listed"]["status"] == 200 and recs["maps.h.test/own"]["status"] == 200


# ------------------------------------------------------------------ distributed


def test_crawl_on_redis_reaches_every_sitemap_url(tmp_path: Path, redis_server: RedisServer, redis_job: str) -> None:
    """The same index site through `crawl --redis`: kind and lastmod travel through Redis and its messages."""
    with TestWeb(index_site()) as web:
        add_gzipped_child(web)
        out = tmp_path / "out"
        proc = run_crawler(
            "crawl", web.url("a.test"), "-o", str(out), "--delay", "0", "--resolve", "*.test=127.0.0.1",
            "--no-progress", "--redis", redis_server.url, "--job", redis_job,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        lines = [r for p in sorted(out.glob("pages*.jsonl")) for r in read_records(p)]
        records = {page_key(r["url"]): r for r in lines}
        assert len(lines) == len(records)
        check_index_crawl(web, records, None)


@pytest.mark.timeout(180)
def test_three_workers_queue_each_hosts_sitemaps_once(
    tmp_path: Path, make_redis_server: Callable[..., RedisServer], redis_job: str
) -> None:
    """Frontier and three workers: every host's sitemap is fetched once for the job, and all its URLs reached."""
    hosts = [f"s{i}.test" for i in range(8)]
    sites = {}
    for h in hosts:
        base = f"http://{h}:@PORT@"
        sites[h] = Site(
            pages={
                "/": html(h),
                "/robots.txt": robots(f"Sitemap: {base}/map.xml"),
                "/map.xml": Page(urlset((f"{base}/p{i}", None) for i in range(5)), headers=XML),
                **{f"/p{i}": html(f"{h} {i}") for i in range(5)},
            }
        )
    server = make_redis_server()
    with TestWeb(sites) as web:
        common = ["--redis", server.url, "--job", redis_job]
        cfg = tmp_path / "job.toml"
        cfg.write_text("[politeness]\ndelay = 0.05\n[crawl]\nconcurrency = 8\n")
        sub = run_crawler(
            "submit", *(web.url(h) for h in hosts), *common, "-c", str(cfg), "--resolve", "*.test=127.0.0.1"
        )
        assert sub.returncode == 0, sub.stderr
        procs = [start_crawler("frontier", *common, log=tmp_path / "frontier.log")]
        out = tmp_path / "out"
        for i in range(3):
            args = ["worker", *common, "--id", f"w{i}", "-o", str(out), "--exit-when-done"]
            procs.append(start_crawler(*args, log=tmp_path / f"w{i}.log"))
        try:
            for proc in procs[1:]:
                assert proc.wait(timeout=150) == 0, (tmp_path / "w0.log").read_text()[-2000:]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=20)
        lines = [r for p in sorted(out.glob("pages-*.jsonl")) for r in read_records(p)]
        records = {page_key(r["url"]): r for r in lines}
        assert len(lines) == len(records)
        for h in hosts:
            assert web.count(h, "/map.xml") == 1 and web.count(h, "/robots.txt") == 1, h
            assert records[f"{h}/map.xml"]["sitemap_urls"] == 5
            for i in range(5):
                assert records[f"{h}/p{i}"]["status"] == 200 and records[f"{h}/p{i}"]["depth"] == 1
        assert_polite(web.log, 0.05, slack=0.01)


def test_a_recrawl_reads_the_sitemap_again_through_robots_txt(tmp_path: Path) -> None:
    """Sitemaps are not on the recrawl's list of fetched pages: once expired, robots.txt names them again, and
    the pages they list are recrawled once each (conditionally where they had validators)."""
    base = "http://k.test:@PORT@"
    pages = {
        "/": html("k"),
        "/robots.txt": robots(f"Sitemap: {base}/map.xml"),
        "/map.xml": Page(urlset([(f"{base}/p1", "2024-01-01"), (f"{base}/p2", None)]), headers=XML),
        "/p1": Page(html("p1").body, headers={"ETag": '"p1"'}),
        "/p2": html("p2"),
    }
    out = tmp_path / "out"
    with TestWeb({"k.test": Site(pages=pages)}) as web:
        args = ["crawl", web.url("k.test"), "-o", str(out), "--delay", "0", "--resolve", "*.test=127.0.0.1"]
        args += ["--seen-ttl", "2", "--no-progress"]
        first = run_crawler(*args)
        assert first.returncode == 0, first.stderr
        ended = time.monotonic()
        assert sorted(page_key(r["url"]) for r in read_records(out / "pages.jsonl")) == [
            "k.test/", "k.test/map.xml", "k.test/p1", "k.test/p2",
        ]  # fmt: skip
        time.sleep(max(0.0, 2.3 - (time.monotonic() - ended)))
        web.clear_log()
        again = run_crawler(*args)
        assert again.returncode == 0, again.stderr
        assert "recrawl: 3 pages" in again.stderr  # /, /p1, /p2: not the sitemap
        requested = sorted(r.path for r in web.log)
        assert requested == ["/", "/map.xml", "/p1", "/p2", "/robots.txt"]  # each once
        p1 = next(r for r in web.log if r.path == "/p1")
        assert p1.headers.get("If-None-Match") == '"p1"' and p1.status == 304
    second = read_records(out / "pages.jsonl")[4:]
    assert sorted(page_key(r["url"]) for r in second) == ["k.test/", "k.test/map.xml", "k.test/p1", "k.test/p2"]
    assert next(r for r in second if r["url"].endswith("/map.xml"))["sitemap_urls"] == 2
