"""The distributed crawl's messages: leases dispatched to workers and outcomes sent back.

The frontier service claims leases from the store and pushes each to the inbox of the worker that owns
its host on the ring; workers send outcomes (with the links they found) back on one list, which the
frontier applies to the store. Messages are compact orjson arrays; key names are in
`frontier.redis.keys.ClusterKeys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from crawler.core.urlitem import UrlItem
from frontier.store import Lease, Outcome

RELEASE = "release"  # an outcome kind of the wire protocol only: give the lease back unfetched
LINKS = "links"  # a message of discovered links, grouped by depth, without a lease


def encode_lease(lease: Lease) -> bytes:
    """A lease as an inbox message (a sitemap's kind and a lastmod follow the fields only when set)."""
    it = lease.item
    return orjson.dumps([lease.token, lease.expires_at, it.url, it.host, it.depth, it.attempts, *it.extras()])


def decode_lease(raw: bytes | str) -> Lease:
    """The inverse of `encode_lease`."""
    token, expires_at, *fields = orjson.loads(raw)
    return Lease(UrlItem(*fields), int(token), float(expires_at))


def _link(item: UrlItem) -> list[object]:
    return [item.url, item.host, item.depth, *item.extras()]


def _item(link: list[Any]) -> UrlItem:
    url, host, depth, *extras = link
    return UrlItem(url, host, int(depth), 0, *extras)


def encode_outcome(outcome: Outcome | Lease, worker: str) -> bytes:
    """An outcome (or a bare lease to release) as a message on the outcomes list."""
    if isinstance(outcome, Lease):
        return orjson.dumps([worker, RELEASE, encode_lease(outcome).decode(), 0.0, 0.0, None, []])
    links = [_link(i) for i in outcome.links]
    return orjson.dumps(
        [
            worker,
            outcome.kind,
            encode_lease(outcome.lease).decode(),
            outcome.host_due,
            outcome.retry_at,
            outcome.error,
            links,
        ]
    )


def encode_links(items: Sequence[UrlItem], worker: str) -> bytes:
    """Discovered links as one message on the outcomes list."""
    return orjson.dumps([worker, LINKS, None, 0.0, 0.0, None, [_link(i) for i in items]])


def decode_outcome(raw: bytes | str) -> tuple[str, Outcome | Lease | list[UrlItem]]:
    """(worker id, Outcome), (worker id, Lease) for a release, or (worker id, links) for discovered links."""
    worker, kind, lease_raw, host_due, retry_at, error, links = orjson.loads(raw)
    items = [_item(link) for link in links]
    if kind == LINKS:
        return worker, items
    lease = decode_lease(lease_raw)
    if kind == RELEASE:
        return worker, lease
    return worker, Outcome(lease, kind, float(host_due), retry_at=float(retry_at), error=error, links=items)
