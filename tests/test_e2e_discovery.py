"""End to end: no page is lost to discovery rules (issue 10 items 1, 2, 5, 6).

Each test runs the real `crawler crawl` process against the loopback test web and judges the output
records, `stats.json` and the server's request log.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.conftest import page_key, read_records, run_crawler
from tests.testweb import Page, Site, TestWeb, redirect

N_PAGES = 300  # pages the index links to
FIRST = 20  # the index's first 10,000 anchors only repeat these, with fragments

ARTICLE = " ".join(
    f"Chapter {i}: the harbor lantern signal drifted past copper meadows while the falcon circled "
    f"the quartz ridge and the orbit of velvet thistles kept its slow rhythm number {i}."
    for i in range(12)
)


def _html(title: str, links: list[str], text: str = "", head: str = "") -> str:
    anchors = "".join(f'<a href="{h}">{i}</a> ' for i, h in enumerate(links))
    return f"<html><head><title>{title}</title>{head}</head><body><p>{text or title}</p>{anchors}</body></html>"


def _crawl(web: TestWeb, out: Path, *extra: str) -> dict[str, dict]:
    proc = run_crawler(
        "crawl",
        web.url("a.test"),
        "-o",
        str(out),
        "--delay",
        "0",
        "--resolve",
        "*.test=127.0.0.1",
        "--no-progress",
        *extra,
    )
    assert proc.returncode == 0, proc.stderr
    return {page_key(r["url"]): r for r in read_records(out / "pages.jsonl")}


def _index_site() -> dict[str, Page]:
    """`/` → `/index` (depth 1) → /p/0..299 (depth 2); /p/i also links /p/i+1 (a longer way round).

    The index has 10,000 anchors cycling through the first 20 pages with fragments before it lists the
    rest (with fragments and repeats too): a cap on raw hrefs keeps only those first 20.
    /p/299 is also linked from `/`, so its shortest depth is 1.
    """
    anchors = [f"/p/{i % FIRST}#s{i}" for i in range(10_000)]
    anchors += [f"/p/{i}{suffix}" for i in range(N_PAGES) for suffix in ("", "#top", "#bottom")]
    pages = {
        "/": Page(_html("home", ["/index", f"/p/{N_PAGES - 1}"])),
        "/index": Page(_html("index", anchors)),
    }
    for i in range(N_PAGES):
        pages[f"/p/{i}"] = Page(_html(f"page {i}", [f"/p/{i + 1}"] if i + 1 < N_PAGES else []))
    return pages


def test_max_outlinks_caps_distinct_urls_so_a_huge_index_loses_no_page(tmp_path: Path) -> None:
    """Acceptance 1: >10,000 anchors to 300 pages; every page recorded once, with its shortest depth."""
    with TestWeb({"a.test": Site(pages=_index_site())}) as web:
        out = tmp_path / "out"
        recs = _crawl(web, out, "--max-depth", "2", "--no-sitemaps")
    index = recs["a.test/index"]
    assert len(index["links"]) == N_PAGES and index["links_cut"] == 0
    for i in range(N_PAGES - 1):
        assert recs[f"a.test/p/{i}"]["depth"] == 2, i
    assert recs[f"a.test/p/{N_PAGES - 1}"]["depth"] == 1
    assert len(read_records(out / "pages.jsonl")) == N_PAGES + 2
    assert orjson.loads((out / "stats.json").read_bytes())["skipped"].get("max_outlinks", 0) == 0


def test_max_outlinks_cut_is_counted_in_distinct_urls_per_page(tmp_path: Path) -> None:
    """A cap below the page's distinct links: the first `cap` distinct URLs kept, the rest counted."""
    config = tmp_path / "c.toml"
    config.write_text("[crawl]\nmax_outlinks = 50\nmax_depth = 1\n")
    with TestWeb({"a.test": Site(pages=_index_site())}) as web:
        out = tmp_path / "out"
        proc = run_crawler(
            "crawl", web.url("a.test", "/index"), "-o", str(out), "-c", str(config), "--delay", "0",
            "--resolve", "*.test=127.0.0.1", "--no-progress", "--no-sitemaps",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    recs = {page_key(r["url"]): r for r in read_records(out / "pages.jsonl")}
    index = recs["a.test/index"]
    assert [page_key(u) for u in index["links"]] == [f"a.test/p/{i}" for i in range(50)]
    assert index["links_cut"] == N_PAGES - 50
    assert orjson.loads((out / "stats.json").read_bytes())["skipped"]["max_outlinks"] == N_PAGES - 50
    assert len(recs) == 51


LANGS = ("en", "de", "fr", "ja")


def _mirror_site() -> dict[str, Page]:
    """A manual whose untranslated pages are copies under every language prefix.

    `/{lang}/guide` is the same text in every language; each copy links a page only it links
    (`/{lang}/only`), so three of those are reachable only through a near-duplicate.
    """
    pages = {"/": Page(_html("manual", [f"/{lang}/guide" for lang in LANGS]))}
    for lang in LANGS:
        pages[f"/{lang}/guide"] = Page(_html("guide", [f"/{lang}/only"], ARTICLE))
        pages[f"/{lang}/only"] = Page(_html(f"only {lang}", [], f"{lang} unique page"))
    return pages


def test_links_of_near_duplicates_are_followed_by_default(tmp_path: Path) -> None:
    """Acceptance 2: every unique page recorded; the mirrored copies are still flagged."""
    with TestWeb({"a.test": Site(pages=_mirror_site())}) as web:
        recs = _crawl(web, tmp_path / "out")
    guides = [recs[f"a.test/{lang}/guide"] for lang in LANGS]
    flagged = [g for g in guides if g["near_duplicate_of"]]
    assert len(flagged) == len(LANGS) - 1
    assert all(g["links_followed"] for g in guides)
    for lang in LANGS:
        assert f"a.test/{lang}/only" in recs, lang


def test_following_near_duplicates_can_be_turned_off_per_domain(tmp_path: Path) -> None:
    """With `[domains."a.test"] follow_near_duplicates = false`, pages reachable only via copies are not crawled."""
    config = tmp_path / "c.toml"
    config.write_text('[domains."a.test"]\nfollow_near_duplicates = false\n')
    with TestWeb({"a.test": Site(pages=_mirror_site())}) as web:
        recs = _crawl(web, tmp_path / "out", "-c", str(config))
        fetched = {r.path for r in web.log}
    for lang in LANGS:
        guide = recs[f"a.test/{lang}/guide"]
        if guide["near_duplicate_of"]:
            assert not guide["links_followed"] and f"/{lang}/only" not in fetched, lang
        else:
            assert guide["links_followed"] and f"a.test/{lang}/only" in recs, lang
    assert sum(1 for lang in LANGS if recs[f"a.test/{lang}/guide"]["near_duplicate_of"]) == len(LANGS) - 1


def test_canonical_is_an_absolute_http_url_or_null(tmp_path: Path) -> None:
    """Item 6: relative and http(s) canonicals are normalized; file:, javascript:, mailto: and garbage are null."""
    canon = {
        "/rel": "/target?utm_source=x#frag",
        "/abs": "HTTP://A.test:@PORT@/Other/../there",
        "/file": "file:///etc/passwd",
        "/js": "javascript:alert(1)",
        "/mail": "mailto:someone@a.test",
        "/garbage": "http://[not-an-ip/",
        "/ftp": "ftp://a.test/file",
    }
    pages = {"/": Page(_html("home", list(canon)))}
    for path, href in canon.items():
        pages[path] = Page(_html(path, [], head=f'<link rel="canonical" href="{href}">'))
    with TestWeb({"a.test": Site(pages=pages)}) as web:
        recs = _crawl(web, tmp_path / "out")
        base = web.url("a.test", "/")
    assert recs["a.test/rel"]["canonical"] == base + "target"
    assert recs["a.test/abs"]["canonical"] == base + "there"
    for path in ("/file", "/js", "/mail", "/garbage", "/ftp"):
        assert recs[f"a.test{path}"]["canonical"] is None, path


def test_a_same_host_redirect_target_that_is_also_linked_is_fetched_once(tmp_path: Path) -> None:
    """Item 5: `/a` → 301 → `/b`; `/b` links itself and `/c` links `/b`: the server sees `/b` once."""
    pages = {
        "/": Page(_html("home", ["/a", "/c"])),
        "/a": redirect("/b", 301),
        "/b": Page(_html("b", ["/b", "/d"])),
        "/c": Page(_html("c", ["/b"])),
        "/d": Page(_html("d", ["/b"])),
    }
    with TestWeb({"a.test": Site(pages=pages)}) as web:
        recs = _crawl(web, tmp_path / "out")
        paths = [r.path for r in web.log]
    assert paths.count("/b") == 1, paths
    assert paths.count("/a") == 1
    assert page_key(recs["a.test/a"]["final_url"]) == "a.test/b"
    assert {"a.test/c", "a.test/d"} <= set(recs)
