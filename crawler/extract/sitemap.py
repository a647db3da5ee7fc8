"""Sitemap files (sitemaps.org): XML `<urlset>` and `<sitemapindex>`, plain text, RSS 2.0 and Atom, gzipped or not.

Built for hostile input. The body is read as a stream: gzip (recognized by its magic bytes, whatever the
file is called) is inflated in bounded steps and XML is fed to expat piece by piece, so no tree is built
and at most `max_bytes` of uncompressed text is ever produced (a decompression bomb stops there). A
document type declaration is refused before anything of it is parsed: sitemaps have none, and without
one there are no entities to expand (billion laughs) and no external entities to fetch (XXE). At most
`max_urls` entries are read (the protocol's 50,000). Whatever stops the reading, the entries read so far
are returned with a typed error, never an exception.
"""

from __future__ import annotations

import email.utils
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from xml.parsers import expat

from crawler.core.errors import CrawlError, ErrorType

__all__ = ["SitemapEntry", "SitemapFile", "parse_lastmod", "parse_sitemap"]

SitemapKind = Literal["urlset", "index", "text", "rss", "atom"]

MAX_URLS = 50_000
MAX_BYTES = 50 * 2**20
#: Uncompressed bytes handed to the parser per step.
STEP = 256 * 1024
#: Text kept of one element (a `<loc>`); longer values are no usable URL.
MAX_TEXT = 8192
_GZIP_MAGIC = b"\x1f\x8b"
_ATOM = "http://www.w3.org/2005/Atom"
_SEP = " "  # expat's namespace separator: "uri local"


@dataclass(slots=True, frozen=True)
class SitemapEntry:
    """One listed URL (as written, not yet normalized) and its `<lastmod>` in Unix seconds."""

    loc: str
    lastmod: float | None = None


@dataclass(slots=True)
class SitemapFile:
    """What a sitemap file held: page URLs (`urls`) or, for an index, sitemap URLs (`sitemaps`).

    `kind` is None when the body is no sitemap at all (an HTML page, another XML vocabulary); `error`
    says what stopped the reading (the entries before it are kept).
    """

    kind: SitemapKind | None = None
    urls: list[SitemapEntry] = field(default_factory=list)
    sitemaps: list[SitemapEntry] = field(default_factory=list)
    error: CrawlError | None = None

    @property
    def entries(self) -> int:
        """How many entries were read."""
        return len(self.urls) + len(self.sitemaps)


class _Stop(Exception):
    """Raised from an expat handler to end the parse with `error`."""

    def __init__(self, error: CrawlError) -> None:
        super().__init__(error.message)
        self.error = error


def parse_lastmod(text: str) -> float | None:
    """A W3C Datetime (`2024`, `2024-05`, `2024-05-01`, `2024-05-01T12:00:00+02:00`, ...) as Unix seconds, else None."""
    s = text.strip()
    if not 4 <= len(s) <= 40:
        return None
    try:
        if len(s) == 4:
            when = datetime(int(s), 1, 1, tzinfo=UTC)
        elif len(s) == 7 and s[4] == "-":
            when = datetime(int(s[:4]), int(s[5:]), 1, tzinfo=UTC)
        else:
            when = datetime.fromisoformat(s[:-1] + "+00:00" if s[-1] in "Zz" else s)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
        return when.timestamp()
    except (ValueError, OverflowError):
        return None


def _rfc822(text: str) -> float | None:
    """An RSS `pubDate` as Unix seconds, else None."""
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp()
    except (ValueError, OverflowError):
        return None


def _inflate(body: bytes, max_bytes: int, out: SitemapFile) -> Iterator[bytes]:
    """The gunzipped body in steps of at most STEP bytes, stopping (with `out.error`) past `max_bytes`."""
    d = zlib.decompressobj(31)  # gzip framing only
    data = body
    total = 0
    try:
        while data:
            chunk = d.decompress(data, STEP)
            data = d.unconsumed_tail
            if d.eof and d.unused_data.startswith(_GZIP_MAGIC):  # a multi-member file: go on with the next
                data, d = d.unused_data, zlib.decompressobj(31)
            total += len(chunk)
            if total > max_bytes:
                out.error = CrawlError(ErrorType.TOO_LARGE, f"sitemap over {max_bytes} bytes uncompressed")
                return
            if chunk:
                yield chunk
        rest = d.flush()  # what zlib still holds once all input is consumed: at most its window
        if total + len(rest) > max_bytes:
            out.error = CrawlError(ErrorType.TOO_LARGE, f"sitemap over {max_bytes} bytes uncompressed")
            return
        if rest:
            yield rest
        if not d.eof:
            out.error = CrawlError(ErrorType.SITEMAP_ERROR, "gzip stream cut short")
    except zlib.error as exc:
        out.error = CrawlError(ErrorType.SITEMAP_ERROR, f"bad gzip data: {exc}")


def _pieces(body: bytes, max_bytes: int, out: SitemapFile) -> Iterator[bytes]:
    """The uncompressed body in steps, whether it came gzipped or not."""
    if body.startswith(_GZIP_MAGIC):
        yield from _inflate(body, max_bytes, out)
        return
    if len(body) > max_bytes:
        out.error = CrawlError(ErrorType.TOO_LARGE, f"sitemap over {max_bytes} bytes")
        body = body[:max_bytes]
    for i in range(0, len(body), STEP):
        yield body[i : i + STEP]


def parse_sitemap(body: bytes, *, max_urls: int = MAX_URLS, max_bytes: int = MAX_BYTES) -> SitemapFile:
    """Read a sitemap file (see the module docstring); never raises on bad input."""
    out = SitemapFile()
    pieces = _pieces(body, max_bytes, out)
    first = b""
    for piece in pieces:
        first = piece
        break
    start = first.lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"<") or start.startswith(b"\xff\xfe") or start.startswith(b"\xfe\xff"):
        _XmlReader(out, max_urls).read(first, pieces)
    elif first:
        _read_text(first, pieces, out, max_urls)
    if out.kind is None and out.error is None:
        out.error = CrawlError(ErrorType.SITEMAP_ERROR, "not a sitemap: empty, or no URL in it")
    return out


def _read_text(first: bytes, rest: Iterator[bytes], out: SitemapFile, max_urls: int) -> None:
    """A text sitemap: one absolute http(s) URL per line; other lines are ignored."""
    carry = b""
    for piece in _chain(first.removeprefix(b"\xef\xbb\xbf"), rest):
        lines = (carry + piece).split(b"\n")
        carry = lines.pop()
        if len(carry) > MAX_TEXT:  # no usable URL is that long: drop it rather than buffer it
            carry = b""
        if not _text_lines(lines, out, max_urls):
            return
    _text_lines([carry], out, max_urls)


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _text_lines(lines: list[bytes], out: SitemapFile, max_urls: int) -> bool:
    """Add the URL lines; False once `max_urls` is passed (with the error set)."""
    for raw in lines:
        line = raw.strip()
        if len(line) > MAX_TEXT or not line[:8].lower().startswith((b"http://", b"https://")):
            continue
        if len(out.urls) >= max_urls:
            out.error = CrawlError(ErrorType.SITEMAP_ERROR, f"more than {max_urls} URLs: the rest ignored")
            return False
        out.kind = "text"
        out.urls.append(SitemapEntry(line.decode("utf-8", "replace")))
    return True


#: Per XML form: the entry element, its depth (the root is 1), and its child fields read as text.
_ENTRY: dict[str, tuple[str, int]] = {
    "urlset": ("url", 2),
    "index": ("sitemap", 2),
    "atom": ("entry", 2),
    "rss": ("item", 3),
}
_FIELDS: dict[str, dict[str, str]] = {
    "urlset": {"loc": "loc", "lastmod": "lastmod"},
    "index": {"loc": "loc", "lastmod": "lastmod"},
    "atom": {"updated": "lastmod"},  # the URL is the href of <link rel="alternate">
    "rss": {"link": "loc", "pubDate": "pubdate"},
}
_ROOTS: dict[str, SitemapKind] = {"urlset": "urlset", "sitemapindex": "index", "rss": "rss"}


def _alternate(attrs: dict[str, str]) -> bool:
    """An Atom `<link>` that points at the entry's page."""
    return attrs.get("rel", "alternate") == "alternate" and bool(attrs.get("href"))


class _XmlReader:
    """Expat handlers for the XML forms; a field counts only at its place (`<urlset><url><loc>`), in the
    root element's namespace, so extension elements such as `<image:loc>` are not taken for entries."""

    def __init__(self, out: SitemapFile, max_urls: int) -> None:
        self.out = out
        self.max_urls = max_urls
        self.depth = 0
        self.ns = ""
        self.entry = ""
        self.entry_depth = 0
        self.fields: dict[str, str] = {}
        self.in_entry = False
        self.loc: str | None = None
        self.lastmod: float | None = None
        self.field = ""  # the field whose text is being collected, if any
        self.text: list[str] = []
        self.size = 0

    def read(self, first: bytes, rest: Iterator[bytes]) -> None:
        p = expat.ParserCreate(namespace_separator=_SEP)
        p.buffer_text = True
        # Nothing of a DTD is ever parsed: the first handler refuses it outright.
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._doctype
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._data
        out = self.out
        try:
            for piece in _chain(first, rest):
                p.Parse(piece, False)
            if out.error is None:  # the stream was not cut by a limit: the document must be complete
                p.Parse(b"", True)
        except _Stop as stop:
            out.error = stop.error
        except expat.ExpatError as exc:
            what = "not a sitemap" if out.kind is None else "malformed sitemap"
            message = f"{what}: {expat.ErrorString(exc.code)} at line {exc.lineno}"
            out.error = CrawlError(ErrorType.SITEMAP_ERROR, message)

    def _doctype(self, *_: object) -> None:
        raise _Stop(CrawlError(ErrorType.SITEMAP_ERROR, "document type declaration refused (sitemaps have none)"))

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        depth = self.depth
        ns, _, local = name.rpartition(_SEP)
        if depth == 1:
            self._root(ns, local)
        elif ns != self.ns:
            return
        elif not self.in_entry:
            if depth == self.entry_depth and local == self.entry:
                self.in_entry = True
                self.loc = self.lastmod = None
        elif depth == self.entry_depth + 1:
            field = self.fields.get(local)
            if field is not None:
                self.field, self.text, self.size = field, [], 0
            elif local == "link" and self.out.kind == "atom" and self.loc is None and _alternate(attrs):
                self.loc = attrs["href"].strip()[:MAX_TEXT] or None

    def _root(self, ns: str, local: str) -> None:
        kind = _ROOTS.get(local)
        if kind is None and local == "feed" and ns == _ATOM:
            kind = "atom"
        if kind is None:
            raise _Stop(CrawlError(ErrorType.SITEMAP_ERROR, f"not a sitemap: the document is <{local}>"))
        self.out.kind = kind
        self.ns = ns
        self.entry, self.entry_depth = _ENTRY[kind]
        self.fields = _FIELDS[kind]

    def _data(self, data: str) -> None:
        if self.field and self.size <= MAX_TEXT:
            self.text.append(data)
            self.size += len(data)

    def _end(self, name: str) -> None:
        depth = self.depth
        self.depth -= 1
        if not self.in_entry:
            return
        if depth == self.entry_depth:
            self.in_entry = False
            self._entry()
        elif depth == self.entry_depth + 1 and self.field:
            field, self.field = self.field, ""
            value = "".join(self.text).strip() if self.size <= MAX_TEXT else ""
            if field == "loc":
                self.loc = value or None
            elif field == "pubdate":
                self.lastmod = _rfc822(value)
            else:
                self.lastmod = parse_lastmod(value)

    def _entry(self) -> None:
        loc = self.loc
        if loc is None:
            return
        out = self.out
        if out.entries >= self.max_urls:
            raise _Stop(CrawlError(ErrorType.SITEMAP_ERROR, f"more than {self.max_urls} URLs: the rest ignored"))
        (out.sitemaps if out.kind == "index" else out.urls).append(SitemapEntry(loc, self.lastmod))
