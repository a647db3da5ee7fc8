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
from crawler.core.validators import Validators
from frontier.store import Lease, Outcome

RELEASE = "release"  # an outcome kind of the wire protocol only: give the lease back unfetched
LINKS = "links"  # a message of discovered links, grouped by depth, without a lease


def encode_lease(lease: Lease) -> bytes:
    """A lease as an inbox message; a recrawled URL's validators, then a sitemap's kind and a lastmod, ride at
    the end only when set (ordinary leases stay short; validator slots are null when only the latter are)."""
    it = lease.item
    msg = [lease.token, lease.expires_at, it.url, it.host, it.depth, it.attempts]
    v = lease.validators
    extras = it.extras()
    if v is not None or extras:
        msg += [None, None] if v is None else [v.etag, v.last_modified]
        msg += extras
    return orjson.dumps(msg)


def decode_lease(raw: bytes | str) -> Lease:
    """The inverse of `encode_lease`."""
    m = orjson.loads(raw)
    validators = Validators.of(m[6], m[7]) if len(m) > 6 else None
    return Lease(UrlItem(m[2], m[3], m[4], m[5], *m[8:10]), int(m[0]), float(m[1]), validators)


def _link(item: UrlItem) -> list[Any]:
    return [item.url, item.host, item.depth, *item.extras()]


def _item(link: list[Any]) -> UrlItem:
    url, host, depth, *extras = link
    return UrlItem(url, host, int(depth), 0, *extras)


def encode_outcome(outcome: Outcome | Lease, worker: str) -> bytes:
    """An outcome (or a bare lease to release) as a message on the outcomes list."""
    if isinstance(outcome, Lease):
        return orjson.dumps([worker, RELEASE, encode_lease(outcome).decode(), 0.0, 0.0, None, []])
    links = [_link(i) for i in outcome.links]
    msg = [
        worker,
        outcome.kind,
        encode_lease(outcome.lease).decode(),
        outcome.host_due,
        outcome.retry_at,
        outcome.error,
        links,
    ]
    v = outcome.validators
    if v is not None:  # a done page's ETag / Last-Modified, for the next recrawl
        msg += [v.etag, v.last_modified]
    return orjson.dumps(msg)


def encode_links(items: Sequence[UrlItem], worker: str) -> bytes:
    """Discovered links as one message on the outcomes list."""
    return orjson.dumps([worker, LINKS, None, 0.0, 0.0, None, [_link(i) for i in items]])


def decode_outcome(raw: bytes | str) -> tuple[str, Outcome | Lease | list[UrlItem]]:
    """(worker id, Outcome), (worker id, Lease) for a release, or (worker id, links) for discovered links."""
    m = orjson.loads(raw)
    worker, kind, lease_raw, host_due, retry_at, error, links = m[:7]
    items = [_item(link) for link in links]
    if kind == LINKS:
        return worker, items
    lease = decode_lease(lease_raw)
    if kind == RELEASE:
        return worker, lease
    validators = Validators.of(m[7], m[8]) if len(m) > 7 else None
    return worker, Outcome(
        lease, kind, float(host_due), retry_at=float(retry_at), error=error, links=items, validators=validators
    )
