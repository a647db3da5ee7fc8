"""Decoding HTML bytes to text: the charset decision (`decode_html`).

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
import re
from functools import lru_cache

__all__ = ["BOMS", "decode_html"]

#: Byte-order marks and the encodings they announce (UTF-8 first).
BOMS: tuple[tuple[bytes, str], ...] = (
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
    for bom, enc in BOMS:
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
