"""Which robots.txt rule decided a URL, and on which line: for `crawler explain`, never on the hot path.

The crawl keeps only compiled rules (`robots_rules.RobotsRules`); this module parses the body again with
the same `canonicalize` (asked to remember each kept line's source line) and the same protego matcher,
then asks the matcher's own rule set which rule matched first (protego sorts rules longest first, Allow
before Disallow on ties, so the first match is the decisive one). The verdict is always the crawl's own
(`RobotsRules.allowed`); if this protego release does not expose its rule set as expected, the rule is
left out rather than guessed (`rule` None, `note` says why).
"""

from __future__ import annotations

from dataclasses import dataclass

from protego import Protego

from crawler.fetch.robots_rules import (
    _is_robots_txt,
    canonicalize,
    decode_body,
    parse_robots,
)

__all__ = ["RobotsMatch", "explain_robots"]


@dataclass(slots=True, frozen=True)
class RobotsMatch:
    """Why robots.txt allows or disallows one URL."""

    allowed: bool
    rule: str | None = None  # the deciding line as written (comment dropped), e.g. "Disallow: /private/"
    line: int | None = None  # its 1-based line number in the robots.txt body
    group: str | None = None  # the user-agent line of the group that applied, e.g. "User-agent: *"
    group_line: int | None = None
    note: str = ""  # when there is no deciding rule: why the URL is allowed


def explain_robots(body: bytes, url: str, *, product_token: str, max_bytes: int = 512 * 1024) -> RobotsMatch:
    """The verdict of robots.txt `body` on `url` for `product_token`, with the rule and line that decided."""
    allowed = parse_robots(body, product_token=product_token, max_bytes=max_bytes).allowed(url)
    if _is_robots_txt(url):
        return RobotsMatch(allowed, note="/robots.txt itself is always allowed")
    token = product_token.lower()
    text = decode_body(body, max_bytes)
    sources: list[int] = []
    canonical, _ = canonicalize(text, token, sources)
    if not canonical:
        return RobotsMatch(allowed, note=f"no group for {product_token} or * (allow all)")
    lines = text.splitlines()
    try:
        found = _deciding_rule(Protego.parse(canonical), canonical.split("\n"), url, token)
    except (AttributeError, ImportError, StopIteration, TypeError, ValueError) as exc:  # protego internals changed
        return RobotsMatch(allowed, note=f"the deciding rule is not available ({type(exc).__name__})")
    if found is None:
        return RobotsMatch(allowed, note=f"no group for {product_token} or * (allow all)")
    rule_index, group_index = found
    group_line = sources[group_index]
    group = lines[group_line - 1].partition("#")[0].strip()
    if rule_index is None:
        return RobotsMatch(allowed, group=group, group_line=group_line, note="no rule of its group matches it (allow)")
    rule_line = sources[rule_index]
    match = RobotsMatch(
        allowed,
        rule=lines[rule_line - 1].partition("#")[0].strip(),
        line=rule_line,
        group=group,
        group_line=group_line,
    )
    decided_allow = canonical.split("\n")[rule_index].startswith("allow:")
    if decided_allow != allowed:  # never expected: say so rather than show a rule that did not decide
        return RobotsMatch(allowed, note="the matcher's verdict and its first matching rule disagree")
    return match


def _deciding_rule(parser: Protego, canonical: list[str], url: str, token: str) -> tuple[int | None, int] | None:
    """Indexes in `canonical` of the deciding rule (None: no rule matched) and of the user-agent line of
    the group it is in (else the first group that applied); None when no group applies at all."""
    from protego._utils import _quote_path  # the matcher's own URL encoding

    ruleset = parser._get_matching_rule_set(token)
    if ruleset is None:
        return None
    quoted = _quote_path(url)
    decisive = next((rule for rule in ruleset._rules if rule.value.match(quoted)), None)
    agent = ruleset.user_agent
    first_group: int | None = None
    group_start = -1
    in_header = False
    agents: set[str] = set()
    for i, line in enumerate(canonical):
        field, _, value = line.partition(": ")
        if field == "user-agent":
            if not in_header:
                in_header, agents, group_start = True, set(), i
            agents.add(value)
            continue
        in_header = False
        if agent not in agents:
            continue
        if first_group is None:
            first_group = group_start
        if decisive is not None and field == decisive.field and decisive.value._pattern in _patterns(ruleset, value):
            return i, group_start
    if first_group is None:  # a group with only a user-agent line: find its header
        first_group = next(i for i, line in enumerate(canonical) if line == f"user-agent: {agent}")
    return None, first_group


def _patterns(ruleset: object, value: str) -> set[str]:
    """The quoted patterns protego derives from one rule value (see protego's `_RuleSet.allow`)."""
    out: set[str] = set()
    for raw in (value, value.replace("$", "%24")) if "$" in value else (value,):
        pattern = ruleset._url_pattern(raw)  # type: ignore[attr-defined]
        if pattern is not None:
            out.add(pattern._pattern)
            if pattern._pattern.endswith("/index.html"):
                out.add(pattern._pattern.removesuffix("index.html") + "$")
    return out
