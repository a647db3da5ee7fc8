"""The output record: one per URL that reached a final outcome, serialized in one place (`to_json`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson


def iso_utc(ts: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-28T02:13:37.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


@dataclass(slots=True)
class Record:
    """The fields of a `pages.jsonl` line, in output order (README's field table documents each)."""

    url: str
    final_url: str
    status: int | None = None
    content_type: str | None = None
    depth: int = 0
    fetched_at: str = ""
    elapsed_ms: float | None = None
    title: str | None = None
    description: str | None = None
    canonical: str | None = None
    meta_robots: str | None = None
    links: list[str] = field(default_factory=list)
    links_followed: bool = False
    links_cut: int = 0
    simhash: str | None = None
    text_chars: int = 0
    near_duplicate_of: str | None = None
    rendered: bool = False
    render_reason: str | None = None
    redirects: list[dict[str, Any]] = field(default_factory=list)
    redirect_to: str | None = None
    bytes: int = 0
    error: dict[str, str] | None = None
    attempts: int = 1
    dead_letter: bool = False
    warc: dict[str, Any] | None = None  # {"file", "offset", "length"} of the response's WARC record
    unchanged: bool = False  # a recrawl's conditional request was answered 304 Not Modified: not parsed again
    sitemap_urls: int | None = None  # a sitemap's record: the URLs it listed (pages: null)

    def to_json(self) -> bytes:
        """The record as one JSON line (newline included)."""
        return orjson.dumps(self, option=orjson.OPT_APPEND_NEWLINE)
