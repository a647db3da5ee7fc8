"""decode_html, looks_like_html, extract and the regex fallback."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.extract.charset import decode_html
from crawler.extract.html import MAX_FIELD_CHARS, extract, scan_links_fallback
from crawler.extract.sniff import looks_like_html

# ---------------------------------------------------------------------------------------------
# decode_html


def test_bom_wins_over_header_and_meta() -> None:
    body = b"\xef\xbb\xbf<meta charset=iso-8859-1>caf\xc3\xa9"
    assert decode_html(body, "text/html; charset=koi8-r") == "<meta charset=iso-8859-1>café"
    utf16 = "\ufeff<p>héllo</p>".encode("utf-16-le")
    assert decode_html(utf16, "text/html; charset=utf-8") == "<p>héllo</p>"
    assert decode_html("\ufeffĦ".encode("utf-16-be"), None) == "Ħ"


def test_header_charset_then_meta_then_utf8() -> None:
    cyr = "привет".encode("koi8-r")
    assert decode_html(cyr, 'text/html; charset="KOI8-R"') == "привет"
    meta = b'<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
    assert decode_html(meta + "мир".encode("cp1251"), "text/html").endswith("мир")
    assert decode_html(b"<meta charset='shift_jis'>" + "日本".encode("shift_jis"), None).endswith("日本")
    assert decode_html("naïve".encode(), None) == "naïve"


def test_meta_beyond_2k_is_ignored() -> None:
    body = b"<!--" + b"x" * 2100 + b"--><meta charset=koi8-r>" + "п".encode("koi8-r")
    assert decode_html(body, None).endswith("\ufffd")  # decoded as UTF-8, invalid byte replaced


def test_latin1_means_windows_1252() -> None:
    assert decode_html(b"\x93quoted\x94 caf\xe9", "text/html; charset=ISO-8859-1") == "“quoted” café"


def test_mislabelled_utf8_is_decoded_as_utf8() -> None:
    body = "café – naïve".encode()
    assert decode_html(body, "text/html; charset=iso-8859-1") == "café – naïve"
    assert decode_html(b"<meta charset=windows-1252>" + body, None).endswith("café – naïve")


def test_unknown_or_unsafe_charsets_fall_back_to_utf8() -> None:
    body = "ok é".encode()
    assert decode_html(body, "text/html; charset=x-bogus-42") == "ok é"
    assert decode_html(b"+AGEAYgBj-", "text/html; charset=utf-7") == "+AGEAYgBj-"
    assert decode_html(b"\\x41", "text/html; charset=unicode_escape") == "\\x41"
    assert decode_html(b"abc", "text/html; charset=base64") == "abc"


def test_meta_cannot_declare_utf16() -> None:
    assert decode_html(b"<meta charset=utf-16>hi", None) == "<meta charset=utf-16>hi"


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=300),
    st.sampled_from([None, "text/html", "text/html; charset=", "text/html; charset=utf-16", "x;charset=gbk"]),
)
def test_decode_never_raises(body: bytes, ctype: str | None) -> None:
    assert isinstance(decode_html(body, ctype), str)
    assert isinstance(decode_html(b"<meta charset=big5>" + body, ctype), str)


# ---------------------------------------------------------------------------------------------
# looks_like_html


@pytest.mark.parametrize(
    ("body", "ctype", "expected"),
    [
        (b"<p>hi", "text/html; charset=utf-8", True),
        (b"anything textual", "application/xhtml+xml", True),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "text/html", False),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "text/html", False),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "text/html", False),
        (b"<html>\x00\x00\x00\x01\x02", "text/html", False),
        (b"  \n<!DOCTYPE html><html>", None, True),
        (b"<HTML lang=en>", "text/plain", True),
        (b"<body>", "application/octet-stream", True),
        (b"<!-- c --><p>", "", True),
        (b"<a href=x>", None, True),
        (b"<abbr>", None, False),  # "<a" must be followed by space or ">"
        (b"hello world", "text/plain", False),
        (b'{"json": 1}', None, False),
        (b"<html>", "application/json", False),
        (b"<html>", "image/png", False),
        (b"\xef\xbb\xbf<html>", None, True),
        ("\ufeff<html><body>".encode("utf-16-le"), None, True),
        ("\ufeff<html><body>".encode("utf-16-le"), "text/html", True),
        (b"<html>" + b"\x01\x02\x03\x04" * 10, None, False),
    ],
)
def test_looks_like_html(body: bytes, ctype: str | None, expected: bool) -> None:
    assert looks_like_html(body, ctype) is expected


def test_stray_control_byte_in_html_is_tolerated() -> None:
    assert looks_like_html(b"<html><body>" + b"text " * 60 + b"\x0b more", "text/html")


# ---------------------------------------------------------------------------------------------
# extract

PAGE = """<!doctype html><html><head>
<title>  Hello
   World </title>
<meta name="Description" content="  A   page  about things ">
<meta name="ROBOTS" content="NoIndex">
<meta name="PoliteCrawler" content="nofollow, noarchive">
<meta name="othercrawler" content="none">
<link rel="stylesheet" href="/s.css"><link rel="Canonical" href=" /canon ">
<base href="http://x.test/dir/">
<script>var hidden = "<a href='/in-script'>";</script><style>p { color: red }</style>
</head><body>
<p>Hi <a href="/a">A</a> <a href=" /a ">again</a> <a href="#top">top</a>
<a href="java&#9;script:alert(1)">js</a> <a href="JavaScript:void(0)">js2</a>
<a href="/nf" rel="nofollow ugc">nf</a> <a href="/sponsored" rel="sponsored">sp</a>
<map><area href="/area" alt=""></map> <a href="">empty</a> <a>no href</a>
<a href="/b?x=1&amp;y=2">b</a> <a href="/a#frag">frag</a>
<noscript><a href="/ns">ns</a></noscript><template><a href="/tpl">t</a></template>
</p><div>Visible&nbsp;text<span>here</span></div></body></html>"""


def test_extract_fields() -> None:
    page = extract(PAGE, "politecrawler")
    assert page.title == "Hello World"
    assert page.description == "A page about things"
    assert page.canonical == "/canon"
    assert page.base_href == "http://x.test/dir/"
    assert page.meta_robots == "noindex, nofollow, noarchive"
    assert page.noindex and page.nofollow
    assert page.links == ["/a", "/sponsored", "/area", "/b?x=1&y=2", "/a#frag", "/ns"]
    assert page.nofollow_links == 1
    assert "hidden" not in page.text and "color" not in page.text and "/tpl" not in page.text
    assert "Hi A again" in page.text
    assert page.text.endswith("Visible text here")
    assert "  " not in page.text and "\n" not in page.text


def test_robots_token_only_applies_to_our_crawler() -> None:
    page = extract(PAGE, "")
    assert page.meta_robots == "noindex"
    assert page.noindex and not page.nofollow
    none = extract('<meta name="politecrawler" content="NONE">', "PoliteCrawler")
    assert none.noindex and none.nofollow and none.meta_robots == "none"


def test_extract_defaults_on_minimal_documents() -> None:
    page = extract("")
    assert page.title is None and page.description is None and page.canonical is None
    assert page.meta_robots is None and not page.noindex and not page.nofollow
    assert page.links == [] and page.nofollow_links == 0 and page.text == ""
    assert extract("just text").text == "just text"


def test_title_and_description_are_capped() -> None:
    page = extract(f"<title>{'t' * 5000}</title><meta name=description content='{'d ' * 5000}'>")
    assert page.title is not None and len(page.title) == MAX_FIELD_CHARS
    assert page.description is not None and len(page.description) == MAX_FIELD_CHARS


def _timed_extract(html: str) -> tuple[float, object]:
    t0 = time.perf_counter()
    page = extract(html)
    return time.perf_counter() - t0, page


@pytest.mark.parametrize(
    "html",
    [
        "<div>" * 10_000 + "deep <a href='/deep'>x</a>" + "</div>" * 10_000,
        "<div>" * 100_000 + "deepest" + "</div>" * 100_000,
        "<div></span>" * 50_000 + "<a href='/end'>e</a>",
        "<div>" * 3000 + "<p>x" * 50_000,
        "<a href=/x><b><i><table><tr><td>" * 5000,
        "<font size=2>unclosed" * 30_000,
        "\x00" * 1000 + "<p>a\x00b<a href='/n\x00'>x</a>" + "<p" * 1000,
        "<<<>>><a href=<a href=>/>" * 5000 + "</" * 1000,
    ],
    ids=["nested10k", "nested100k", "bogus-end-tags", "deep-then-many", "unclosed", "font", "nul", "garbage"],
)
def test_hostile_html_does_not_crash_or_stall(html: str) -> None:
    elapsed, page = _timed_extract(html)
    assert elapsed < 3.0  # unguarded, nested100k alone takes ~18 s in lexbor
    assert isinstance(page.text, str)


def test_deep_nesting_keeps_content() -> None:
    page = extract("<div>" * 50_000 + "deep <a href='/deep'>x</a>" + "</div>" * 50_000 + "<p>after</p>")
    assert page.links == ["/deep"]
    assert page.text == "deep x after"


def test_nul_bytes_are_survived() -> None:
    page = extract("<title>a\x00b</title><a href='/n'>x\x00y</a>")
    assert page.links == ["/n"]
    assert "x" in page.text and "y" in page.text


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/=\"' adivhrefptbl\x00&#;x")), max_size=300))
def test_extract_never_crashes_on_tag_soup(html: str) -> None:
    page = extract(html, "politecrawler")
    assert all(link and not link.startswith("#") for link in page.links)


# ---------------------------------------------------------------------------------------------
# scan_links_fallback


def test_fallback_scan() -> None:
    html = (
        "<a href=\"/a\">A</a> <A HREF='/b?x=1&amp;y=2'>b</A> <a class=x href=/c>c</a>"
        '<a rel="nofollow" href="/nf">n</a><link href="/css"><area href="/area">'
        '<a href="javascript:x">j</a><a href="#t">t</a><a href=" /a ">dup</a><a name=x>'
    )
    assert scan_links_fallback(html) == ["/a", "/b?x=1&y=2", "/c", "/area"]


def test_fallback_finds_the_parser_links_plus_raw_text_ones() -> None:
    fallback = scan_links_fallback(PAGE)
    parsed = extract(PAGE).links
    # A regex cannot tell markup from script strings or template content.
    assert [link for link in fallback if link not in ("/in-script", "/tpl")] == parsed
