"""The small types shared by the browser pool and its callers, importable without Playwright."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class SubResponse:
    """What `fetch_sub` answers for a script/XHR/fetch request; `body` is already content-decoded."""

    status: int
    headers: dict[str, str]
    body: bytes


SubFetch = Callable[[str, str], Awaitable[SubResponse | None]]
