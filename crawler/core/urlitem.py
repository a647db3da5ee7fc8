"""The unit of work that flows from ingest through the frontier to a worker."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PAGE", "SITEMAP", "SITEMAP_FOR", "SITEMAP_PROBE", "UrlItem", "is_sitemap"]

#: `UrlItem.kind` of an ordinary page: the empty string, so a page costs nothing where items travel.
PAGE = ""
#: A sitemap its own host names: a robots.txt `Sitemap:` line, or an entry of one of its sitemap indexes.
SITEMAP = "sitemap"
#: `/sitemap.xml` tried because robots.txt names no sitemap: a 404 or a non-sitemap there is no error.
SITEMAP_PROBE = "sitemap?"
#: Prefix of the kind of a sitemap another host's robots.txt names (a cross-submit, sitemaps.org):
#: `sitemap:a.test` may list a.test's URLs as well as its own host's.
SITEMAP_FOR = "sitemap:"


def is_sitemap(kind: str) -> bool:
    """Whether an item of this kind is fetched as a sitemap rather than analyzed as a page."""
    return kind.startswith(SITEMAP)


@dataclass(slots=True, frozen=True, init=False)
class UrlItem:
    """A normalized, in-scope URL waiting to be fetched.

    `host` is the politeness key (lower-case host plus explicit non-default port, e.g. `a.test:8080`);
    `depth` counts link hops from a seed; `attempts` counts fetches already tried. `kind` is `PAGE` or
    one of the sitemap kinds above; `lastmod` is a sitemap's `<lastmod>` for the URL (Unix seconds).
    Both travel through every store and message only when set (`extras`), so pages pay nothing.
    """

    url: str
    host: str
    depth: int
    attempts: int
    kind: str
    lastmod: float | None

    def __init__(
        self,
        url: str,
        host: str,
        depth: int = 0,
        attempts: int = 0,
        kind: str = PAGE,
        lastmod: float | None = None,
    ) -> None:
        # An item is made per admitted link and per lease: the slots' own setters take half the time of the
        # object.__setattr__ calls a generated frozen __init__ makes (and the instance is as frozen).
        _set_url(self, url)
        _set_host(self, host)
        _set_depth(self, depth)
        _set_attempts(self, attempts)
        _set_kind(self, kind)
        _set_lastmod(self, lastmod)

    @property
    def seen_key(self) -> str:
        """The URL's identity in the seen-set: a sitemap is other work than the page at the same URL."""
        return self.url if not self.kind else "sitemap " + self.url

    def extras(self) -> tuple[()] | tuple[str, float | None]:
        """`(kind, lastmod)` when either is set, else `()`: what serialized forms append after the fields."""
        if not self.kind and self.lastmod is None:
            return ()
        return (self.kind, self.lastmod)


_set_url, _set_host, _set_depth, _set_attempts, _set_kind, _set_lastmod = (
    UrlItem.__dict__[name].__set__ for name in ("url", "host", "depth", "attempts", "kind", "lastmod")
)
