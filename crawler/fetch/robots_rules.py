"""robots.txt per RFC 9309: parsing a file into the rules for our product token, and matching URLs.

Matching is protego's (longest match, Allow wins ties, percent-encoding, `*` and `$`); from protego 0.7 on
(the floor in pyproject.toml) it matches wildcards with a left-to-right `str.find` per literal piece, which
is linear in the URL for any pattern (older releases compiled regexes that could backtrack exponentially).
So every Allow/Disallow is matched whole, whatever its length or number of `*`. Before protego sees
a file we rewrite it into a canonical one holding only the groups that apply to our product token (or `*`):

* user-agent lines are matched here on the RFC product token (`[A-Za-z_-]+`, case-insensitive), because
  protego matches prefixes ("User-agent: polite" would bind "PoliteCrawler") and misses versioned lines
  ("User-agent: PoliteCrawler/1.0");
* groups for other agents are dropped, which keeps cached rules small across 100k origins;
* runs of `*` collapse (they mean the same as one), and at most `MAX_RULES` rules (`MAX_WILDCARD_RULES`
  with `*`/`$`) are kept, since protego checks wildcard rules one by one per URL: the count is bounded,
  never a rule's length.
"""

from __future__ import annotations

import math
import re
from typing import Literal
from urllib.parse import urlsplit

from protego import Protego

__all__ = [
    "MAX_RULES",
    "MAX_WILDCARD_RULES",
    "PRODUCT_TOKEN",
    "RobotsKind",
    "RobotsRules",
    "canonicalize",
    "decode_body",
    "parse_robots",
]

RobotsKind = Literal["parsed", "allow_all", "disallow_all"]

MAX_RULES = 10_000
MAX_WILDCARD_RULES = 500
MAX_SITEMAPS = 100

_BOM = b"\xef\xbb\xbf"
_STAR_RUN = re.compile(r"\*{2,}")
#: An RFC 9309 product token (§2.2.1); user-agent lines are matched on it.
PRODUCT_TOKEN = re.compile(r"[A-Za-z_-]+")
# Field spellings protego accepts; we accept the same so no rule slips past the guards unseen.
_UA = "user-agent"
_FIELDS = {
    "user-agent": _UA,
    "useragent": _UA,
    "user agent": _UA,
    "allow": "allow",
    "disallow": "disallow",
    "dissallow": "disallow",
    "dissalow": "disallow",
    "disalow": "disallow",
    "diasllow": "disallow",
    "disallaw": "disallow",
    "crawl-delay": "crawl-delay",
    "crawl delay": "crawl-delay",
    "sitemap": "sitemap",
    "sitemaps": "sitemap",
    "site-map": "sitemap",
    "host": "host",
    "request-rate": "other",
    "request rate": "other",
    "visit-time": "other",
    "visit time": "other",
}
_SITE_WIDE = frozenset({"sitemap", "host"})
# An unknown directive: protego treats it as a non-user-agent line, which ends the group header.
_GROUP_BREAK = "x-group: 1"


def _is_robots_txt(url: str) -> bool:
    if "/robots.txt" not in url:
        return False
    try:
        return urlsplit(url).path == "/robots.txt"
    except ValueError:
        return False


class RobotsRules:
    """The verdict for one origin: `allowed(url)`, the clamped `crawl_delay`, and why/when it was decided."""

    __slots__ = (
        "_default",
        "_parser",
        "_token",
        "crawl_delay",
        "expires_at",
        "fetched_at",
        "kind",
        "reason",
        "sitemaps",
    )

    def __init__(
        self,
        kind: RobotsKind,
        reason: str,
        *,
        fetched_at: float,
        expires_at: float,
        crawl_delay: float | None = None,
        sitemaps: tuple[str, ...] = (),
        parser: Protego | None = None,
        token: str = "",
    ) -> None:
        self.kind: RobotsKind = kind
        self.reason = reason
        self.fetched_at = fetched_at
        self.expires_at = expires_at
        self.crawl_delay = crawl_delay
        self.sitemaps = sitemaps
        self._parser = parser
        self._token = token
        # Used when there is no parser: a parsed file without a group for us allows everything.
        self._default = kind != "disallow_all"

    def allowed(self, url: str) -> bool:
        """True if `url` (absolute, on this origin) may be fetched; `/robots.txt` always may."""
        # Checked here, not left to protego: only some releases exempt /robots.txt (RFC 9309 §2.5 lets a
        # crawler always fetch it, and a file that disallows "/" must still be re-read when it changes).
        if _is_robots_txt(url):
            return True
        parser = self._parser
        if parser is not None:
            try:
                return parser.can_fetch(url, self._token)
            except ValueError:  # urlsplit rejects e.g. a broken IPv6 literal; such a URL is not fetchable
                return False
        return self._default

    def restamped(self, reason: str, expires_at: float) -> RobotsRules:
        """The same rules with a new reason and expiry (a cached copy standing in after a failed refresh)."""
        return RobotsRules(
            self.kind,
            reason,
            fetched_at=self.fetched_at,
            expires_at=expires_at,
            crawl_delay=self.crawl_delay,
            sitemaps=self.sitemaps,
            parser=self._parser,
            token=self._token,
        )

    def __repr__(self) -> str:
        return (
            f"RobotsRules(kind={self.kind!r}, reason={self.reason!r}, crawl_delay={self.crawl_delay!r}, "
            f"fetched_at={self.fetched_at!r}, expires_at={self.expires_at!r})"
        )


def _directive(line: str) -> tuple[str, str] | None:
    """Split a comment-free, stripped line into (canonical field, value); None if it is not a directive."""
    key, sep, value = line.partition(":")
    if sep:
        field = _FIELDS.get(" ".join(key.lower().split()))
        if field is not None:
            return field, value.strip()
    # Lenient like protego: "Disallow /a", "User agent foo", "Sitemap http://x/s.xml".
    words = line.split(None, 2)
    first = words[0].lower()
    if len(words) >= 2 and _FIELDS.get(f"{first} {words[1].lower()}") == _UA:
        return _UA, words[2] if len(words) == 3 else ""
    field = _FIELDS.get(first)
    if field is not None:  # a bare "Disallow" still ends a group header
        return field, " ".join(words[1:])
    return None


def _collapse_stars(value: str) -> str:
    """`a**b` means `a*b`; collapsing keeps the rule's pieces (and protego's work) minimal."""
    return _STAR_RUN.sub("*", value) if "**" in value else value


def canonicalize(text: str, token: str, sources: list[int] | None = None) -> tuple[str, tuple[str, ...]]:
    """Rewrite robots.txt text to only the groups for `token` (lower-case) or `*`, guarded; plus sitemaps.

    `sources`, when given, receives the 1-based line of `text` each output line came from (0 for the
    separators added between groups): `crawler.fetch.robots_explain` names the line that decided.
    """
    out: list[str] = []
    sitemaps: list[str] = []
    in_header = False
    ours = False
    header_started = False
    agents = ""  # the agents of the current group, to drop repeats of a rule within a group
    seen_rules: set[str] = set()
    rules = wildcard_rules = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.partition("#")[0].strip()
        if not line:
            continue
        parsed = _directive(line)
        if parsed is None:
            continue
        field, value = parsed
        if field == _UA:
            if not in_header:
                in_header, ours, header_started = True, False, False
            agent = value.strip()
            if agent != "*":
                product = PRODUCT_TOKEN.match(agent)
                if product is None or product.group().lower() != token:
                    continue
                agent = token
            if not header_started:
                header_started, agents = True, ""
                if out:
                    out.append(_GROUP_BREAK)  # keep protego from merging this group into the previous one
                    if sources is not None:
                        sources.append(0)
            ours = True
            agents += f"{agent} "
            out.append(f"user-agent: {agent}")
            if sources is not None:
                sources.append(number)
        elif field in _SITE_WIDE:
            if field == "sitemap" and value and len(sitemaps) < MAX_SITEMAPS:
                sitemaps.append(value)
        else:
            in_header = False
            if not ours or not value:
                continue
            if field == "crawl-delay":
                out.append(f"crawl-delay: {value}")
                if sources is not None:
                    sources.append(number)
            elif field in ("allow", "disallow"):
                pattern = _collapse_stars(value)
                if rules >= MAX_RULES:
                    continue
                rule = f"{field}: {pattern}"
                # A repeated rule changes nothing; keep it once so it uses one slot.
                key = agents + rule
                if key in seen_rules:
                    continue
                seen_rules.add(key)
                if "*" in pattern or pattern.endswith("$"):
                    if wildcard_rules >= MAX_WILDCARD_RULES:
                        continue
                    wildcard_rules += 1
                rules += 1
                out.append(rule)
                if sources is not None:
                    sources.append(number)
    return "\n".join(out), tuple(sitemaps)


def decode_body(body: bytes, max_bytes: int) -> str:
    """Bytes to text: skip a UTF-8 BOM, keep `max_bytes` (cut at the last newline), decode leniently."""
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    if len(body) > max_bytes:
        body = body[:max_bytes]
        newline = body.rfind(b"\n")
        if newline != -1:
            body = body[: newline + 1]
    return body.decode("utf-8", errors="replace")


def parse_robots(
    body: bytes,
    *,
    product_token: str,
    reason: str = "200",
    fetched_at: float = 0.0,
    expires_at: float = math.inf,
    max_bytes: int = 512 * 1024,
    max_crawl_delay: float = 30.0,
) -> RobotsRules:
    """Parse a robots.txt body into rules for `product_token`; never raises on bad input."""
    token = product_token.lower()
    text, sitemaps = canonicalize(decode_body(body, max_bytes), token)
    if not text:
        return RobotsRules("parsed", reason, fetched_at=fetched_at, expires_at=expires_at, sitemaps=sitemaps)
    try:
        parser = Protego.parse(text)
        delay = parser.crawl_delay(token)
    except Exception as exc:  # a protego bug must not take the crawler down; an unreadable file has no rules
        return RobotsRules(
            "allow_all",
            f"{reason} unparseable ({type(exc).__name__}) allow all",
            fetched_at=fetched_at,
            expires_at=expires_at,
            sitemaps=sitemaps,
        )
    if delay is not None:
        delay = min(max(delay, 0.0), max_crawl_delay)
    return RobotsRules(
        "parsed",
        reason,
        fetched_at=fetched_at,
        expires_at=expires_at,
        crawl_delay=delay,
        sitemaps=sitemaps,
        parser=parser,
        token=token,
    )
