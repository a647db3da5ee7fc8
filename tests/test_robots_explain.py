"""Which robots.txt rule decided, and its line (`crawler.fetch.robots_explain`), always agreeing with the crawl."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.fetch.robots_explain import RobotsMatch, explain_robots
from crawler.fetch.robots_rules import canonicalize, decode_body, parse_robots

TOKEN = "PoliteCrawler"
BODY = b"""# rules for everyone
User-agent: Googlebot
Disallow: /

User-agent: *
Allow: /private/open$
Disallow: /private/   # secret
Disallow: /*.pdf$

user-agent: politecrawler/2.0
Disallow: /only-us
Allow: /only-us/but-this
Allow: /a/index.html
Disallow: /a/
"""


@pytest.mark.parametrize(
    ("path", "token", "allowed", "rule", "line", "group_line"),
    [
        ("/private/x", "Otherbot", False, "Disallow: /private/", 7, 5),
        ("/private/open", "Otherbot", True, "Allow: /private/open$", 6, 5),  # longest match wins
        ("/private/open/more", "Otherbot", False, "Disallow: /private/", 7, 5),  # `$` anchors the end
        ("/files/x.pdf", "Otherbot", False, "Disallow: /*.pdf$", 8, 5),
        ("/only-us/a", TOKEN, False, "Disallow: /only-us", 11, 10),  # our own group, matched by product token
        ("/only-us/but-this/x", TOKEN, True, "Allow: /only-us/but-this", 12, 10),
        ("/a/", TOKEN, True, "Allow: /a/index.html", 13, 10),  # protego: an allowed index.html allows its folder
        ("/a/b", TOKEN, False, "Disallow: /a/", 14, 10),
        ("/x", "Googlebot", False, "Disallow: /", 3, 2),
    ],
)
def test_the_deciding_rule_and_its_line(
    path: str, token: str, allowed: bool, rule: str, line: int, group_line: int
) -> None:
    match = explain_robots(BODY, "http://a.test" + path, product_token=token)
    assert (match.allowed, match.rule, match.line, match.group_line) == (allowed, rule, line, group_line)
    assert match.group is not None and match.group.lower().startswith("user-agent:")


def test_allowed_without_a_rule_says_why() -> None:
    ours = explain_robots(BODY, "http://a.test/private/x", product_token=TOKEN)
    # Our group applies (not `*`), and none of its rules matches.
    assert ours == RobotsMatch(
        True, group="user-agent: politecrawler/2.0", group_line=10, note="no rule of its group matches it (allow)"
    )
    assert explain_robots(b"User-agent: x\nDisallow: /\n", "http://a.test/", product_token=TOKEN).note.startswith(
        "no group for PoliteCrawler"
    )
    assert explain_robots(BODY, "http://a.test/robots.txt", product_token="Googlebot").allowed is True


def test_line_numbers_count_blank_lines_crlf_and_a_bom() -> None:
    body = b"\xef\xbb\xbf\r\n# c\r\n\r\nUser-agent: *\r\nDisallow: /x\r\n"
    match = explain_robots(body, "http://a.test/x/y", product_token=TOKEN)
    assert (match.allowed, match.rule, match.line, match.group_line) == (False, "Disallow: /x", 5, 4)


def test_canonical_text_is_the_same_with_or_without_sources() -> None:
    text = decode_body(BODY, 1 << 20)
    sources: list[int] = []
    with_sources = canonicalize(text, TOKEN.lower(), sources)
    assert with_sources == canonicalize(text, TOKEN.lower())
    assert len(sources) == len(with_sources[0].split("\n"))


_PATTERNS = st.lists(
    st.tuples(st.sampled_from(["Allow", "Disallow"]), st.from_regex(r"/[ab*]{0,4}\$?", fullmatch=True)),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(rules=_PATTERNS, path=st.from_regex(r"/[ab]{0,5}", fullmatch=True), ours=st.booleans())
def test_verdict_is_the_crawls_and_the_rule_agrees(rules: list[tuple[str, str]], path: str, ours: bool) -> None:
    agent = TOKEN if ours else "*"
    body = (f"User-agent: {agent}\n" + "".join(f"{f}: {p}\n" for f, p in rules)).encode()
    url = "http://a.test" + path
    match = explain_robots(body, url, product_token=TOKEN)
    assert match.allowed == parse_robots(body, product_token=TOKEN).allowed(url)
    if match.rule is not None:
        assert match.rule.startswith("Allow" if match.allowed else "Disallow")
        assert match.line is not None and body.decode().splitlines()[match.line - 1] == match.rule
    else:
        assert match.allowed and match.note
