"""HTML extraction: links, robots meta, title, description, canonical, base and visible text.

lexbor (selectolax) parses every page; should it fail, the same body is parsed again with Python's own
tolerant tokenizer (`html.parser`) before the page is called a parse error (the failure matrix's
`parse_error` row). selectolax 1.0 dropped its second engine (modest), and lxml is not a dependency.

Decoding bytes to text is `crawler.extract.charset`'s, deciding whether a body is HTML at all is
`crawler.extract.sniff`'s.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

from selectolax.lexbor import LexborHTMLParser

from crawler.core.errors import CrawlError, ErrorType

__all__ = ["MAX_FIELD_CHARS", "PARSERS", "Page", "Parser", "extract", "scan_links_fallback"]

MAX_FIELD_CHARS = 1000  # cap for title and description


@dataclass(slots=True)
class Page:
    """What a crawl needs from one HTML page. `links` are raw hrefs: resolve against `base_href`.

    `links` is filled even when `nofollow` is set; the caller must honour `nofollow`.
    """

    title: str | None = None
    description: str | None = None
    canonical: str | None = None
    meta_robots: str | None = None
    noindex: bool = False
    nofollow: bool = False
    base_href: str | None = None
    links: list[str] = field(default_factory=list)
    nofollow_links: int = 0
    text: str = ""
    parser: str = "lexbor"  # which parser read the page ("stdlib" when lexbor failed)


# The URL parser strips leading/trailing C0 controls and spaces, and removes tabs and newlines.
_URL_STRIP = "".join(chr(c) for c in range(0x21))
_TAB_NL = str.maketrans("", "", "\t\n\r")
_INVISIBLE = ["script", "style", "noscript", "template"]


def _keep_href(href: str) -> bool:
    """False for hrefs that lead nowhere: empty, same-page fragments, `javascript:`."""
    if not href or href[0] == "#":
        return False
    head = href[:16]
    if "\t" in head or "\n" in head or "\r" in head:
        head = head.translate(_TAB_NL)
    return head[:11].lower() != "javascript:"


def _collapse(text: str, limit: int | None = None) -> str:
    out = " ".join(text.split())
    return out[:limit] if limit is not None else out


def _robots_tokens(content: str) -> list[str]:
    return [t for t in re.split(r"[\s,]+", content.lower()) if t]


#: One HTML parser's extraction: `(html, robots token) -> Page`; it may raise anything on failure.
Parser = Callable[[str, str], "Page"]


def extract(html: str, robots_token: str = "", parsers: tuple[Parser, ...] | None = None) -> Page:
    """Parse `html` with the first of `parsers` that succeeds (default `PARSERS`: lexbor, then Python's
    `html.parser`); raises `CrawlError(PARSE_ERROR)` naming every failure when all of them fail."""
    token = robots_token.strip().lower()
    failures: list[str] = []
    for parse in parsers if parsers is not None else PARSERS:
        try:
            return parse(html, token)
        except CrawlError:
            raise
        except Exception as exc:  # parser failures surface as assorted exception types
            failures.append(f"{getattr(parse, '__name__', type(parse).__name__)}: {exc!r}")
    raise CrawlError(ErrorType.PARSE_ERROR, "HTML parsers failed: " + "; ".join(failures))


# lexbor's tree builder walks the stack of open elements for many start tags, so parsing time grows
# with the square of the nesting depth (10,000 nested divs: ~0.1 s; 40,000: ~2 s; 100,000: ~18 s).
# Browsers cap the depth too (Blink: 512). A page with at most `_SCAN_ABOVE` start tags cannot nest
# deeper than that, which costs lexbor at most ~20 ms; bigger pages get a tag scan that drops start
# tags (and their end tags) nested deeper than `MAX_DEPTH`, keeping the content but not the depth.
MAX_DEPTH = 1024
_SCAN_ABOVE = 4096
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)[^>]*>")
# Void elements never nest; the others are closed implicitly by their next sibling (a new <a> closes
# an open one), so none of them can build depth. Never dropping <a> also keeps deep links.
_FLAT = frozenset(
    [
        "area",
        "base",
        "basefont",
        "bgsound",
        "br",
        "col",
        "embed",
        "frame",
        "hr",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "p",
        "li",
        "dt",
        "dd",
        "tr",
        "td",
        "th",
        "option",
        "optgroup",
        "thead",
        "tbody",
        "tfoot",
        "colgroup",
        "caption",
        "a",
        "rb",
        "rt",
        "rp",
        "rtc",
    ]
)


def _limit_depth(html: str, limit: int = MAX_DEPTH) -> str:
    """`html` with start tags that would nest deeper than `limit` removed (with their end tags)."""
    if html.count("<") - html.count("</") <= max(limit, _SCAN_ABOVE):
        return html
    stack: list[str] = []
    open_count: dict[str, int] = {}
    dropped: dict[str, int] = {}
    pieces: list[str] = []
    last = 0
    for m in _TAG.finditer(html):
        name = m.group(2).lower()
        if name in _FLAT:
            continue
        if m.group(1):  # end tag: pops up to the matching open element, like the parser does
            if dropped.get(name):
                dropped[name] -= 1
            elif open_count.get(name):
                while True:
                    top = stack.pop()
                    open_count[top] -= 1
                    if top == name:
                        break
                continue
            else:
                continue
        elif len(stack) < limit:
            stack.append(name)
            open_count[name] = open_count.get(name, 0) + 1
            continue
        else:
            dropped[name] = dropped.get(name, 0) + 1
        pieces.append(html[last : m.start()])
        last = m.end()
    if not pieces:
        return html
    pieces.append(html[last:])
    return "".join(pieces)


def extract_lexbor(html: str, token: str, tree_class: type[LexborHTMLParser] = LexborHTMLParser) -> Page:
    """The main extraction, with lexbor (`tree_class` lets a test put a failing parser in its place)."""
    tree = tree_class(_limit_depth(html))
    page = Page()

    robots: list[str] = []
    for node in tree.css("meta[name]"):
        attrs = node.attributes
        name = (attrs.get("name") or "").strip().lower()
        content = attrs.get("content")
        if content is None:
            continue
        if name == "robots" or (token and name == token):
            robots.extend(_robots_tokens(content))
        elif name == "description" and page.description is None:
            page.description = _collapse(content, MAX_FIELD_CHARS)
    if robots:
        merged = list(dict.fromkeys(robots))  # keep order, drop repeats
        page.meta_robots = ", ".join(merged)
        page.noindex = "noindex" in merged or "none" in merged
        page.nofollow = "nofollow" in merged or "none" in merged

    title = tree.css_first("title")
    if title is not None:
        page.title = _collapse(title.text(), MAX_FIELD_CHARS)

    for node in tree.css("link[rel][href]"):
        attrs = node.attributes
        if "canonical" in (attrs.get("rel") or "").lower().split():
            page.canonical = (attrs.get("href") or "").strip(_URL_STRIP) or None
            break

    base = tree.css_first("base[href]")
    if base is not None:
        page.base_href = (base.attributes.get("href") or "").strip(_URL_STRIP) or None

    seen: dict[str, None] = {}
    nofollow_links = 0
    for node in tree.css("a[href], area[href]"):
        attrs = node.attributes
        href = attrs.get("href")
        if not href:
            continue
        href = href.strip(_URL_STRIP)
        if not _keep_href(href):
            continue
        rel = attrs.get("rel")
        if rel and "nofollow" in rel.lower().split():
            nofollow_links += 1
            continue
        seen[href] = None
    page.links = list(seen)
    page.nofollow_links = nofollow_links

    # Links inside <noscript> are real fallbacks, so the invisible parts are dropped only now.
    tree.strip_tags(_INVISIBLE, recursive=True)
    root = tree.body or tree.root
    page.text = _collapse(root.text(separator=" ")) if root is not None else ""
    return page


class _Collector(HTMLParser):
    """The fields `extract_lexbor` finds, from Python's tokenizer: the second opinion when lexbor fails."""

    def __init__(self, token: str) -> None:
        super().__init__(convert_charrefs=True)
        self.token = token
        self.page = Page(parser="stdlib")
        self.robots: list[str] = []
        self.links: dict[str, None] = {}
        self.text: list[str] = []
        self.title: list[str] | None = None  # collecting the first <title>'s text while not None
        self.invisible = 0  # depth inside script/style/noscript/template: no visible text there

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in reversed(attrs)}  # the first of repeated attributes wins, as in HTML
        page = self.page
        if tag in _INVISIBLE:
            self.invisible += 1
        elif tag == "title" and page.title is None and self.title is None:
            self.title = []
        elif tag == "meta" and a.get("name") is not None and a.get("content") is not None:
            name = (a["name"] or "").strip().lower()
            content = a["content"] or ""
            if name == "robots" or (self.token and name == self.token):
                self.robots.extend(_robots_tokens(content))
            elif name == "description" and page.description is None:
                page.description = _collapse(content, MAX_FIELD_CHARS)
        elif tag == "link" and a.get("href") is not None and page.canonical is None:
            if "canonical" in (a.get("rel") or "").lower().split():
                page.canonical = (a["href"] or "").strip(_URL_STRIP) or None
        elif tag == "base" and a.get("href") is not None and page.base_href is None:
            page.base_href = (a["href"] or "").strip(_URL_STRIP) or None
        elif tag in ("a", "area") and a.get("href"):
            href = (a["href"] or "").strip(_URL_STRIP)
            if not _keep_href(href):
                return
            rel = a.get("rel")
            if rel and "nofollow" in rel.lower().split():
                page.nofollow_links += 1
            else:
                self.links[href] = None

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE and self.invisible:
            self.invisible -= 1
        elif tag == "title" and self.title is not None:
            self.page.title = _collapse("".join(self.title), MAX_FIELD_CHARS)
            self.title = None

    def handle_data(self, data: str) -> None:
        if self.title is not None:
            self.title.append(data)
        elif not self.invisible:
            self.text.append(data)

    def result(self) -> Page:
        page = self.page
        if self.title is not None:  # an unclosed <title> still names the page
            page.title = _collapse("".join(self.title), MAX_FIELD_CHARS)
        if self.robots:
            merged = list(dict.fromkeys(self.robots))
            page.meta_robots = ", ".join(merged)
            page.noindex = "noindex" in merged or "none" in merged
            page.nofollow = "nofollow" in merged or "none" in merged
        page.links = list(self.links)
        page.text = _collapse(" ".join(self.text))
        return page


def extract_stdlib(html: str, token: str) -> Page:
    """The fallback extraction, with Python's `html.parser` (pure Python, no tree: depth costs nothing)."""
    collector = _Collector(token)
    collector.feed(html)
    collector.close()
    return collector.result()


#: The parsers `extract` tries, in order (the failure matrix's `parse_error` row).
PARSERS: tuple[Parser, ...] = (extract_lexbor, extract_stdlib)


_ATTR = r"""\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))"""
_LINK_TAG = re.compile(r"<(?:a|area)\s[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"\bhref" + _ATTR, re.IGNORECASE)
_REL = re.compile(r"\brel" + _ATTR, re.IGNORECASE)


def _attr_value(m: re.Match[str]) -> str:
    value = next(g for g in m.groups() if g is not None)
    return htmllib.unescape(value) if "&" in value else value


def scan_links_fallback(text: str) -> list[str]:
    """Raw hrefs of `<a>`/`<area>` tags found by a plain regex scan; for when the HTML parser fails.

    Applies the same filters as `extract` (empty, fragment-only, `javascript:`, rel=nofollow).
    """
    seen: dict[str, None] = {}
    for tag in _LINK_TAG.finditer(text):
        m = _HREF.search(tag.group())
        if m is None:
            continue
        href = _attr_value(m).strip(_URL_STRIP)
        if not _keep_href(href):
            continue
        rel = _REL.search(tag.group())
        if rel is not None and "nofollow" in _attr_value(rel).lower().split():
            continue
        seen[href] = None
    return list(seen)
