"""Which scope or trap rule skipped a URL, in words and numbers (`crawler explain`).

The decision is `Ingest.reason`'s (the one scope authority); this only says which setting it applied
and by how much the URL exceeded it, from the same per-host settings (`Config.for_host`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from crawler.core.config import Config
from crawler.core.errors import ErrorType
from crawler.core.ports import port_refusal
from crawler.ingest.scope import (
    MAX_DEPTH,
    OUT_OF_SCOPE,
    REPEATED_SEGMENTS,
    TOO_MANY_SEGMENTS,
    URL_TOO_LONG,
    Scope,
)

__all__ = ["scope_detail"]


def _segments(url: str) -> list[str]:
    """The path segments of a normalized URL (as the trap rules count them)."""
    path = url.split("://", 1)[1]
    slash = path.find("/")
    path = path[slash:] if slash >= 0 else "/"
    return path.partition("?")[0][1:].split("/")


def scope_detail(reason: str, url: str, host: str, depth: int | None, cfg: Config, scope: Scope) -> dict[str, Any]:
    """`{"reason", "rule", "setting", "limit", "value"}` for a reason `Ingest.reason` gave."""
    limits = cfg.for_host(host)
    out: dict[str, Any] = {"reason": reason, "setting": None, "limit": None, "value": None, "depth": depth}
    if reason == ErrorType.BAD_PORT.value:
        out.update(setting="allow_ports", rule=port_refusal(host, limits.allow_ports))
    elif reason == MAX_DEPTH:
        out.update(
            setting="max_depth",
            limit=limits.max_depth,
            value=depth,
            rule=f"depth {depth} is beyond max_depth {limits.max_depth}",
        )
    elif reason == OUT_OF_SCOPE:
        domains = ", ".join(sorted(scope.allow_domains))
        out.update(setting="allow_domains", rule=f"{host} is not under an allowed domain ({domains})")
    elif reason == URL_TOO_LONG:
        out.update(
            setting="max_url_length",
            limit=limits.max_url_length,
            value=len(url),
            rule=f"{len(url)} characters, more than max_url_length {limits.max_url_length}",
        )
    elif reason == REPEATED_SEGMENTS:
        segment, count = Counter(s for s in _segments(url) if s).most_common(1)[0]
        out.update(
            setting="max_repeated_segments",
            limit=limits.max_repeated_segments,
            value=count,
            rule=f"path segment {segment!r} appears {count} times, "
            f"more than max_repeated_segments {limits.max_repeated_segments}",
        )
    elif reason == TOO_MANY_SEGMENTS:
        count = sum(1 for s in _segments(url) if s)
        out.update(
            setting="max_path_segments",
            limit=limits.max_path_segments,
            value=count,
            rule=f"{count} path segments, more than max_path_segments {limits.max_path_segments}",
        )
    else:
        out["rule"] = reason
    return out
