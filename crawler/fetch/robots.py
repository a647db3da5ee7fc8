"""robots.txt per RFC 9309: fetch policy (redirects, status codes, errors) and a TTL+LRU cache of rules.

Fetch outcomes: 2xx parsed; 3xx followed up to `max_redirects` hops, more hops or a loop is "unavailable"
(RFC 9309 §2.3.1.2) → allow all; 4xx except 429 → allow all; 5xx, 429 and network errors → disallow all
(RFC 9309 §2.3.1.4) until the next try, unless a parsed copy younger than 24 h exists (RFC 9309 §2.4),
which is kept meanwhile (for `error_ttl`). Without such a copy the origin *waits*: robots.txt is tried
again after `error_first` seconds, doubling per consecutive failure up to `error_ttl`, so a short outage
costs seconds, not the whole `error_ttl`. Parsing and matching live in `crawler.fetch.robots_rules`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import urldefrag, urljoin, urlsplit

from crawler.core.errors import CrawlError, ErrorType
from crawler.fetch.robots_rules import PRODUCT_TOKEN, RobotsRules, parse_robots

__all__ = ["MAX_AGE", "THREAD_PARSE_BYTES", "RobotsCache", "RobotsFetch", "RobotsResponse", "Waiting"]

log = logging.getLogger("crawler.fetch.robots")

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


@dataclass(slots=True, frozen=True)
class Waiting:
    """An origin whose robots.txt could not be fetched and that has no usable copy: its URLs wait."""

    origin: str
    cause: str  # "dns_error", "timeout", "connection_error", "503", "429", ...
    failures: int  # consecutive failed fetches
    since: float  # when the first of them failed
    retry_at: float  # when robots.txt may be fetched again (the disallow-all rules expire)
    step: float  # the wait before `retry_at`


@dataclass(slots=True, frozen=True)
class _Unreachable:
    """What `_resolve` found when robots.txt could not be had; `_refresh` turns it into rules."""

    cause: str
    keep_cached: bool


class RobotsCache:
    """Per-origin robots rules: fetched on demand (one fetch per origin at a time), TTL-cached, LRU."""

    def __init__(
        self,
        fetch: RobotsFetch,
        *,
        product_token: str,
        ttl: float = 86400,
        error_ttl: float = 300,
        error_first: float = 2.0,
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
        self._error_first = min(error_first, self._error_ttl)
        self._max_bytes = max_bytes
        self._max_crawl_delay = max_crawl_delay
        self._max_redirects = max_redirects
        self._clock = clock
        self._max_entries = max_entries
        # Expired entries stay until evicted: a failed refresh may fall back on them.
        self._entries: OrderedDict[str, RobotsRules] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[RobotsRules]] = {}
        # Origins without usable rules since their last failed fetch(es); bounded like `_entries`.
        self._waiting: dict[str, Waiting] = {}
        # For the metrics endpoint: `get` answered from the cache, or not (it fetched or joined a fetch).
        self.hits = 0
        self.misses = 0

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
            self.hits += 1
            return rules
        self.misses += 1
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

    def waiting(self) -> list[Waiting]:
        """Origins waiting for their robots.txt, longest waiting first.

        An origin drops out when its robots.txt is fetched, or when nothing asked for it for one retry
        step past its due time (its URLs were dead-lettered or left the queue): a stale entry would show
        a host as waiting forever.
        """
        now = self._clock()
        stale = [o for o, w in self._waiting.items() if now > w.retry_at + max(w.step, 5.0)]
        for origin in stale:
            del self._waiting[origin]
        return sorted(self._waiting.values(), key=lambda w: w.since)

    def outage(self, origin: str) -> Waiting | None:
        """The origin's current wait for its robots.txt, or None when it has usable rules."""
        return self._waiting.get(origin.rstrip("/"))

    def retry_step(self, failures: int) -> float:
        """Seconds until robots.txt is tried again after `failures` consecutive failures (2, 4, 8, ... capped)."""
        return min(self._error_first * 2.0 ** max(failures - 1, 0), self._error_ttl)

    def _forget(self, origin: str, task: asyncio.Task[RobotsRules]) -> None:
        if self._inflight.get(origin) is task:
            del self._inflight[origin]

    async def _refresh(self, origin: str) -> RobotsRules:
        previous = self._entries.get(origin)
        found = await self._resolve(origin)
        if isinstance(found, _Unreachable):
            rules = self._unreachable(origin, found.cause, previous, keep_cached=found.keep_cached)
        else:
            rules = found
            gone = self._waiting.pop(origin, None)
            if gone is not None:
                log.info(
                    "robots.txt of %s fetched (%s) after %d failed tries over %.0fs: its URLs go ahead",
                    origin,
                    rules.reason,
                    gone.failures,
                    self._clock() - gone.since,
                )
        self._entries[origin] = rules
        self._entries.move_to_end(origin)
        while len(self._entries) > self._max_entries:
            evicted, _ = self._entries.popitem(last=False)
            self._waiting.pop(evicted, None)
        return rules

    async def _resolve(self, origin: str) -> RobotsRules | _Unreachable:
        url = origin + "/robots.txt"
        seen = {url}
        redirects = 0
        while True:
            try:
                response = await self._fetch(url)
            except CrawlError as exc:
                # A host that now resolves to a refused address must not be crawled on old rules.
                keep = exc.type is not ErrorType.PRIVATE_ADDRESS
                return _Unreachable(exc.type.value, keep_cached=keep)
            except TimeoutError:  # the fetch contract says CrawlError; be safe if a raw one leaks through
                return _Unreachable(ErrorType.TIMEOUT.value, keep_cached=True)
            except OSError:
                return _Unreachable(ErrorType.CONNECTION.value, keep_cached=True)
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
                return _Unreachable(str(status), keep_cached=True)
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

    def _unreachable(self, origin: str, cause: str, previous: RobotsRules | None, *, keep_cached: bool) -> RobotsRules:
        now = self._clock()
        if keep_cached and previous is not None and previous.kind == "parsed":
            # Crawling goes on with the copy, so there is no hurry: retry after error_ttl, but never lean
            # on a copy fetched more than 24 h ago.
            expires_at = min(now + self._error_ttl, previous.fetched_at + MAX_AGE)
            if expires_at > now:
                self._waiting.pop(origin, None)
                return previous.restamped(f"{cause} using cached copy", expires_at)
        if cause == ErrorType.PRIVATE_ADDRESS.value:
            # Not an outage but a refusal (final for the URLs): nothing to wait for or to show as waiting.
            self._waiting.pop(origin, None)
            return RobotsRules(
                "disallow_all", f"{cause} disallow all", fetched_at=now, expires_at=now + self._error_ttl
            )
        before = self._waiting.get(origin)
        failures = before.failures + 1 if before is not None else 1
        step = self.retry_step(failures)
        expires_at = now + step
        since = before.since if before is not None else now
        self._waiting[origin] = Waiting(origin, cause, failures, since, expires_at, step)
        if before is None:
            # Once per outage, not per URL or per retry: the progress line shows it while it lasts.
            log.warning(
                "robots.txt of %s unavailable (%s): its URLs wait (disallow all, RFC 9309 §2.3.1.4); "
                "retrying in %.1fs, then backing off up to %.0fs",
                origin,
                cause,
                expires_at - now,
                self._error_ttl,
            )
        else:
            log.debug(
                "robots.txt of %s still unavailable (%s), try %d; next in %.1fs",
                origin,
                cause,
                failures,
                expires_at - now,
            )
        return RobotsRules("disallow_all", f"{cause} disallow all", fetched_at=now, expires_at=expires_at)
