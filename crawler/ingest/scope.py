"""Scope and crawler-trap rules: decide whether a normalized URL may be queued at a given depth."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from crawler.core.config import Config
from crawler.core.urlnorm import host_key, normalize, normalize_host

OUT_OF_SCOPE = "out_of_scope"
MAX_DEPTH = "max_depth"
URL_TOO_LONG = "url_too_long"
REPEATED_SEGMENTS = "repeated_segments"
TOO_MANY_SEGMENTS = "too_many_segments"

REASONS: tuple[str, ...] = (OUT_OF_SCOPE, MAX_DEPTH, URL_TOO_LONG, REPEATED_SEGMENTS, TOO_MANY_SEGMENTS)

_HOST_CACHE_LIMIT = 1 << 16


def _strip_port(host: str) -> str:
    """Host part of a `host_key` (`a.test:8080` -> `a.test`, `[::1]:81` -> `[::1]`)."""
    if host.endswith("]"):
        return host
    colon = host.rfind(":")
    return host[:colon] if colon >= 0 else host


def _path(url: str) -> str:
    """Path of a normalized URL (no query)."""
    start = url.find("/", 7 if url[4] == ":" else 8)
    if start < 0:
        return "/"
    end = url.find("?", start)
    return url[start:end] if end >= 0 else url[start:]


class Scope:
    """Which URLs may be queued: allowed domains (with subdomains), depth, length and trap limits."""

    __slots__ = (
        "_domains",
        "_host_ok",
        "max_depth",
        "max_path_segments",
        "max_repeated_segments",
        "max_url_length",
    )

    def __init__(
        self,
        allow_domains: Sequence[str],
        *,
        max_depth: int | None,
        max_url_length: int,
        max_repeated_segments: int,
        max_path_segments: int | None = None,
    ) -> None:
        self._domains = frozenset(normalize_host(_strip_port(d.strip())) for d in allow_domains)
        self._host_ok: dict[str, bool] = {}
        self.max_depth = max_depth
        self.max_url_length = max_url_length
        self.max_repeated_segments = max_repeated_segments
        self.max_path_segments = max_path_segments

    @classmethod
    def for_seeds(cls, seed_urls: Iterable[str], **limits: Any) -> Scope:
        """A scope allowing each seed's host (port ignored) and its subdomains; raises CrawlError."""
        return cls(seed_domains(seed_urls), **limits)

    @property
    def allow_domains(self) -> frozenset[str]:
        """The normalized allowed domains (empty: everything is in scope)."""
        return self._domains

    def host_allowed(self, host: str) -> bool:
        """True when `host` (a host_key, port ignored) equals or is a subdomain of an allowed domain."""
        if not self._domains:
            return True
        ok = self._host_ok.get(host)
        if ok is None:
            ok = self._match(_strip_port(host))
            if len(self._host_ok) >= _HOST_CACHE_LIMIT:
                self._host_ok.clear()
            self._host_ok[host] = ok
        return ok

    def _match(self, name: str) -> bool:
        # Walk the suffixes at label boundaries so the cost is per label, not per allowed domain.
        domains = self._domains
        if name in domains:
            return True
        if name.endswith("]"):
            return False  # IPv6 literals have no subdomains
        dot = name.find(".")
        while dot >= 0:
            if name[dot + 1 :] in domains:
                return True
            dot = name.find(".", dot + 1)
        return False

    def reason(
        self,
        url: str,
        host: str,
        depth: int,
        *,
        max_url_length: int | None = None,
        max_repeated_segments: int | None = None,
        max_path_segments: int | None = None,
    ) -> str | None:
        """None when the normalized `url` (politeness key `host`) may be queued, else a reason constant.

        The keyword limits override this scope's own for one call (per-domain settings).
        """
        if self._domains and not self.host_allowed(host):
            return OUT_OF_SCOPE
        if self.max_depth is not None and depth > self.max_depth:
            return MAX_DEPTH
        if len(url) > (max_url_length or self.max_url_length):
            return URL_TOO_LONG
        segs = _path(url)[1:].split("/")
        limit = max_repeated_segments or self.max_repeated_segments
        if len(segs) > limit and _repeats(segs, limit):
            return REPEATED_SEGMENTS
        most = max_path_segments or self.max_path_segments
        if most is not None and len(segs) > most and len(segs) - segs.count("") > most:
            return TOO_MANY_SEGMENTS
        return None


def _repeats(segs: list[str], limit: int) -> bool:
    """True when a non-empty segment occurs more than `limit` times anywhere in the path.

    Counting occurrences anywhere (not only back to back) also catches every repeated run of
    segments (`/a/b/a/b/a/b`: each segment of the run repeats as often as the run) and spaced
    repeats from relative-link loops (`/en/x/en/y/en/z`).
    """
    if len(set(segs)) == len(segs):
        return False
    counts: dict[str, int] = {}
    for s in segs:
        if s:
            n = counts.get(s, 0) + 1
            if n > limit:
                return True
            counts[s] = n
    return False


def seed_domains(seed_urls: Iterable[str]) -> list[str]:
    """The domains seeds put in scope: each seed's host, port ignored (its subdomains follow); raises CrawlError."""
    return sorted({_strip_port(host_key(normalize(u))) for u in seed_urls})


def make_scope(cfg: Config, domains: Sequence[str]) -> Scope:
    """The crawl's scope: configured `allow_domains`, else `domains` (the seeds' hosts); trap limits from config."""
    c = cfg.crawl
    return Scope(
        # Nothing configured or submitted yet: nothing is in scope (an empty Scope would allow everything).
        list(c.allow_domains) or sorted(domains) or ["invalid."],
        max_depth=None,  # depth is judged per host by ingest (domain overrides)
        max_url_length=c.max_url_length,
        max_repeated_segments=c.max_repeated_segments,
        max_path_segments=c.max_path_segments,
    )
