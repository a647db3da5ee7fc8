"""Scope rules: allowed domains with subdomains, depth, length and crawler-trap limits."""

from __future__ import annotations

import pytest

from crawler.core.errors import CrawlError
from crawler.core.urlnorm import host_key, normalize
from crawler.ingest.scope import (
    MAX_DEPTH,
    OUT_OF_SCOPE,
    REASONS,
    REPEATED_SEGMENTS,
    TOO_MANY_SEGMENTS,
    URL_TOO_LONG,
    Scope,
)

LIMITS = {"max_depth": 3, "max_url_length": 200, "max_repeated_segments": 2}


def check(scope: Scope, url: str, depth: int = 0) -> str | None:
    url = normalize(url)
    return scope.reason(url, host_key(url), depth)


def test_reason_constants() -> None:
    assert REASONS == ("out_of_scope", "max_depth", "url_too_long", "repeated_segments", "too_many_segments")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://b.test/", True),
        ("http://a.b.test/", True),
        ("http://x.y.a.b.test/p", True),
        ("http://B.Test./", True),
        ("http://b.test:8080/", True),
        ("https://a.b.test:4443/", True),
        ("http://xb.test/", False),
        ("http://b.test.evil/", False),
        ("http://test/", False),
        ("http://ab.test/", False),
        ("http://a-b.test/", False),
        ("http://other.test/", False),
    ],
)
def test_subdomain_matching(url: str, allowed: bool) -> None:
    scope = Scope(["b.test"], **LIMITS)
    assert check(scope, url) == (None if allowed else OUT_OF_SCOPE)
    assert check(scope, url) == (None if allowed else OUT_OF_SCOPE)  # cached answer is the same


def test_allow_domains_are_normalized_and_ports_ignored() -> None:
    scope = Scope(["WWW.Bücher.Example.", "c.test:8080", " d.test "], **LIMITS)
    assert scope.allow_domains == frozenset({"www.xn--bcher-kva.example", "c.test", "d.test"})
    assert check(scope, "http://shop.www.bücher.example/") is None
    assert check(scope, "http://bücher.example/") == OUT_OF_SCOPE
    assert check(scope, "http://c.test:9090/") is None
    assert check(scope, "http://c.test/") is None
    assert check(scope, "http://x.d.test/") is None


def test_ip_hosts() -> None:
    scope = Scope(["127.0.0.1", "[::1]"], **LIMITS)
    assert check(scope, "http://127.0.0.1:8080/") is None
    assert check(scope, "http://2130706433/") is None
    assert check(scope, "http://[::1]:9000/") is None
    assert check(scope, "http://[0::1]/") is None
    assert check(scope, "http://127.0.0.2/") == OUT_OF_SCOPE
    assert check(scope, "http://[::2]/") == OUT_OF_SCOPE


def test_empty_allow_domains_allows_everything() -> None:
    scope = Scope([], **LIMITS)
    assert check(scope, "http://anything.example/") is None
    assert check(scope, "http://10.0.0.1:81/") is None


def test_many_domains() -> None:
    scope = Scope([f"d{i}.test" for i in range(1000)], **LIMITS)
    assert check(scope, "http://www.d999.test/") is None
    assert check(scope, "http://www.d1000.test/") == OUT_OF_SCOPE


def test_max_depth() -> None:
    scope = Scope(["a.test"], **LIMITS)
    assert check(scope, "http://a.test/", depth=3) is None
    assert check(scope, "http://a.test/", depth=4) == MAX_DEPTH
    unlimited = Scope(["a.test"], **{**LIMITS, "max_depth": None})
    assert check(unlimited, "http://a.test/", depth=10_000) is None


def test_out_of_scope_wins_over_depth() -> None:
    scope = Scope(["a.test"], **LIMITS)
    assert check(scope, "http://b.test/", depth=99) == OUT_OF_SCOPE


def test_url_too_long() -> None:
    scope = Scope(["a.test"], **{**LIMITS, "max_url_length": 30})
    assert check(scope, "http://a.test/" + "x" * 16) is None  # exactly 30 characters
    assert check(scope, "http://a.test/" + "x" * 17) == URL_TOO_LONG


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/a/a", None),
        ("/a/b/a/b", None),
        ("/a/a/a", REPEATED_SEGMENTS),
        ("/a/b/a/b/a/b", REPEATED_SEGMENTS),
        ("/a/b/c/a/b/c/a/b/c/", REPEATED_SEGMENTS),
        ("/en/x/en/y/en/z", REPEATED_SEGMENTS),
        ("/x/a/b/a/b/a/b/y", REPEATED_SEGMENTS),
        ("/a//b//c//d/", None),  # empty segments are not counted
        ("/a/b/c/d/e/f/g/h", None),
        ("/a/b?x=/a/a/a", None),  # only the path counts
    ],
)
def test_repeated_segments(path: str, reason: str | None) -> None:
    scope = Scope(["a.test"], **{**LIMITS, "max_repeated_segments": 2})
    assert check(scope, f"http://a.test{path}") == reason


def test_repeated_segments_limit_is_a_count() -> None:
    scope = Scope(["a.test"], **{**LIMITS, "max_repeated_segments": 3})
    assert check(scope, "http://a.test/a/b/a/b/a/b") is None
    assert check(scope, "http://a.test/a/b/a/b/a/b/a/b") == REPEATED_SEGMENTS


def test_too_many_segments() -> None:
    scope = Scope(["a.test"], **{**LIMITS, "max_path_segments": 3})
    assert check(scope, "http://a.test/") is None
    assert check(scope, "http://a.test/a/b/c") is None
    assert check(scope, "http://a.test/a/b/c/") is None
    assert check(scope, "http://a.test/a//b/c/") is None
    assert check(scope, "http://a.test/a/b/c/d") == TOO_MANY_SEGMENTS
    no_limit = Scope(["a.test"], **LIMITS)
    assert check(no_limit, "http://a.test/" + "/".join(f"s{i}" for i in range(40))) is None


def test_for_seeds() -> None:
    scope = Scope.for_seeds(
        ["http://www.Example.com:8080/start", "https://docs.example.org/", "http://www.example.com/x"],
        **LIMITS,
    )
    assert scope.allow_domains == frozenset({"www.example.com", "docs.example.org"})
    assert check(scope, "http://www.example.com/") is None
    assert check(scope, "http://cdn.www.example.com:81/") is None
    assert check(scope, "http://example.com/") == OUT_OF_SCOPE
    assert check(scope, "https://api.docs.example.org/") is None
    assert check(scope, "https://example.org/") == OUT_OF_SCOPE
    assert scope.max_depth == 3 and scope.max_path_segments is None


def test_for_seeds_rejects_invalid_seed() -> None:
    with pytest.raises(CrawlError):
        Scope.for_seeds(["ftp://a.test/"], **LIMITS)
