"""A dict bounded to its most recently written keys: per-host memory that cannot grow without limit."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class RecentDict(dict[K, V]):
    """Keeps the `maxsize` most recently written keys; writing a key again makes it the newest.

    Per-host state (pace, last request, Crawl-delay) of a host idle long enough to fall out is simply
    rebuilt from defaults when the host comes back.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def __setitem__(self, key: K, value: V) -> None:
        if key in self:
            super().__delitem__(key)
        super().__setitem__(key, value)
        if len(self) > self.maxsize:
            super().__delitem__(next(iter(self)))
