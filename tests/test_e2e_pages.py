"""End to end: page-level behaviour in the output (near-duplicates, nofollow, non-HTML)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import page_key, read_records, run_crawler
from tests.testweb import Page, Site, TestWeb

ARTICLE = " ".join(
    f"Paragraph {i}: the harbor lantern signal drifted past copper meadows while the falcon circled "
    f"the quartz ridge and the orbit of velvet thistles kept its slow rhythm number {i}."
    for i in range(12)
)
OTHER = " ".join(
    f"Section {i}: compilers translate source programs into machine code, allocating registers, "
    f"scheduling instructions and folding constants before emitting object files {i}."
    for i in range(12)
)


def _html(title: str, text: str, links: list[str], head: str = "") -> str:
    anchors = "".join(f'<a href="{h}">{h}</a> ' for h in links)
    return f"<html><head><title>{title}</title>{head}</head><body><p>{text}</p>{anchors}</body></html>"


def test_near_duplicate_flagged_and_followed_and_unrelated_page_not_flagged(tmp_path: Path) -> None:
    pages = {
        "/": Page(_html("home", OTHER[:300], ["/a", "/c", "/nofollow", "/data.bin", "/headers"])),
        "/a": Page(_html("a", f"Generated at 2026-11-28 02:13:37. {ARTICLE}", ["/b"])),
        "/b": Page(_html("b", f"Generated at 2026-11-28 03:14:15. {ARTICLE}", ["/only-from-b"])),
        "/only-from-b": Page(_html("hidden", "reached through a near-duplicate", [])),
        "/c": Page(_html("c", OTHER, [])),
        "/nofollow": Page(_html("nf", "x", ["/nf-target"], '<meta name="robots" content="noindex, nofollow">')),
        "/nf-target": Page(_html("t", "never fetched", [])),
        "/headers": Page(_html("h", "y", ["/hdr-target"]), headers={"X-Robots-Tag": "nofollow"}),
        "/hdr-target": Page(_html("t", "never fetched", [])),
        "/data.bin": Page(b"\x00\x01binary<a href='/bin-target'>", headers={"Content-Type": "text/html"}),
    }
    with TestWeb({"a.test": Site(pages=pages)}) as web:
        out = tmp_path / "out"
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
        )
        assert proc.returncode == 0, proc.stderr
        fetched = {r.path for r in web.log}
    recs = {page_key(r["url"]): r for r in read_records(out / "pages.jsonl")}
    assert recs["a.test/a"]["near_duplicate_of"] is None
    assert page_key(recs["a.test/b"]["near_duplicate_of"]) == "a.test/a"
    # Near-duplicate detection is for content: the copy is flagged, but its links are followed (default).
    assert recs["a.test/b"]["links_followed"] is True
    assert "a.test/only-from-b" in recs
    assert recs["a.test/c"]["near_duplicate_of"] is None
    assert recs["a.test/a"]["simhash"] != recs["a.test/c"]["simhash"]
    assert recs["a.test/nofollow"]["meta_robots"] == "noindex, nofollow"
    assert recs["a.test/headers"]["meta_robots"] == "nofollow"
    assert recs["a.test/data.bin"]["title"] is None and recs["a.test/data.bin"]["links"] == []
    assert not fetched & {"/nf-target", "/hdr-target", "/bin-target"}
