"""Finding one URL's records, and the pages pointing to it, in record logs (`crawler.output.lookup`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from crawler.output.lookup import find_url

U = "http://a.test/y"


def _rec(
    url: str, *, links: Sequence[str] = (), final: str | None = None, hops: Sequence[Any] = (), at: str = "1"
) -> bytes:
    rec = {"url": url, "final_url": final or url, "depth": 1, "links": list(links), "redirects": list(hops)}
    rec["fetched_at"] = at
    return orjson.dumps(rec) + b"\n"


def test_own_records_links_and_redirects(tmp_path: Path) -> None:
    log = tmp_path / "pages.jsonl"
    hop = {"url": U, "status": 301, "location": "http://a.test/z"}  # `{"url":"<U>",` inside another record
    log.write_bytes(
        _rec("http://a.test/", links=["http://a.test/x", U], at="1")
        + _rec("http://a.test/r", final=U, hops=[{"url": "http://a.test/r", "status": 301, "location": U}], at="2")
        + _rec(U, links=[U], at="3")
        + _rec("http://a.test/w", final="http://a.test/z", hops=[hop], at="4")
        + _rec(U, at="5")
        + b'{"url":"http://a.test/y","torn'  # a line still being written
    )
    found = find_url(U, [log, tmp_path / "missing.jsonl"])
    assert [(ref.record["fetched_at"], ref.offset) for ref in found.records] == [
        ("3", log.read_bytes().index(_rec(U, links=[U], at="3"))),
        ("5", log.read_bytes().index(_rec(U, at="5"))),
    ]
    assert found.latest is not None and found.latest.record["fetched_at"] == "5"
    assert found.linked_from is not None and found.linked_from.record["url"] == "http://a.test/"
    assert found.redirected_from is not None and found.redirected_from.record["url"] == "http://a.test/r"
    assert found.bytes_scanned == log.read_bytes().rfind(b"\n") + 1


def test_records_after_the_linking_page_are_found_in_the_second_phase(tmp_path: Path) -> None:
    """Once a linking page is known only own records are looked for; redirects via `final_url` still are."""
    lines = [_rec("http://a.test/", links=[U])] + [_rec(f"http://a.test/{i}", links=[U]) for i in range(50)]
    lines += [_rec(U, at="7"), _rec("http://a.test/r", final=U), _rec("http://a.test/q", links=[U])]
    log = tmp_path / "pages.jsonl"
    log.write_bytes(b"".join(lines))
    found = find_url(U, [log])
    assert [ref.record["fetched_at"] for ref in found.records] == ["7"]
    assert found.redirected_from is not None and found.redirected_from.record["url"] == "http://a.test/r"


def test_several_files_empty_ones_and_a_url_never_there(tmp_path: Path) -> None:
    one, two, empty = tmp_path / "pages-w1.jsonl", tmp_path / "pages-w2.jsonl", tmp_path / "pages-w3.jsonl"
    one.write_bytes(_rec(U, at="2024-01-01T00:00:00.000Z"))
    two.write_bytes(_rec(U, at="2024-01-02T00:00:00.000Z"))
    empty.write_bytes(b"")
    found = find_url(U, [one, two, empty])
    assert found.latest is not None and found.latest.path == two
    nothing = find_url("http://a.test/nope", [one, two, empty])
    assert (nothing.records, nothing.linked_from, nothing.redirected_from) == ([], None, None)
    # A URL that is a prefix of another is not confused with it: the JSON string is matched whole.
    assert find_url("http://a.test/", [one]).records == []


def test_scan_speed(tmp_path: Path) -> None:
    """A 50 MB log is searched in well under a second (a full scan: the URL is not there)."""
    line = _rec("http://a.test/page", links=[f"http://a.test/{i}" for i in range(40)])
    log = tmp_path / "pages.jsonl"
    with open(log, "wb") as fh:
        for _ in range(50_000_000 // len(line)):
            fh.write(line)
    started = time.perf_counter()
    found = find_url("http://a.test/nowhere", [log])
    took = time.perf_counter() - started
    assert found.records == [] and found.bytes_scanned > 49_000_000
    assert took < 2.0, f"{took:.2f}s for {found.bytes_scanned / 1e6:.0f} MB"
