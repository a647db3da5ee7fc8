"""The wire forms of what the Redis store keeps: URL hashes, queued-item payloads, robots.txt values,
`fetched` members and host limits as script arguments. Shared by the store and its read-only inspector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from xxhash import xxh3_64_hexdigest

from crawler.core.urlitem import UrlItem
from crawler.core.validators import Validators
from frontier.store import HostLimits, KeptRobots, Lease

__all__ = [
    "decode_robots",
    "encode_robots",
    "fetched_member",
    "items_json",
    "lease_of",
    "limit_args",
    "limits_json",
    "payload",
    "url_hash",
]


def url_hash(url: str) -> str:
    """The seen-set key suffix of a URL: xxh3-64 of its UTF-8 bytes, 16 hex digits."""
    return xxh3_64_hexdigest(url.encode("utf-8", "surrogatepass"))


def encode_robots(robots: KeptRobots) -> bytes:
    """The `robots:` key's value: `[status, location, fetched_at]` JSON, a newline, the body."""
    return orjson.dumps([robots.status, robots.location, robots.fetched_at]) + b"\n" + robots.body


def decode_robots(url: str, raw: bytes) -> KeptRobots:
    """`encode_robots` reversed (a value written without `fetched_at` reads as fetched at 0)."""
    head, _, body = raw.partition(b"\n")
    fields = orjson.loads(head)
    fetched_at = float(fields[2]) if len(fields) > 2 else 0.0
    return KeptRobots(url, int(fields[0]), fields[1], body, fetched_at)


def payload(item: UrlItem, attempts: int, validators: Validators | None = None) -> bytes:
    """An `items` payload (see `lease_of`); ordinary URLs carry only their four fields."""
    extras = item.extras()
    if validators is None and not extras:
        return orjson.dumps([item.url, item.host, item.depth, attempts])
    v = [None, None] if validators is None else [validators.etag, validators.last_modified]
    return orjson.dumps([item.url, item.host, item.depth, attempts, *v, *extras])


def lease_of(token: int, raw: bytes, expires_at: float) -> Lease:
    """A lease from an `items` payload: [url, host, depth, attempts], then [etag, last_modified] if recrawled
    (or null), then [kind, lastmod] for a sitemap or a URL a sitemap dated."""
    v = orjson.loads(raw)
    if len(v) == 4:
        return Lease(UrlItem(v[0], v[1], v[2], v[3]), token, expires_at)
    return Lease(UrlItem(v[0], v[1], v[2], v[3], *v[6:8]), token, expires_at, Validators.of(v[4], v[5]))


def fetched_member(item: UrlItem) -> str:
    """The `fetched` ZSET member of a page: "<depth> <host> <url>" (normalized URLs hold no spaces)."""
    return f"{item.depth} {item.host} {item.url}"


def limit_args(host: str, limits: HostLimits) -> list[Any]:
    """One host's limits as script arguments: host, concurrency, spacing, budget or ""."""
    return [host, int(limits.concurrency), float(limits.spacing), "" if limits.budget is None else int(limits.budget)]


def limits_json(limits: dict[str, HostLimits]) -> bytes:
    """Limits of new hosts for an add-type script: flat [host, concurrency, spacing, budget or -1, ...]."""
    flat: list[Any] = []
    for host, lim in limits.items():
        flat += [host, int(lim.concurrency), float(lim.spacing), -1 if lim.budget is None else int(lim.budget)]
    return orjson.dumps(flat)


def items_json(items: Sequence[UrlItem]) -> tuple[bytes, int]:
    """Items for an add-type script, deduplicated by URL: flat [url hash, host, item JSON, ...].

    Also returns how many duplicates within `items` were dropped.
    """
    batch: dict[str, UrlItem] = {}
    for item in items:
        batch.setdefault(url_hash(item.seen_key), item)
    flat: list[str] = []
    for h, item in batch.items():
        flat += [h, item.host, payload(item, item.attempts).decode()]
    return orjson.dumps(flat), len(items) - len(batch)
