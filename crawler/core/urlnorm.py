"""URL normalization: resolve a link against its page and bring it to one canonical http(s) form.

Rules are RFC 3986 §5.2 (reference resolution) and the safe §6 normalizations, with WHATWG
behaviour where browsers and the RFC differ on real-world input:

* leading/trailing C0 controls and spaces are stripped, embedded tab/CR/LF removed, and `\\` before
  the query counts as `/` (browsers resolve `<a href="\\x">` to `/x`);
* `%` not followed by two hex digits is kept literally as `%25` (browser behaviour) rather than
  rejected, so sloppy links still reach the server they point at;
* hosts are percent-decoded, mapped with UTS #46 and IDNA-encoded per label (ASCII labels are kept
  as they are, so `my_host.example` stays valid as in browsers), and numeric IPv4 forms such as
  `0x7f.1` are rewritten to dotted decimal so address checks see the real address;
* `http:g` relative to an `http:` base resolves like `g` (RFC 3986 §5.2.2's compatibility mode).

Only `http` and `https` survive; everything else raises `CrawlError(ErrorType.INVALID_URL, ...)`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

import idna

from crawler.core.errors import CrawlError, ErrorType

DEFAULT_STRIP_PARAMS: tuple[str, ...] = (
    "utm_*",
    "gclid",
    "fbclid",
    "sessionid",
    "jsessionid",
    "phpsessid",
    "sid",
)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_CACHE_LIMIT = 1 << 16  # entries per cache; cleared wholesale when full (cheaper than LRU bookkeeping)

# Anything that needs the careful cleanup pass: surrounding/embedded whitespace, controls, backslash.
_NEEDS_CLEAN = re.compile(r"[\x00-\x20\x7f\\]").search
# RFC 3986 appendix B, but with the strict scheme grammar: `a b:c` is a relative path, as in browsers.
_SPLIT = re.compile(r"(?:([A-Za-z][A-Za-z0-9+.\-]*):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?").match
# Already-canonical components (no `%`, nothing to encode): the common case skips the rewrite.
_PATH_OK = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*").fullmatch
_QUERY_OK = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*").fullmatch
_PATH_FIX = re.compile(r"%[0-9A-Fa-f]{2}|[^A-Za-z0-9\-._~!$&'()*+,;=:@/]").sub
_QUERY_FIX = re.compile(r"%[0-9A-Fa-f]{2}|[^A-Za-z0-9\-._~!$&'()*+,;=:@/?]").sub
_HOST_OK = re.compile(r"[a-z0-9\-._~!$&'()*+,;=]+").fullmatch
_IPV4_TAIL = re.compile(r"[0-9]+|0x[0-9a-f]*").fullmatch
_PORT_OK = re.compile(r"[0-9]*").fullmatch
_HEX = re.compile(r"[0-9a-f]*").fullmatch
_OCT = re.compile(r"[0-7]+").fullmatch
_DEC = re.compile(r"[0-9]+").fullmatch
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def _invalid(message: str) -> CrawlError:
    return CrawlError(ErrorType.INVALID_URL, message)


class ParamStripper:
    """Removes query and `;name=value` path parameters whose name matches a glob (case-insensitive)."""

    __slots__ = ("_any", "_name", "_path_param", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: tuple[str, ...] = tuple(patterns)
        alts = "|".join(_glob_to_regex(p) for p in self.patterns) or "(?!)"
        # One search over the raw query rejects the common no-match case without splitting it.
        self._any = re.compile(rf"(?:^|&)(?:{alts})(?:[=&]|$)", re.IGNORECASE).search
        self._name = re.compile(rf"(?:{alts})", re.IGNORECASE).fullmatch
        self._path_param = re.compile(r";([^/;=]*)=[^/;]*")

    def matches(self, name: str) -> bool:
        """True when a parameter called `name` is to be removed."""
        return self._name(name) is not None

    def strip_query(self, query: str) -> str:
        """`query` (no leading `?`) without matching parameters; order of the rest is kept."""
        if self._any(query) is None:
            return query
        name_match = self._name
        parts = query.split("&")
        kept = [p for p in parts if p and name_match(p.partition("=")[0]) is None]
        if len(kept) + parts.count("") == len(parts):
            return query  # the quick search over-matched; leave the query byte-for-byte alone
        return "&".join(kept)

    def strip_path(self, path: str) -> str:
        """`path` without matching `;name=value` parameters (e.g. `;jsessionid=...`)."""
        if ";" not in path:
            return path
        name_match = self._name
        return self._path_param.sub(lambda m: "" if name_match(m.group(1)) else m.group(0), path)

    def __repr__(self) -> str:
        return f"ParamStripper({list(self.patterns)!r})"


def _glob_to_regex(pattern: str) -> str:
    """fnmatch-style glob as a regex fragment that never crosses a parameter boundary."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append("[^&=]*")
        elif c == "?":
            out.append("[^&=]")
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1  # a `]` first in the set is literal, as in fnmatch
            j = pattern.find("]", j)
            if j < 0:
                out.append(re.escape(c))
                continue
            body = pattern[i:j].replace("\\", "\\\\")
            i = j + 1
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append(f"[{body}]")
        else:
            out.append(re.escape(c))
    return "".join(out)


def _pct_fix(m: re.Match[str]) -> str:
    """Canonicalize one `%XX` escape or encode one character that may not appear literally."""
    t = m.group()
    if len(t) == 3:
        c = chr(int(t[1:], 16))
        return c if c in _UNRESERVED else t.upper()
    if t == "%":
        return "%25"
    o = ord(t)
    if o < 0x20 or o == 0x7F:
        raise _invalid(f"control character {t!r} in URL")
    try:
        return "".join([f"%{b:02X}" for b in t.encode("utf-8")])
    except UnicodeEncodeError:
        raise _invalid(f"unencodable character {t!r} in URL") from None


def _remove_dots(path: str) -> str:
    """RFC 3986 §5.2.4 on an absolute path."""
    segs = path[1:].split("/")
    out: list[str] = []
    for seg in segs:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    if segs[-1] in (".", ".."):
        out.append("")
    return "/" + "/".join(out)


def _ipv4_part(part: str) -> int:
    """One WHATWG IPv4 number: `0x` hex, leading-zero octal, or decimal."""
    if part.startswith("0x"):
        digits, radix, valid = part[2:], 16, _HEX
    elif len(part) > 1 and part[0] == "0":
        digits, radix, valid = part[1:], 8, _OCT
    else:
        digits, radix, valid = part, 10, _DEC
    if not valid(digits):
        raise _invalid(f"invalid IPv4 address part: {part!r}")
    digits = digits.lstrip("0")
    # Anything this long is out of range anyway; spares int() a huge string.
    return int(digits or "0", radix) if len(digits) <= 12 else 1 << 40


def _ipv4(labels: list[str]) -> str:
    """WHATWG IPv4 parser (1 to 4 parts) to dotted decimal."""
    if len(labels) > 4:
        raise _invalid("invalid IPv4 address: too many parts")
    nums = [_ipv4_part(p) for p in labels]
    if any(v > 255 for v in nums[:-1]) or nums[-1] >= 256 ** (5 - len(nums)):
        raise _invalid("invalid IPv4 address: part out of range")
    value = nums[-1]
    for i, v in enumerate(nums[:-1]):
        value += v << (8 * (3 - i))
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def normalize_host(host: str) -> str:
    """Canonical form of a host (no port): lower-case, IDNA A-labels, dotted IPv4, `[compressed IPv6]`."""
    if host.startswith("["):
        if not host.endswith("]"):
            raise _invalid(f"invalid IPv6 literal: {host!r}")
        inner = host[1:-1]
        if "%" in inner:
            raise _invalid("IPv6 zone identifiers are not allowed")
        try:
            return f"[{ipaddress.IPv6Address(inner).compressed}]"
        except ValueError:
            raise _invalid(f"invalid IPv6 literal: {host!r}") from None
    h = host
    try:
        if "%" in h:
            h = unquote_to_bytes(h).decode("utf-8")
        if not h.isascii():
            h = idna.uts46_remap(h, std3_rules=False, transitional=False)
            # Per label, so ASCII labels idna would reject (underscores) survive as in browsers.
            h = ".".join([lb if lb.isascii() else idna.alabel(lb).decode("ascii") for lb in h.split(".")])
    except (UnicodeError, ValueError):
        raise _invalid(f"invalid host: {host!r}") from None
    h = h.lower().rstrip(".")
    if not h:
        raise _invalid("empty host")
    if not _HOST_OK(h):
        raise _invalid(f"invalid character in host: {host!r}")
    labels = h.split(".")
    if _IPV4_TAIL(labels[-1]):
        return _ipv4(labels)
    if len(h) > 253:
        raise _invalid("host name longer than 253 characters")
    for lb in labels:
        if not lb:
            raise _invalid(f"empty label in host: {host!r}")
        if len(lb) > 63:
            raise _invalid(f"host label longer than 63 characters: {host!r}")
        if lb.startswith("xn--"):
            # Must decode to a valid non-ASCII label, as UTS #46 requires of an A-label.
            try:
                valid = not idna.ulabel(lb).isascii()
            except (UnicodeError, ValueError, IndexError):
                valid = False
            if not valid:
                raise _invalid(f"invalid punycode label in host: {host!r}")
    return h


def _authority(scheme: str, auth: str) -> str:
    """`host[:port]` from a raw authority: userinfo dropped, host canonical, default port dropped."""
    at = auth.rfind("@")
    if at >= 0:
        auth = auth[at + 1 :]  # credentials never survive normalization
    port = ""
    if auth.startswith("["):
        end = auth.find("]")
        if end < 0:
            raise _invalid(f"unterminated IPv6 literal: {auth!r}")
        rest = auth[end + 1 :]
        auth = auth[: end + 1]
        if rest:
            if rest[0] != ":":
                raise _invalid(f"junk after IPv6 literal: {rest!r}")
            port = rest[1:]
    else:
        colon = auth.rfind(":")
        if colon >= 0:
            auth, port = auth[:colon], auth[colon + 1 :]
    host = normalize_host(auth)
    if not port:
        return host
    digits = port.lstrip("0")
    if not _PORT_OK(port) or len(digits) > 5 or int(digits or "0") > 65535:
        raise _invalid(f"invalid port: {port!r}")
    number = int(digits or "0")
    return host if number == _DEFAULT_PORTS[scheme] else f"{host}:{number}"


_AUTH_CACHE: dict[str, dict[str, str]] = {"http": {}, "https": {}}
_BASE_CACHE: dict[str, tuple[str, str, str, str | None]] = {}


def _cached_authority(scheme: str, auth: str) -> str:
    cache = _AUTH_CACHE[scheme]
    hostport = cache.get(auth)
    if hostport is None:
        hostport = _authority(scheme, auth)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[auth] = hostport
    return hostport


def _base_parts(base: str) -> tuple[str, str, str, str | None]:
    """(scheme, host[:port], path, query) of the normalized base; pages repeat, so it is cached."""
    parts = _BASE_CACHE.get(base)
    if parts is None:
        try:
            url = normalize(base)
        except CrawlError as exc:
            raise _invalid(f"invalid base URL: {exc.message}") from None
        start = 7 if url[4] == ":" else 8
        slash = url.find("/", start)
        path, sep, query = url[slash:].partition("?")
        parts = (url[: start - 3], url[start:slash], path, query if sep else None)
        if len(_BASE_CACHE) >= 1024:
            _BASE_CACHE.clear()
        _BASE_CACHE[base] = parts
    return parts


def _clean(href: str) -> str:
    href = href.strip(_C0_AND_SPACE)
    if "\t" in href or "\n" in href or "\r" in href:
        href = href.replace("\t", "").replace("\n", "").replace("\r", "")
    if "\\" in href:
        end = len(href)
        for ch in "?#":
            i = href.find(ch)
            if 0 <= i < end:
                end = i
        href = href[:end].replace("\\", "/") + href[end:]
    return href


def normalize(href: str, base: str | None = None, strip: ParamStripper | None = None) -> str:
    """Resolve `href` against `base` and return the canonical http(s) URL, or raise `invalid_url`."""
    if _NEEDS_CLEAN(href):
        href = _clean(href)
    scheme, auth, path, query = _SPLIT(href).groups()
    if scheme is not None:
        scheme = scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise _invalid(f"scheme not allowed: {scheme}")
        if auth is None:
            if base is None or _base_parts(base)[0] != scheme:
                raise _invalid(f"missing host in {href!r}")
            scheme = None  # `http:g` against an http base: resolve `g` (RFC 3986 §5.2.2 compatibility)
    if base is None:
        if scheme is None:
            raise _invalid(f"relative URL without a base: {href!r}")
        hostport = _cached_authority(scheme, auth)
    elif auth is not None:
        if scheme is None:
            scheme = _base_parts(base)[0]
        hostport = _cached_authority(scheme, auth)
    else:
        scheme, hostport, base_path, base_query = _base_parts(base)
        if not path:
            path = base_path
            if query is None:
                query = base_query
        elif path[0] != "/":
            path = base_path[: base_path.rfind("/") + 1] + path
    if not _PATH_OK(path):
        path = _PATH_FIX(_pct_fix, path)
    if strip is not None and ";" in path:
        path = strip.strip_path(path)
    if "/." in path:
        path = _remove_dots(path)
    if not path:
        path = "/"
    if query:
        if not _QUERY_OK(query):
            query = _QUERY_FIX(_pct_fix, query)
        if strip is not None:
            query = strip.strip_query(query)
        if query:
            return f"{scheme}://{hostport}{path}?{query}"
    return f"{scheme}://{hostport}{path}"


def host_key(url: str) -> str:
    """Politeness key of a normalized URL: host, plus `:port` when the port is explicit."""
    start = 7 if url[4] == ":" else 8
    end = url.find("/", start)
    return url[start:end] if end >= 0 else url[start:]


def origin(url: str) -> str:
    """`scheme://host[:port]` of a normalized URL (robots.txt is per origin)."""
    end = url.find("/", 7 if url[4] == ":" else 8)
    return url[:end] if end >= 0 else url
