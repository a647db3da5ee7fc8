"""Fuzzing extraction and URL normalization: random bytes and random URLs never raise unexpectedly.

Documented failures are `CrawlError` only: `normalize` raises `invalid_url`, `extract` raises
`parse_error`; `decode_html`, `looks_like_html`, `scan_links_fallback`, `host_key` and `Scope.reason`
raise nothing. Accepted URLs must also be canonical (normalizing again changes nothing).
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crawler.core.errors import CrawlError, ErrorType
from crawler.core.urlnorm import DEFAULT_STRIP_PARAMS, ParamStripper, host_key, normalize
from crawler.extract.charset import decode_html
from crawler.extract.html import extract, scan_links_fallback
from crawler.extract.sniff import looks_like_html
from crawler.ingest.scope import REASONS, Scope

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "text/html",
            "text/html; charset=utf-8",
            "text/html; charset=utf-16",
            "text/html; charset=utf-7",
            "text/html; charset=unicode_escape",
            "text/html; charset=rot13",
            "text/html; charset=",
            'text/html; charset="shift_jis"',
            "text/plain",
            "application/octet-stream",
            "application/pdf",
        ]
    ),
    st.text(max_size=60),
)

# Bytes that look a bit like HTML often enough to reach the parser's interesting paths.
HTMLISH = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from(
            [
                b"<!doctype html>",
                b"<html>",
                b"<head><meta charset=utf-16>",
                b'<meta charset="x-unknown">',
                b"<title>",
                b"</title>",
                b"<a href='",
                b'<a href="',
                b"'>",
                b'">',
                b"<base href=",
                b"<div>" * 50,
                b"</div>",
                b"<table><tr><td>",
                b"<script>",
                b"</script>",
                b"<!--",
                b"-->",
                b"\xef\xbb\xbf",
                b"\xff\xfe",
                b"\x00",
                b"&amp;&#0;&#x110000;",
                b"<area href=x rel=nofollow>",
                b'<link rel=canonical href="',
                b'<meta name=robots content="noindex,nofollow">',
            ]
        ),
    ),
    max_size=40,
).map(b"".join)


@FUZZ
@given(body=st.one_of(st.binary(max_size=2000), HTMLISH), content_type=CONTENT_TYPES)
@example(body=b"<title>x</title>", content_type="text/html; charset=utf-16")
@example(body=b"\xff\xfe<\x00a\x00", content_type=None)
def test_extraction_never_raises_unexpectedly(body: bytes, content_type: str | None) -> None:
    assert isinstance(looks_like_html(body, content_type), bool)
    text = decode_html(body, content_type)
    assert isinstance(text, str)
    try:
        page = extract(text, "politecrawler")
    except CrawlError as exc:
        assert exc.type is ErrorType.PARSE_ERROR
    else:
        assert all(isinstance(link, str) and link for link in page.links)
        assert page.title is None or len(page.title) <= 1000
    links = scan_links_fallback(text)
    assert all(isinstance(link, str) for link in links)


@FUZZ
@given(text=st.text(max_size=3000))
def test_extract_and_fallback_scan_take_any_text(text: str) -> None:
    try:
        extract(text)
    except CrawlError as exc:
        assert exc.type is ErrorType.PARSE_ERROR
    assert isinstance(scan_links_fallback(text), list)


HOST_CHARS = st.sampled_from(
    [*"abcxyz019.-_%:[]@", "0x7f", "127", "ü", "ß", "ﬀ", "xn--", "%41", "%zz", "\u200b", "\x00", " ", "\t", "。"]
)
URLS = st.one_of(
    st.text(max_size=120),
    st.builds(
        lambda scheme, user, host, port, path, query: f"{scheme}{user}{host}{port}{path}{query}",
        st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "javascript:", "//", "http:", "", "file:///"]),
        st.sampled_from(["", "user:pw@", "a@b@", "@", "%40@"]),
        st.lists(HOST_CHARS, max_size=12).map("".join),
        st.sampled_from(["", ":80", ":443", ":0", ":65535", ":65536", ":99999999999", ":-1", ":8a", ":"]),
        st.text(st.characters(codec="utf-8"), max_size=40).map(lambda s: "/" + s),
        st.sampled_from(["", "?", "?a=1&sessionid=2", "?utm_source=x", "?%", "?a=%zz", "#frag", "?q=\x7f"]),
    ),
)
BASES = st.sampled_from(
    [None, "http://a.test/", "https://b.test:8443/dir/page?x=1", "http://[::1]:81/a/b/", "http://127.0.0.1/"]
)
SCOPE = Scope(["test", "127.0.0.1"], max_depth=5, max_url_length=300, max_repeated_segments=2, max_path_segments=10)
STRIP = ParamStripper(DEFAULT_STRIP_PARAMS)


@FUZZ
@given(href=URLS, base=BASES, depth=st.integers(0, 8))
@example(href="http://2130706433/", base=None, depth=0)
@example(href="http://0x7f.1:8080/a/../b", base=None, depth=0)
@example(href="http://[::ffff:127.0.0.1]/", base=None, depth=0)
@example(href="\\\\evil.test\\x", base="http://a.test/", depth=0)
def test_normalization_never_raises_unexpectedly(href: str, base: str | None, depth: int) -> None:
    try:
        url = normalize(href, base, STRIP)
    except CrawlError as exc:
        assert exc.type is ErrorType.INVALID_URL
        return
    assert url.startswith(("http://", "https://"))
    assert "@" not in url.split("/")[2], url  # credentials never survive
    assert normalize(url, None, STRIP) == url  # canonical: a second pass changes nothing
    host = host_key(url)
    assert host and host == host.lower()
    assert SCOPE.reason(url, host, depth) in (None, *REASONS)
