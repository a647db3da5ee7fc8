"""Crawl counters, kept in memory, committed with the frontier and written to `stats.json`."""

from __future__ import annotations

import collections
import resource
import time
from enum import StrEnum
from typing import Any


class Counter(StrEnum):
    """Every counter a crawl keeps; `stats.json` lists each one, so none can be dropped silently."""

    PAGES = "pages"  # records written
    FETCHED = "fetched"  # HTTP responses received (any status), robots.txt excluded
    FAILED = "failed"  # records with an error
    ROBOTS_DISALLOWED = "robots_disallowed"
    DUPLICATE_URLS = "duplicate_urls"  # links dropped because the URL was already seen
    NEAR_DUPLICATES = "near_duplicates"
    BYTES = "bytes"  # decoded body bytes
    RETRIES = "retries"
    DEAD_LETTERS = "dead_letters"
    REDIRECTS = "redirects"
    RENDER_SUBREQUESTS = "render_subrequests"  # requests a rendering page made through the host's slot
    RENDER_REFUSED = "render_refused"  # requests of a rendering page that robots.txt forbids
    CONDITIONAL = "conditional"  # page requests sent with validators (a recrawl's If-None-Match / If-Modified-Since)
    UNCHANGED = "unchanged"  # 304 answers to them: recorded with `unchanged: true`, not parsed again
    SITEMAPS = "sitemaps"  # sitemap records written (a subset of pages)
    SITEMAP_URLS = "sitemap_urls"  # URLs read from sitemaps (before scope and dedup)


#: The status classes records are counted by; `error` is a record without an HTTP response.
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")


def status_class(status: int | None) -> str:
    """`2xx` for 200..299 and so on; `error` when no response was received (or a status outside 200..599)."""
    if status is None or not 200 <= status <= 599:
        return "error"
    return STATUS_CLASSES[status // 100 - 2]


class Stats:
    """Counters plus skipped-URL reasons and error types; `elapsed` survives resumes so pages/s stays honest."""

    def __init__(self) -> None:
        self.c: collections.Counter[Counter] = collections.Counter()
        self.skipped: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        # Records written and their body bytes, by status class (keys from STATUS_CLASSES).
        self.pages_by_status: collections.Counter[str] = collections.Counter()
        self.bytes_by_status: collections.Counter[str] = collections.Counter()
        self._elapsed_before = 0.0
        self._started = time.monotonic()

    def incr(self, name: Counter, n: int = 1) -> None:
        """Add to a counter."""
        self.c[name] += n

    def skip(self, reason: str, n: int = 1) -> None:
        """Count a URL skipped before queueing, by reason (out_of_scope, max_depth, ...)."""
        self.skipped[reason] += n

    def error(self, error_type: str) -> None:
        """Count a record's error by type."""
        self.errors[error_type] += 1

    def page(self, status: int | None, nbytes: int) -> None:
        """Count a written record by its status class, with its body bytes."""
        cls = status_class(status)
        self.pages_by_status[cls] += 1
        self.bytes_by_status[cls] += nbytes

    @property
    def elapsed(self) -> float:
        """Seconds spent crawling over all runs of this output folder."""
        return self._elapsed_before + (time.monotonic() - self._started)

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        """A JSON-ready view of all counters."""
        elapsed = self.elapsed
        out: dict[str, Any] = {name.value: self.c[name] for name in Counter}
        out["errors_by_type"] = dict(self.errors)
        out["skipped"] = dict(self.skipped)
        out["pages_by_status"] = dict(self.pages_by_status)
        out["bytes_by_status"] = dict(self.bytes_by_status)
        out["elapsed_s"] = round(elapsed, 3)
        out["pages_per_s"] = round(self.c[Counter.PAGES] / elapsed, 2) if elapsed > 0 else 0.0
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out.update(extra)
        return out

    def restore(self, data: dict[str, Any]) -> None:
        """Load counters saved by `snapshot` (on resume)."""
        for name in Counter:
            self.c[name] = int(data.get(name.value, 0))
        self.errors = collections.Counter({k: int(v) for k, v in data.get("errors_by_type", {}).items()})
        self.skipped = collections.Counter({k: int(v) for k, v in data.get("skipped", {}).items()})
        self.pages_by_status = collections.Counter({k: int(v) for k, v in data.get("pages_by_status", {}).items()})
        self.bytes_by_status = collections.Counter({k: int(v) for k, v in data.get("bytes_by_status", {}).items()})
        self._elapsed_before = float(data.get("elapsed_s", 0.0))
        self._started = time.monotonic()
