"""HTML decoding, sniffing and extraction (links, robots meta, title, visible text) with lexbor.

Charset decision (`decode_html`): BOM, then the Content-Type `charset=` (a UTF-16 label on a body
without NUL bytes is ignored), then a `<meta>` in the first 2 KiB, else UTF-8; decoding never raises
(`errors="replace"`). Labels follow the WHATWG Encoding spec where Python differs (latin-1/ascii mean
windows-1252, gb2312 means gbk, ...); labels Python does not know, or that are unsafe (utf-7, codec
tricks like `unicode_escape`), mean UTF-8. A declared legacy (non-Unicode) charset is overridden by
UTF-8 when the body contains non-ASCII bytes and is *valid* UTF-8: legacy-encoded text practically
never forms valid multi-byte UTF-8 sequences by accident, while servers mislabelling UTF-8 pages as
iso-8859-1 is common.
"""

from __future__ import annotations

import codecs
import html as htmllib
import re
from dataclasses import dataclass, field
from functools import lru_cache

from selectolax.lexbor import LexborHTMLParser

from crawler.core.errors import CrawlError, ErrorType

__all__ = ["Page", "decode_html", "extract", "looks_like_html", "scan_links_fallback"]

MAX_FIELD_CHARS = 1000  # cap for title and description

# ---------------------------------------------------------------------------------------------
# Decoding

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Python codec names (after codecs.lookup) we accept, mapped to the decoder the WHATWG Encoding
# spec prescribes for them. Anything else is treated as unknown, i.e. UTF-8.
_ALLOWED: dict[str, str] = {
    "utf-8": "utf-8",
    "utf-16-le": "utf-16-le",
    "utf-16-be": "utf-16-be",
    "utf-16": "utf-16-le",
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "latin-1": "cp1252",
    "cp1252": "cp1252",
    "cp866": "cp866",
    "cp874": "cp874",
    "tis-620": "cp874",
    "iso8859-11": "cp874",
    "koi8-r": "koi8-r",
    "koi8-u": "koi8-u",
    "mac-roman": "mac-roman",
    "mac-cyrillic": "mac-cyrillic",
    "gb2312": "gbk",
    "gbk": "gbk",
    "gb18030": "gb18030",
    "big5": "big5hkscs",
    "big5hkscs": "big5hkscs",
    "euc_jp": "euc_jp",
    "iso2022_jp": "iso2022_jp",
    "shift_jis": "cp932",
    "cp932": "cp932",
    "euc_kr": "cp949",
    "cp949": "cp949",
    **{f"cp125{i}": f"cp125{i}" for i in range(9)},
    **{f"iso8859-{i}": f"iso8859-{i}" for i in (2, 3, 4, 5, 6, 7, 8, 10, 13, 14, 15, 16)},
}
# Labels WHATWG knows but Python spells differently (codecs.lookup would fail on them).
_EXTRA_LABELS: dict[str, str] = {
    "windows-874": "cp874",
    "x-mac-cyrillic": "mac-cyrillic",
    "x-mac-roman": "mac-roman",
    "iso-8859-8-i": "iso8859-8",
    "unicode-1-1-utf-8": "utf-8",
    "x-sjis": "cp932",
    "ks_c_5601-1987": "cp949",
    "x-gbk": "gbk",
}
_UNICODE = frozenset({"utf-8", "utf-16-le", "utf-16-be"})

_CT_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([^\s"';,]+)""", re.IGNORECASE)
# Both `<meta charset=x>` and `<meta http-equiv=content-type content="...; charset=x">`.
_META_CHARSET = re.compile(rb"""<meta\s[^>]*?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)


@lru_cache(maxsize=256)
def _resolve_label(label: str) -> str | None:
    """Python decoder for a charset label, or None when unknown or unsafe."""
    label = label.strip().strip("\"'").lower()
    if label in _EXTRA_LABELS:
        return _EXTRA_LABELS[label]
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError):
        return None
    return _ALLOWED.get(name)


def _charset_from_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = _CT_CHARSET.search(content_type)
    return _resolve_label(m.group(1)) if m else None


def _charset_from_meta(body: bytes) -> str | None:
    m = _META_CHARSET.search(body, 0, 2048)
    if not m:
        return None
    enc = _resolve_label(m.group(1).decode("ascii", "replace"))
    # A meta tag readable as ASCII proves the document is not UTF-16 (WHATWG rule).
    if enc in ("utf-16-le", "utf-16-be"):
        return "utf-8"
    return enc


def decode_html(body: bytes, content_type: str | None) -> str:
    """Decode an HTML body: BOM, then Content-Type charset, then `<meta>` charset, else UTF-8."""
    for bom, enc in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(enc, "replace")
    enc = _charset_from_content_type(content_type)
    if enc in ("utf-16-le", "utf-16-be") and b"\x00" not in body[:1024]:
        # UTF-16 markup is full of NUL bytes (`<` is 3C 00); a body without any is not UTF-16, whatever
        # the header says, and decoding it as such would turn the whole page into CJK noise.
        enc = None
    enc = enc or _charset_from_meta(body) or "utf-8"
    if enc == "utf-8" or (enc not in _UNICODE and body.isascii()):
        # Every allowed legacy encoding is ASCII-compatible, so pure-ASCII bodies decode the same.
        return body.decode("utf-8", "replace")
    if enc not in _UNICODE:
        try:
            return body.decode("utf-8")  # mislabelled UTF-8; see the module docstring
        except UnicodeDecodeError:
            pass
    return body.decode(enc, "replace")


# ---------------------------------------------------------------------------------------------
# Sniffing

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_SNIFF_TYPES = frozenset({"", "text/plain", "application/octet-stream", "unknown/unknown", "*/*"})
# WHATWG MIME sniffing "HTML" patterns; each must be followed by a space or ">".
_HTML_PREFIXES: tuple[bytes, ...] = (
    b"<!doctype html",
    b"<html",
    b"<head",
    b"<script",
    b"<iframe",
    b"<h1",
    b"<div",
    b"<font",
    b"<table",
    b"<a",
    b"<style",
    b"<title",
    b"<b",
    b"<body",
    b"<br",
    b"<p",
    b"<!--",
)
_TAG_END = frozenset(b" \t\n\r\x0c>")
_MAGIC: tuple[bytes, ...] = (
    b"\x89PNG",
    b"GIF87a",
    b"GIF89a",
    b"\xff\xd8\xff",
    b"%PDF-",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ",
    b"(\xb5/\xfd",
    b"RIFF",
    b"OggS",
    b"ID3",
    b"\x7fELF",
    b"wOFF",
    b"wOF2",
    b"%!PS",
    b"\x00\x00\x01\x00",
)
# WHATWG "binary data bytes": C0 controls other than TAB, LF, FF, CR and ESC.
_BINARY_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_SNIFF_LEN = 512


def _looks_binary(head: bytes) -> bool:
    if head.startswith(_MAGIC):
        return True
    if b"\x00" in head:
        return True
    controls = len(head) - len(head.translate(None, _BINARY_BYTES))
    # A stray control byte happens in real pages; a few percent of them does not.
    return controls * 32 > len(head)


def _sniffs_as_html(head: bytes) -> bool:
    start = head.lstrip(b" \t\n\r\x0c")[:16].lower()
    for prefix in _HTML_PREFIXES:
        if start.startswith(prefix):
            rest = start[len(prefix) : len(prefix) + 1]
            if prefix == b"<!--" or not rest or rest[0] in _TAG_END:
                return True
    return False


def looks_like_html(body: bytes, content_type: str | None) -> bool:
    """True if the body should be parsed as HTML: declared (and not binary) or sniffed as HTML."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    head = body[:_SNIFF_LEN]
    for bom, enc in _BOMS[1:]:
        if head.startswith(bom):
            # UTF-16 is full of NUL bytes; sniff its ASCII-range transcoding instead.
            head = head[len(bom) :].decode(enc, "replace").encode("ascii", "replace")
            break
    else:
        if head.startswith(codecs.BOM_UTF8):
            head = head[len(codecs.BOM_UTF8) :]
    if mime in _HTML_TYPES:
        return not _looks_binary(head)
    if mime in _SNIFF_TYPES:
        return _sniffs_as_html(head) and not _looks_binary(head)
    return False


# ---------------------------------------------------------------------------------------------
# Extraction


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


def extract(html: str, robots_token: str = "") -> Page:
    """Parse `html` with lexbor; raises `CrawlError(PARSE_ERROR)` if the parser itself fails."""
    try:
        return _extract(html, robots_token.strip().lower())
    except CrawlError:
        raise
    except Exception as exc:  # lexbor failures surface as assorted exception types
        raise CrawlError(ErrorType.PARSE_ERROR, f"HTML parser failed: {exc!r}") from exc


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


def _extract(html: str, token: str) -> Page:
    tree = LexborHTMLParser(_limit_depth(html))
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
