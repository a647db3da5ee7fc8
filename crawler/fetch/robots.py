"""robots.txt per RFC 9309: fetch policy (redirects, status codes, errors) and a TTL+LRU cache of rules.

Fetch outcomes: 2xx parsed; 3xx followed up to `max_redirects` hops, more hops or a loop is "unavailable"
(RFC 9309 §2.3.1.2) → allow all; 4xx except 429 → allow all; 5xx, 429 and network errors → disallow all
for `error_ttl`, unless a parsed copy younger than 24 h exists (RFC 9309 §2.4), which is kept meanwhile.
Parsing and matching live in `crawler.fetch.robots_rules`.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import urldefrag, urljoin, urlsplit

from crawler.core.errors import CrawlError, ErrorType
from crawler.fetch.robots_rules import PRODUCT_TOKEN, RobotsRules, parse_robots

__all__ = ["MAX_AGE", "THREAD_PARSE_BYTES", "RobotsCache", "RobotsFetch", "RobotsResponse"]

#: RFC 9309 §2.4: a cached copy may stand in for an unreachable file, and caching lasts at most 24 h.
MAX_AGE = 86_400.0
#: Bodies above this are parsed in a worker thread so the event loop keeps serving other hosts.
THREAD_PARSE_BYTES = 64 * 1024


@dataclass(slots=True, frozen=True)
class RobotsResponse:
    """One HTTP hop of a robots.txt fetch."""

    status: int
    body: bytes
    location: str | None  # absolute URL from the Location header on 3xx, else None


RobotsFetch = Callable[[str], Awaitable[RobotsResponse]]


class RobotsCache:
    """Per-origin robots rules: fetched on demand (one fetch per origin at a time), TTL-cached, LRU."""

    def __init__(
        self,
        fetch: RobotsFetch,
        *,
        product_token: str,
        ttl: float = 86400,
        error_ttl: float = 300,
        max_bytes: int = 512 * 1024,
        max_crawl_delay: float = 30.0,
        max_redirects: int = 5,
        clock: Callable[[], float] = time.time,
        max_entries: int = 100_000,
    ) -> None:
        if product_token != "*" and not PRODUCT_TOKEN.fullmatch(product_token):
            raise ValueError(f"product token must match [A-Za-z_-]+ (RFC 9309 §2.2.1): {product_token!r}")
        self._fetch = fetch
        self._token = product_token
        self._ttl = min(ttl, MAX_AGE)
        self._error_ttl = min(error_ttl, self._ttl)
        self._max_bytes = max_bytes
        self._max_crawl_delay = max_crawl_delay
        self._max_redirects = max_redirects
        self._clock = clock
        self._max_entries = max_entries
        # Expired entries stay until evicted: a failed refresh may fall back on them.
        self._entries: OrderedDict[str, RobotsRules] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[RobotsRules]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def cached(self, origin: str) -> RobotsRules | None:
        """The unexpired rules for `origin` without any I/O, else None."""
        origin = origin.rstrip("/")
        rules = self._entries.get(origin)
        if rules is None or rules.expires_at <= self._clock():
            return None
        self._entries.move_to_end(origin)
        return rules

    async def get(self, origin: str) -> RobotsRules:
        """Rules for `origin` (e.g. `http://a.test:8080`), fetching `/robots.txt` if missing or expired."""
        origin = origin.rstrip("/")
        rules = self.cached(origin)
        if rules is not None:
            return rules
        task = self._inflight.get(origin)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh(origin))
            self._inflight[origin] = task
            task.add_done_callback(lambda done: self._forget(origin, done))
        # Shielded: one caller giving up must not cancel the fetch the others are waiting for.
        return await asyncio.shield(task)

    def invalidate(self, origin: str) -> None:
        """Drop what is cached for `origin`, including the copy a failed refresh could fall back on."""
        self._entries.pop(origin.rstrip("/"), None)

    def _forget(self, origin: str, task: asyncio.Task[RobotsRules]) -> None:
        if self._inflight.get(origin) is task:
            del self._inflight[origin]

    async def _refresh(self, origin: str) -> RobotsRules:
        rules = await self._resolve(origin, self._entries.get(origin))
        self._entries[origin] = rules
        self._entries.move_to_end(origin)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return rules

    async def _resolve(self, origin: str, previous: RobotsRules | None) -> RobotsRules:
        url = origin + "/robots.txt"
        seen = {url}
        redirects = 0
        while True:
            try:
                response = await self._fetch(url)
            except CrawlError as exc:
                # A host that now resolves to a refused address must not be crawled on old rules.
                keep = exc.type is not ErrorType.PRIVATE_ADDRESS
                return self._unreachable(exc.type.value, previous, keep_cached=keep)
            except TimeoutError:  # the fetch contract says CrawlError; be safe if a raw one leaks through
                return self._unreachable(ErrorType.TIMEOUT.value, previous, keep_cached=True)
            except OSError:
                return self._unreachable(ErrorType.CONNECTION.value, previous, keep_cached=True)
            status = response.status
            if 200 <= status < 300:
                via = f" via {redirects} redirects" if redirects else ""
                return await self._parsed(response.body, f"{status}{via}")
            if 300 <= status < 400:
                if not response.location:
                    return self._allow_all(f"{status} without location allow all")
                target = urldefrag(urljoin(url, response.location))[0]
                if urlsplit(target).scheme not in ("http", "https"):
                    return self._allow_all("redirect to non-http allow all")
                if target in seen:
                    return self._allow_all("redirect loop allow all")
                if redirects >= self._max_redirects:
                    return self._allow_all("too many redirects allow all")
                seen.add(target)
                redirects += 1
                url = target
                continue
            if status == 429 or status >= 500 or status < 200:
                return self._unreachable(str(status), previous, keep_cached=True)
            return self._allow_all(f"{status} allow all")

    async def _parsed(self, body: bytes, reason: str) -> RobotsRules:
        now = self._clock()
        parse = partial(
            parse_robots,
            body,
            product_token=self._token,
            reason=reason,
            fetched_at=now,
            expires_at=now + self._ttl,
            max_bytes=self._max_bytes,
            max_crawl_delay=self._max_crawl_delay,
        )
        if len(body) > THREAD_PARSE_BYTES:
            return await asyncio.to_thread(parse)
        return parse()

    def _allow_all(self, reason: str) -> RobotsRules:
        now = self._clock()
        return RobotsRules("allow_all", reason, fetched_at=now, expires_at=now + self._ttl)

    def _unreachable(self, cause: str, previous: RobotsRules | None, *, keep_cached: bool) -> RobotsRules:
        now = self._clock()
        if keep_cached and previous is not None and previous.kind == "parsed":
            # Retry after error_ttl, but never lean on a copy fetched more than 24 h ago.
            expires_at = min(now + self._error_ttl, previous.fetched_at + MAX_AGE)
            if expires_at > now:
                return previous.restamped(f"{cause} using cached copy", expires_at)
        expires_at = now + self._error_ttl
        return RobotsRules("disallow_all", f"{cause} disallow all", fetched_at=now, expires_at=expires_at)
