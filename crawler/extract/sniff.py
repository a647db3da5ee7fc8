"""Whether a body is HTML (`looks_like_html`).

A declared HTML type counts unless the bytes are binary; an untyped or generic one counts when the first
bytes sniff as HTML (WHATWG MIME sniffing).
"""

from __future__ import annotations

import codecs

from crawler.extract.charset import BOMS

__all__ = ["looks_like_html"]

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
    for bom, enc in BOMS[1:]:
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
