"""URL normalization: RFC 3986 resolution and §6 rules, hosts, schemes, parameter stripping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.core.errors import CrawlError, ErrorType
from crawler.core.urlnorm import DEFAULT_STRIP_PARAMS, ParamStripper, host_key, normalize, normalize_host, origin

RFC_BASE = "http://a/b/c/d;p?q"

# RFC 3986 §5.4.1 and §5.4.2, with our normalization applied to the expected result
# (fragment dropped, empty path -> "/"); `http:g` uses the §5.2.2 compatibility reading.
RFC_EXAMPLES = [
    ("g", "http://a/b/c/g"),
    ("./g", "http://a/b/c/g"),
    ("g/", "http://a/b/c/g/"),
    ("/g", "http://a/g"),
    ("//g", "http://g/"),
    ("?y", "http://a/b/c/d;p?y"),
    ("g?y", "http://a/b/c/g?y"),
    ("#s", "http://a/b/c/d;p?q"),
    ("g#s", "http://a/b/c/g"),
    ("g?y#s", "http://a/b/c/g?y"),
    (";x", "http://a/b/c/;x"),
    ("g;x", "http://a/b/c/g;x"),
    ("g;x?y#s", "http://a/b/c/g;x?y"),
    ("", "http://a/b/c/d;p?q"),
    (".", "http://a/b/c/"),
    ("./", "http://a/b/c/"),
    ("..", "http://a/b/"),
    ("../", "http://a/b/"),
    ("../g", "http://a/b/g"),
    ("../..", "http://a/"),
    ("../../", "http://a/"),
    ("../../g", "http://a/g"),
    # abnormal
    ("../../../g", "http://a/g"),
    ("../../../../g", "http://a/g"),
    ("/./g", "http://a/g"),
    ("/../g", "http://a/g"),
    ("g.", "http://a/b/c/g."),
    (".g", "http://a/b/c/.g"),
    ("g..", "http://a/b/c/g.."),
    ("..g", "http://a/b/c/..g"),
    ("./../g", "http://a/b/g"),
    ("./g/.", "http://a/b/c/g/"),
    ("g/./h", "http://a/b/c/g/h"),
    ("g/../h", "http://a/b/c/h"),
    ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
    ("g;x=1/../y", "http://a/b/c/y"),
    ("g?y/./x", "http://a/b/c/g?y/./x"),
    ("g?y/../x", "http://a/b/c/g?y/../x"),
    ("g#s/./x", "http://a/b/c/g"),
    ("g#s/../x", "http://a/b/c/g"),
    ("http:g", "http://a/b/c/g"),
]


@pytest.mark.parametrize(("ref", "expected"), RFC_EXAMPLES)
def test_rfc3986_reference_resolution(ref: str, expected: str) -> None:
    assert normalize(ref, RFC_BASE) == expected


def test_rfc3986_other_scheme_example_is_refused() -> None:
    with pytest.raises(CrawlError) as exc:
        normalize("g:h", RFC_BASE)
    assert exc.value.type is ErrorType.INVALID_URL
    assert exc.value.message == "scheme not allowed: g"


def test_unnormalized_base_is_normalized_before_resolving() -> None:
    assert normalize("g", "HTTP://A:80/b/c/..") == "http://a/b/g"
    assert normalize("", "http://a/x#frag") == "http://a/x"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM/Path", "http://example.com/Path"),  # scheme and host only
        ("http://a.test:80/", "http://a.test/"),
        ("https://a.test:443/", "https://a.test/"),
        ("http://a.test:443/", "http://a.test:443/"),
        ("https://a.test:80/", "https://a.test:80/"),
        ("http://a.test:08080/", "http://a.test:8080/"),
        ("http://a.test:/", "http://a.test/"),
        ("http://a.test/a/./b/../c/", "http://a.test/a/c/"),
        ("http://a.test/a/%2e%2E/b", "http://a.test/b"),
        ("http://a.test/%c3%bc%2f%3a", "http://a.test/%C3%BC%2F%3A"),
        ("http://a.test/%7Euser/%41%2D%5F%2e", "http://a.test/~user/A-_."),
        ("http://a.test/?q=%7e%2b", "http://a.test/?q=~%2B"),
        ("http://a.test/a b", "http://a.test/a%20b"),
        ("http://a.test/ü?q=ä ö", "http://a.test/%C3%BC?q=%C3%A4%20%C3%B6"),
        ('http://a.test/<x>"{|}^`[]', "http://a.test/%3Cx%3E%22%7B%7C%7D%5E%60%5B%5D"),
        ("http://a.test", "http://a.test/"),
        ("http://a.test?x=1", "http://a.test/?x=1"),
        ("http://a.test/p#frag", "http://a.test/p"),
        ("http://a.test/p?#frag", "http://a.test/p"),
        ("http://a.test/p?", "http://a.test/p"),
        ("http://user:secret@a.test/", "http://a.test/"),
        ("http://user@a.test:8080/", "http://a.test:8080/"),
        ("http://a@b@a.test/", "http://a.test/"),
        ("http://a.test/p?z=1&a=2&m=3", "http://a.test/p?z=1&a=2&m=3"),  # order kept
        ("http://a.test/p?a+b=c%20d", "http://a.test/p?a+b=c%20d"),
        ("http://a.test/p?x=/y?z", "http://a.test/p?x=/y?z"),
        ("http://a.test/100%", "http://a.test/100%25"),  # stray % kept, encoded
        ("http://a.test/%zz?q=%g1", "http://a.test/%25zz?q=%25g1"),
        ("http://a.test//x//", "http://a.test//x//"),
        ("http://a.test/@:!$&'()*+,;=", "http://a.test/@:!$&'()*+,;="),
    ],
)
def test_section6_rules(url: str, expected: str) -> None:
    assert normalize(url) == expected


def test_whitespace_and_backslashes_like_browsers() -> None:
    assert normalize("  \t/a\n/b\r  ", "http://a.test/") == "http://a.test/a/b"
    assert normalize("\\x\\y?p=\\", "http://a.test/") == "http://a.test/x/y?p=%5C"
    assert normalize("http:\\\\b.test\\x") == "http://b.test/x"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://a.test/",
        "file:///etc/passwd",
        "data:text/html,hi",
        "javascript:alert(1)",
        "JavaScript:void(0)",
        "mailto:a@b.test",
        "tel:+123",
        "ws://a.test/",
    ],
)
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(CrawlError) as exc:
        normalize(url, "http://a.test/")
    assert exc.value.type is ErrorType.INVALID_URL
    assert exc.value.message == f"scheme not allowed: {url.split(':')[0].lower()}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://Bücher.example/", "http://xn--bcher-kva.example/"),
        ("http://BÜCHER.example./", "http://xn--bcher-kva.example/"),
        ("http://xn--bcher-kva.example/", "http://xn--bcher-kva.example/"),
        ("http://faß.de/", "http://xn--fa-hia.de/"),  # UTS #46 non-transitional keeps ß
        ("http://bücher。example/", "http://xn--bcher-kva.example/"),  # ideographic full stop
        ("http://ex%61mple.test/", "http://example.test/"),
        ("http://my_host.bücher.de/", "http://my_host.xn--bcher-kva.de/"),
        ("http://my_host.test/", "http://my_host.test/"),
        ("http://a.test./", "http://a.test/"),
    ],
)
def test_hosts(url: str, expected: str) -> None:
    assert normalize(url) == expected


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0x7f.1",
        "127.1",
        "0177.0.0.1",
        "0x7F000001",
        "127.0.0.1.",
        "０x7f.1",
        "127.0.1",
        "0x7f.0.0.1",
    ],
)
def test_numeric_ipv4_forms_are_canonical(host: str) -> None:
    assert normalize(f"http://{host}/") == "http://127.0.0.1/"
    assert normalize_host(host) == "127.0.0.1"


def test_ipv4_edge_values() -> None:
    assert normalize("http://0/") == "http://0.0.0.0/"
    assert normalize("http://4294967295/") == "http://255.255.255.255/"
    assert normalize("http://0x/") == "http://0.0.0.0/"
    assert normalize("http://10.0x0a.012.1/") == "http://10.10.10.1/"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://[::1]/", "http://[::1]/"),
        ("http://[0:0:0:0:0:0:0:1]:8080/x", "http://[::1]:8080/x"),
        ("https://[2001:DB8::A]:443/", "https://[2001:db8::a]/"),
        ("http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/"),
    ],
)
def test_ipv6_literals(url: str, expected: str) -> None:
    assert normalize(url) == expected


@pytest.mark.parametrize(
    ("url", "base", "fragment"),
    [
        ("http://a.test:99999/", None, "invalid port"),
        ("http://a.test:8o/", None, "invalid port"),
        ("http://a.test:-1/", None, "invalid port"),
        ("http://a.test:65536/", None, "invalid port"),
        ("http:///path", None, "empty host"),
        ("http://user@/", None, "empty host"),
        ("http://.../", None, "empty host"),
        ("http://a b.test/", None, "invalid character in host"),
        ("http://a%20b.test/", None, "invalid character in host"),
        ("http://a\x01b.test/", None, "invalid character in host"),
        ("http://a%00.test/", None, "invalid character in host"),
        ("http://a<b.test/", None, "invalid character in host"),
        ("http://a..test/", None, "empty label"),
        ("http://%ff.test/", None, "invalid host"),
        ("http://☃.net/", None, "invalid host"),
        ("http://xn--zz-.test/", None, "punycode"),
        ("http://" + "a" * 64 + ".test/", None, "longer than 63"),
        ("http://" + "a." * 130 + "test/", None, "longer than 253"),
        ("http://[::1/", None, "IPv6"),
        ("http://[::1]x/", None, "IPv6"),
        ("http://[fe80::1%25eth0]/", None, "zone"),
        ("http://[1::2::3]/", None, "IPv6"),
        ("http://1.2.3.4.5/", None, "too many parts"),
        ("http://256.0.0.1/", None, "out of range"),
        ("http://4294967296/", None, "out of range"),
        ("http://1.2.3.09/", None, "IPv4 address part"),
        ("http://foo.0x10/", None, "IPv4 address part"),
        ("http://+1.2/", None, "IPv4 address part"),
        ("http://1_0.2/", None, "IPv4 address part"),
        ("/relative", None, "without a base"),
        ("//a.test/x", None, "without a base"),
        ("http:nohost", None, "missing host"),
        ("https:x", "http://a.test/", "missing host"),
        ("x", "/not/absolute", "invalid base URL"),
        ("x", "ftp://a.test/", "invalid base URL"),
        ("/a\x00b", "http://a.test/", "control character"),
        ("/?q=\x7f", "http://a.test/", "control character"),
        ("/\ud800", "http://a.test/", "unencodable"),
    ],
)
def test_errors(url: str, base: str | None, fragment: str) -> None:
    with pytest.raises(CrawlError) as exc:
        normalize(url, base)
    assert exc.value.type is ErrorType.INVALID_URL
    assert fragment in exc.value.message


def test_control_chars_in_fragment_are_irrelevant() -> None:
    assert normalize("/a#\x00", "http://a.test/") == "http://a.test/a"


STRIP = ParamStripper(DEFAULT_STRIP_PARAMS)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a.test/p?id=3&utm_source=x&utm_medium=y", "http://a.test/p?id=3"),
        ("http://a.test/p?UTM_Source=x&b=2&GCLID=1&a=1", "http://a.test/p?b=2&a=1"),
        ("http://a.test/p?utm_source=x", "http://a.test/p"),
        ("http://a.test/p?fbclid&x", "http://a.test/p?x"),
        ("http://a.test/p?utm%5Fsource=x&k", "http://a.test/p?k"),
        ("http://a.test/p?sidebar=1&mysid=2&sid=3", "http://a.test/p?sidebar=1&mysid=2"),
        ("http://a.test/p?a=sid&b=utm_x", "http://a.test/p?a=sid&b=utm_x"),  # values never match
        ("http://a.test/p?a&&b", "http://a.test/p?a&&b"),  # untouched when nothing stripped
        ("http://a.test/p?a&&sid=1&b", "http://a.test/p?a&b"),
        ("http://a.test/x;jsessionid=ABC123?q=1", "http://a.test/x?q=1"),
        ("http://a.test/x;JSESSIONID=A/y;v=2;phpsessid=3", "http://a.test/x/y;v=2"),
        ("http://a.test/x;jsessionid", "http://a.test/x;jsessionid"),
        ("http://a.test/a/.;sid=1/b", "http://a.test/a/b"),
    ],
)
def test_param_stripping(url: str, expected: str) -> None:
    assert normalize(url, strip=STRIP) == expected


def test_no_stripping_without_stripper() -> None:
    url = "http://a.test/x;jsessionid=1?utm_source=x"
    assert normalize(url) == url


def test_param_stripper_globs() -> None:
    s = ParamStripper(["ref_?", "x[0-9]", "y[!a]", "[]]z", "a.b", "p*q"])
    assert s.matches("REF_A") and not s.matches("ref_ab")
    assert s.matches("x7") and not s.matches("xa")
    assert s.matches("yb") and not s.matches("ya")
    assert s.matches("]z")
    assert s.matches("a.b") and not s.matches("aXb")
    assert s.matches("pq") and s.matches("p-anything-q") and not s.matches("p")
    assert s.strip_query("ref_1=a&x9=b&keep=c&pzq") == "keep=c"
    assert ParamStripper([]).strip_query("a=1") == "a=1"
    assert set(DEFAULT_STRIP_PARAMS) >= {"utm_*", "gclid", "fbclid", "jsessionid", "sid"}


def test_host_key_and_origin() -> None:
    cases = [
        ("http://a.test/x?y", "a.test", "http://a.test"),
        ("https://a.test:8080/", "a.test:8080", "https://a.test:8080"),
        ("http://[::1]:81/p", "[::1]:81", "http://[::1]:81"),
        ("https://b/", "b", "https://b"),
    ]
    for url, key, org in cases:
        assert host_key(url) == key
        assert origin(url) == org
    assert host_key(normalize("HTTPS://A.Test:443/x")) == "a.test"


URL_CHARS = st.sampled_from(
    [
        *"abcAB09-._~:/?#[]@!$&'()*+,;=% \t\n\\\"<>^`{|}",
        "%2e",
        "%2E",
        "%41",
        "%zz",
        "..",
        "./",
        "ü",
        "ß",
        "。",
        "０",
        "\x00",
        "\x7f",
        "\ud800",
    ]
)
URLISH = st.builds(
    lambda scheme, host, port, rest: f"{scheme}{host}{port}{rest}",
    st.sampled_from(["http://", "HTTPS://", "http:", "//", "", "ftp://", "http:\\\\"]),
    st.one_of(
        st.sampled_from(["a.test", "Bücher.example", "127.1", "0x7f.1", "[::1]", "u:p@h.test", "", "xn--a"]),
        st.text(max_size=12),
    ),
    st.sampled_from(["", ":80", ":443", ":8080", ":", ":99999", ":x"]),
    st.lists(URL_CHARS, max_size=25).map("".join),
)


def _check(href: str, base: str | None, strip: ParamStripper | None) -> None:
    try:
        out = normalize(href, base, strip)
    except CrawlError as exc:
        assert exc.type is ErrorType.INVALID_URL
        return
    assert out.startswith(("http://", "https://"))
    assert normalize(out, None, strip) == out
    assert normalize(out, base, strip) == out
    assert out.isascii() and " " not in out and "#" not in out
    assert origin(out) + out[len(origin(out)) :] == out
    assert out[len(origin(out))] == "/"


@settings(max_examples=400, deadline=None)
@given(URLISH, st.sampled_from([None, "http://b.test/x/y?q", "https://c.test:8443/"]), st.booleans())
def test_fuzz_urlish_only_crawl_errors_and_idempotent(href: str, base: str | None, use_strip: bool) -> None:
    _check(href, base, STRIP if use_strip else None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.sampled_from([None, "http://b.test/x/y?q"]))
def test_fuzz_text_only_crawl_errors_and_idempotent(href: str, base: str | None) -> None:
    _check(href, base, STRIP)
