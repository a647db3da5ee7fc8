"""A page's cache validators (RFC 9110 §8.8): what a recrawl sends back to ask "changed since?".

The store keeps them for fetched pages that had them; a recrawl's lease carries them to the fetcher,
which sends `If-None-Match` / `If-Modified-Since`, and a 304 answer is recorded as `unchanged`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Longer values are not kept: a validator is a short token or a date, and every stored byte is paid for
#: by every fetched page of a recrawlable crawl (a hostile server must not fill the store through them).
MAX_VALIDATOR_CHARS = 200


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_VALIDATOR_CHARS or not value.isascii() or not value.isprintable():
        return None
    return value


@dataclass(slots=True, frozen=True)
class Validators:
    """The `ETag` and `Last-Modified` of a page's last 2xx response (either may be None, not both)."""

    etag: str | None = None
    last_modified: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Validators | None:
        """The validators of a response (lower-case header names), or None when it has no usable one."""
        etag = _clean(headers.get("etag"))
        last_modified = _clean(headers.get("last-modified"))
        if etag is None and last_modified is None:
            return None
        return cls(etag, last_modified)

    @classmethod
    def of(cls, etag: str | None, last_modified: str | None) -> Validators | None:
        """Validators from stored values, or None when both are missing."""
        if etag is None and last_modified is None:
            return None
        return cls(etag, last_modified)

    def headers(self) -> dict[str, str]:
        """The conditional request headers these validators make."""
        out: dict[str, str] = {}
        if self.etag is not None:
            out["If-None-Match"] = self.etag
        if self.last_modified is not None:
            out["If-Modified-Since"] = self.last_modified
        return out
