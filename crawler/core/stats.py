"""Crawl counters, kept in memory, committed with the frontier and written to `stats.json`."""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

COUNTERS = (
    "pages",  # records written
    "fetched",  # HTTP responses received (any status), robots.txt excluded
    "failed",  # records with an error
    "robots_disallowed",
    "duplicate_urls",  # links dropped because the URL was already seen
    "near_duplicates",
    "bytes",  # decoded body bytes
    "retries",
    "dead_letters",
    "redirects",
)


class Stats:
    """Counters plus skipped-URL reasons; `elapsed` survives resumes so pages/s stays honest."""

    def __init__(self) -> None:
        self.c: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._elapsed_before = 0.0
        self._started = time.monotonic()

    def incr(self, name: str, n: int = 1) -> None:
        """Add to a counter."""
        self.c[name] += n

    def skip(self, reason: str, n: int = 1) -> None:
        """Count a URL skipped before queueing, by reason (out_of_scope, max_depth, ...)."""
        self.skipped[reason] += n

    @property
    def elapsed(self) -> float:
        """Seconds spent crawling over all runs of this output folder."""
        return self._elapsed_before + (time.monotonic() - self._started)

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        """A JSON-ready view of all counters."""
        elapsed = self.elapsed
        out: dict[str, Any] = {name: self.c[name] for name in COUNTERS}
        out["errors_by_type"] = dict(self.errors)
        out["skipped"] = dict(self.skipped)
        out["elapsed_s"] = round(elapsed, 3)
        out["pages_per_s"] = round(self.c["pages"] / elapsed, 2) if elapsed > 0 else 0.0
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out.update(extra)
        return out

    def restore(self, data: dict[str, Any]) -> None:
        """Load counters saved by `snapshot` (on resume)."""
        for name in COUNTERS:
            self.c[name] = int(data.get(name, 0))
        self.errors = Counter({k: int(v) for k, v in data.get("errors_by_type", {}).items()})
        self.skipped = Counter({k: int(v) for k, v in data.get("skipped", {}).items()})
        self._elapsed_before = float(data.get("elapsed_s", 0.0))
        self._started = time.monotonic()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` so a reader never sees a half-written file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)
