"""The unit of work that flows from ingest through the frontier to a worker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class UrlItem:
    """A normalized, in-scope URL waiting to be fetched.

    `host` is the politeness key (lower-case host plus explicit non-default port, e.g. `a.test:8080`);
    `depth` counts link hops from a seed; `attempts` counts fetches already tried.
    """

    url: str
    host: str
    depth: int = 0
    attempts: int = 0
