"""The sitemap parser (`crawler.extract.sitemap`): every form, gzip, namespaces, limits, and hostile XML."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest

from crawler.core.errors import ErrorType
from crawler.extract.sitemap import MAX_URLS, SitemapFile, parse_lastmod, parse_sitemap

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def urlset(*entries: str, ns: str = NS, extra: str = "") -> bytes:
    body = "".join(f"<url><loc>{loc}</loc></url>" for loc in entries)
    xmlns = f' xmlns="{ns}"' if ns else ""
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset{xmlns}{extra}>{body}</urlset>'.encode()


def locs(f: SitemapFile) -> list[str]:
    return [e.loc for e in f.urls]


# ------------------------------------------------------------------ the forms


def test_urlset_with_lastmod_and_extensions() -> None:
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
    <urlset xmlns="{NS}" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"
            xmlns:xhtml="http://www.w3.org/1999/xhtml">
      <url>
        <loc>  http://a.test/one  </loc>
        <lastmod>2024-05-01</lastmod>
        <changefreq>daily</changefreq><priority>0.8</priority>
        <image:image><image:loc>http://img.test/one.png</image:loc></image:image>
        <xhtml:link rel="alternate" hreflang="de" href="http://a.test/de/one"/>
      </url>
      <url><loc>http://a.test/two?a=1&amp;b=2</loc><lastmod>2024-05-01T10:00:00+02:00</lastmod></url>
      <url><image:loc>http://img.test/only-an-image.png</image:loc></url>
      <url><loc></loc></url>
    </urlset>""".encode()
    f = parse_sitemap(body)
    assert f.kind == "urlset" and f.error is None and f.sitemaps == []
    assert locs(f) == ["http://a.test/one", "http://a.test/two?a=1&b=2"]
    assert [e.lastmod for e in f.urls] == [ts("2024-05-01"), ts("2024-05-01T08:00:00")]


def test_sitemap_index() -> None:
    body = f"""<sitemapindex xmlns="{NS}">
      <sitemap><loc>http://a.test/s1.xml.gz</loc><lastmod>2023</lastmod></sitemap>
      <sitemap><loc>http://a.test/s2.xml</loc></sitemap>
    </sitemapindex>""".encode()
    f = parse_sitemap(body)
    assert f.kind == "index" and f.error is None and f.urls == []
    assert [(e.loc, e.lastmod) for e in f.sitemaps] == [
        ("http://a.test/s1.xml.gz", ts("2023-01-01")),
        ("http://a.test/s2.xml", None),
    ]


def test_plain_text_sitemap() -> None:
    body = b"\xef\xbb\xbfhttp://a.test/1\r\n\r\n  https://a.test/2  \nnot a url\nftp://a.test/3\nHTTP://a.test/4"
    f = parse_sitemap(body)
    assert f.kind == "text" and f.error is None
    assert locs(f) == ["http://a.test/1", "https://a.test/2", "HTTP://a.test/4"]


def test_rss_and_atom_feeds() -> None:
    rss = b"""<rss version="2.0"><channel><title>t</title><link>http://a.test/</link>
      <item><title>x</title><link>http://a.test/p1</link><pubDate>Wed, 02 Oct 2002 13:00:00 GMT</pubDate></item>
      <item><link>http://a.test/p2</link></item>
    </channel></rss>"""
    f = parse_sitemap(rss)
    assert (f.kind, locs(f)) == ("rss", ["http://a.test/p1", "http://a.test/p2"])
    assert f.urls[0].lastmod == ts("2002-10-02T13:00:00")
    atom = b"""<feed xmlns="http://www.w3.org/2005/Atom"><link href="http://a.test/"/>
      <entry><link rel="edit" href="http://a.test/edit"/><link href="http://a.test/a1"/>
        <updated>2003-12-13T18:30:02Z</updated></entry>
    </feed>"""
    f = parse_sitemap(atom)
    assert (f.kind, locs(f)) == ("atom", ["http://a.test/a1"])
    assert f.urls[0].lastmod == ts("2003-12-13T18:30:02")


def test_not_a_sitemap() -> None:
    for body in (
        b"<html><body><a href='/x'>x</a></body></html>",
        b"<!DOCTYPE html><html><body>soft 404</body></html>",
        b"<feed><entry><link href='http://a.test/x'/></entry></feed>",  # a feed without the Atom namespace
        b"",
        b"   \n\n",
        b"just some words\nand more",
    ):
        f = parse_sitemap(body)
        assert f.kind is None and f.entries == 0, body
        assert f.error is not None and f.error.type is ErrorType.SITEMAP_ERROR, body


# ------------------------------------------------------------------ gzip


def test_gzip_is_recognized_by_its_magic_bytes() -> None:
    plain = urlset("http://a.test/1", "http://a.test/2")
    assert locs(parse_sitemap(gzip.compress(plain))) == ["http://a.test/1", "http://a.test/2"]
    text = gzip.compress(b"http://a.test/t1\nhttp://a.test/t2\n")
    assert (parse_sitemap(text).kind, locs(parse_sitemap(text))) == ("text", ["http://a.test/t1", "http://a.test/t2"])
    # Two gzip members (`cat a.gz b.gz`) are one file.
    half = len(plain) // 2
    assert locs(parse_sitemap(gzip.compress(plain[:half]) + gzip.compress(plain[half:]))) == locs(parse_sitemap(plain))


def test_cut_or_corrupt_gzip_is_an_error_keeping_what_was_read() -> None:
    plain = urlset(*(f"http://a.test/{i}" for i in range(2000)))
    packed = zlib.compressobj(6, zlib.DEFLATED, 31)
    data = packed.compress(plain) + packed.flush()
    cut = parse_sitemap(data[: len(data) // 2])
    assert cut.error is not None and cut.error.type is ErrorType.SITEMAP_ERROR
    assert 0 < len(cut.urls) < 2000
    corrupt = parse_sitemap(b"\x1f\x8b" + b"\x00" * 50)
    assert corrupt.kind is None and corrupt.error is not None and corrupt.error.type is ErrorType.SITEMAP_ERROR


def test_a_gzip_bomb_stops_at_the_byte_cap_in_bounded_memory_and_time() -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(urlset("http://a.test/first")[: -len(b"</urlset>")])]
    block = b" " * 2**20
    parts += [comp.compress(block) for _ in range(200)]  # 200 MiB of whitespace inside <urlset>
    parts.append(comp.flush())
    bomb = b"".join(parts)
    assert len(bomb) < 300_000
    tracemalloc.start()
    started = time.monotonic()
    try:
        f = parse_sitemap(bomb, max_bytes=50 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f.error is not None and f.error.type is ErrorType.TOO_LARGE
    assert locs(f) == ["http://a.test/first"]  # what came before the cap is kept
    assert peak < 8 * 2**20, peak
    assert time.monotonic() - started < 10


def test_a_plain_body_over_the_byte_cap_is_too_large() -> None:
    f = parse_sitemap(urlset(*(f"http://a.test/{i}" for i in range(100))), max_bytes=1024)
    assert f.error is not None and f.error.type is ErrorType.TOO_LARGE
    assert 0 < len(f.urls) < 100


# ------------------------------------------------------------------ namespaces


def test_namespaces_any_prefix_none_or_the_old_google_one() -> None:
    prefixed = f'<sm:urlset xmlns:sm="{NS}"><sm:url><sm:loc>http://a.test/p</sm:loc></sm:url></sm:urlset>'
    assert locs(parse_sitemap(prefixed.encode())) == ["http://a.test/p"]
    assert locs(parse_sitemap(urlset("http://a.test/none", ns=""))) == ["http://a.test/none"]
    google = urlset("http://a.test/g", ns="http://www.google.com/schemas/sitemap/0.84")
    assert locs(parse_sitemap(google)) == ["http://a.test/g"]


def test_fields_in_another_namespace_are_not_entries() -> None:
    body = f"""<urlset xmlns="{NS}" xmlns:x="urn:other">
      <url><x:loc>http://a.test/wrong-ns</x:loc><loc>http://a.test/right</loc></url>
      <x:url><loc>http://a.test/in-foreign-entry</loc></x:url>
      <url><wrapper><loc>http://a.test/too-deep</loc></wrapper></url>
    </urlset>""".encode()
    assert locs(parse_sitemap(body)) == ["http://a.test/right"]


# ------------------------------------------------------------------ limits and malformed input


def test_more_than_50000_urls_keeps_the_first_50000_with_an_error() -> None:
    assert MAX_URLS == 50_000
    f = parse_sitemap(urlset(*(f"http://a.test/{i}" for i in range(MAX_URLS + 10))))
    assert len(f.urls) == MAX_URLS and f.urls[-1].loc == f"http://a.test/{MAX_URLS - 1}"
    assert f.error is not None and f.error.type is ErrorType.SITEMAP_ERROR and "50000" in f.error.message
    text = parse_sitemap("\n".join(f"http://a.test/{i}" for i in range(12)).encode(), max_urls=10)
    assert len(text.urls) == 10 and text.error is not None and text.error.type is ErrorType.SITEMAP_ERROR
    index = f'<sitemapindex xmlns="{NS}">' + "<sitemap><loc>http://a.test/s</loc></sitemap>" * 4 + "</sitemapindex>"
    small = parse_sitemap(index.encode(), max_urls=3)
    assert len(small.sitemaps) == 3 and small.error is not None


def test_malformed_xml_keeps_the_entries_before_the_fault() -> None:
    f = parse_sitemap(b'<urlset xmlns="' + NS.encode() + b'"><url><loc>http://a.test/1</loc></url><url><loc>http')
    assert locs(f) == ["http://a.test/1"]
    assert f.error is not None and f.error.type is ErrorType.SITEMAP_ERROR and "malformed" in f.error.message
    mismatched = parse_sitemap(b"<urlset><url><loc>http://a.test/1</loc></url><url></urlset>")
    assert mismatched.error is not None and locs(mismatched) == ["http://a.test/1"]


def test_overlong_values_and_deep_nesting_cost_nothing() -> None:
    long_loc = "http://a.test/" + "x" * 100_000
    f = parse_sitemap(urlset(long_loc, "http://a.test/ok"))
    assert locs(f) == ["http://a.test/ok"]
    deep = b"<urlset>" + b"<a>" * 200_000 + b"</a>" * 200_000 + b"<url><loc>http://a.test/d</loc></url></urlset>"
    assert locs(parse_sitemap(deep)) == ["http://a.test/d"]
    long_line = b"http://a.test/" + b"y" * 100_000 + b"\nhttp://a.test/fine\n"
    assert locs(parse_sitemap(long_line)) == ["http://a.test/fine"]


def test_declared_encodings_are_honoured() -> None:
    latin = (
        b'<?xml version="1.0" encoding="windows-1252"?><urlset><url><loc>http://a.test/\x93q\x94</loc></url></urlset>'
    )
    assert locs(parse_sitemap(latin)) == ["http://a.test/\u201cq\u201d"]
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><urlset><url><loc>http://a.test/u</loc></url></urlset>'
    assert locs(parse_sitemap(utf16.encode("utf-16"))) == ["http://a.test/u"]


# ------------------------------------------------------------------ hostile XML


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<urlset><url><loc>http://a.test/&lol9;</loc></url></urlset>"""


def test_billion_laughs_is_refused_without_expanding_anything() -> None:
    tracemalloc.start()
    try:
        f = parse_sitemap(BILLION_LAUGHS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f.entries == 0 and f.error is not None and f.error.type is ErrorType.SITEMAP_ERROR
    assert "document type declaration" in f.error.message
    assert peak < 2**20, peak
    # Gzipped, it is refused the same way.
    assert parse_sitemap(gzip.compress(BILLION_LAUGHS)).error.message == f.error.message  # type: ignore[union-attr]


def test_undeclared_entities_are_a_parse_error() -> None:
    f = parse_sitemap(b"<urlset><url><loc>http://a.test/&secret;</loc></url></urlset>")
    assert f.entries == 0 and f.error is not None and f.error.type is ErrorType.SITEMAP_ERROR


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Counting.hits.append(self.path)
        body = b'<!ENTITY secret "leaked">' if self.path.endswith(".dtd") else b"leaked"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback() -> Iterator[str]:
    """A loopback HTTP server that records every request (an XXE would show up here)."""
    _Counting.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_external_entities_and_dtds_are_never_fetched_or_read(loopback: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    head = '<?xml version="1.0"?>'
    doc = "<urlset><url><loc>&x;</loc></url></urlset>"
    hostile = [
        f'{head}<!DOCTYPE u [<!ENTITY x SYSTEM "file://{secret}">]>{doc}',
        f'{head}<!DOCTYPE u [<!ENTITY x SYSTEM "{loopback}/x">]>{doc}',
        f'{head}<!DOCTYPE urlset SYSTEM "{loopback}/evil.dtd">{doc.replace("&x;", "&secret;")}',
        f'{head}<!DOCTYPE u [<!ENTITY % p SYSTEM "{loopback}/p.dtd"> %p;]><urlset/>',
    ]
    for body in hostile:
        f = parse_sitemap(body.encode())
        assert f.entries == 0 and f.error is not None and f.error.type is ErrorType.SITEMAP_ERROR, body
        assert "TOP-SECRET" not in repr(f) and "leaked" not in repr(f)
    time.sleep(0.2)
    assert _Counting.hits == []


# ------------------------------------------------------------------ lastmod


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2024", "2024-01-01T00:00:00"),
        ("2024-05", "2024-05-01T00:00:00"),
        ("2024-05-07", "2024-05-07T00:00:00"),
        ("2024-05-07T12:30+02:00", "2024-05-07T10:30:00"),
        ("2024-05-07T12:30:15Z", "2024-05-07T12:30:15"),
        ("2024-05-07T12:30:15.5z", "2024-05-07T12:30:15.500000"),
        (" 2024-05-07 ", "2024-05-07T00:00:00"),
    ],
)
def test_lastmod_w3c_datetimes(text: str, iso: str) -> None:
    assert parse_lastmod(text) == ts(iso)


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2024-13", "2024-02-30", "99999-01-01", "2024-05-07T25:00", "x" * 100]
)
def test_lastmod_garbage_is_none(text: str) -> None:
    assert parse_lastmod(text) is None
