"""Fetch one page politely: robots.txt first, then HTTP hop by hop, every redirect re-checked.

Every request goes through the host's gate (`RequestGate`, the worker's per-host slot), which alone
decides when it may start: robots.txt (see `gated`), each page request and each same-host redirect hop.
A redirect to another host is handed back as `redirect_to`, and the target enters the frontier like a
link, where its own host's politeness and robots.txt apply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from crawler.core.errors import CrawlError, ErrorType
from crawler.core.urlnorm import ParamStripper, host_key, normalize, origin
from crawler.core.validators import Validators
from crawler.fetch.http import HttpFetcher, Response
from crawler.fetch.robots import RobotsCache, RobotsFetch, RobotsResponse
from crawler.fetch.robots_rules import RobotsRules

#: robots.txt bodies are read up to this many bytes (the rest is cut, not refused); RobotsCache parses
#: the first 512 KiB of them, above RFC 9309's 500 KiB minimum.
ROBOTS_FETCH_BYTES = 600 * 1024


def robots_fetcher(http: HttpFetcher) -> Callable[[str], Awaitable[RobotsResponse]]:
    """The one-hop robots.txt fetch function RobotsCache needs, over our HTTP session."""

    async def fetch(url: str) -> RobotsResponse:
        resp = await http.fetch(url, max_bytes=ROBOTS_FETCH_BYTES, accept="text/plain,*/*;q=0.5", truncate=True)
        return RobotsResponse(status=resp.status, body=resp.body, location=resp.location)

    return fetch


class RequestGate(Protocol):
    """The per-host politeness gate every request passes (implemented by the worker's host slots)."""

    def request(self, host: str, *, until: float | None = None) -> AbstractAsyncContextManager[None]:
        """Hold the host's gate for one request (which must start by `until`, else the gate raises)."""
        ...

    def learn_crawl_delay(self, host: str, crawl_delay: float | None) -> bool:
        """Remember the host's robots.txt Crawl-delay; True when it changed."""
        ...


def gated(fetch: RobotsFetch, gate: RequestGate) -> RobotsFetch:
    """A robots.txt fetch that passes the host's gate: robots.txt is a request to the host like any other."""

    async def fetch_gated(url: str) -> RobotsResponse:
        async with gate.request(host_key(url)):
            return await fetch(url)

    return fetch_gated


_NETWORK_CAUSES = frozenset(e.value for e in ErrorType) - {ErrorType.ROBOTS_DISALLOWED.value}


class ScopeCheck(Protocol):
    """The crawl's scope authority (ingest): why a redirect target is out of bounds, or None."""

    def reason(self, url: str, host: str, depth: int) -> str | None: ...


@dataclass(slots=True)
class PageFetch:
    """What fetching one frontier URL produced."""

    url: str
    final_url: str
    response: Response | None = None
    error: CrawlError | None = None
    redirect_to: str | None = None  # another host's URL to ingest instead of following here
    hops: list[dict[str, object]] = field(default_factory=list)
    rules: RobotsRules | None = None
    robots_unavailable: bool = False  # robots.txt unreachable: retry later, do not record
    conditional: bool = False  # the final response answers a request sent with validators (recrawl)


class PageFetcher:
    """Robots-gated, redirect-following fetch of frontier URLs over one `HttpFetcher`."""

    def __init__(
        self,
        http: HttpFetcher,
        robots: RobotsCache,
        scope: ScopeCheck,
        strip: ParamStripper,
        gate: RequestGate,
        *,
        max_redirects: int,
    ) -> None:
        self.http = http
        self.robots = robots
        self.scope = scope
        self.strip = strip
        self.gate = gate
        self.max_redirects = max_redirects

    async def fetch(
        self,
        url: str,
        depth: int,
        *,
        until: float | None = None,
        validators: Validators | None = None,
        max_bytes: int | None = None,
    ) -> PageFetch:
        """Fetch `url` (robots.txt first), following same-host redirects hop by hop through the host's gate.

        `until`: the page request must start by then (the gate raises otherwise; the lease is handed back).
        `validators`: from the page's last fetch; the request for `url` itself is then conditional (a redirect
        hop is not: the validators belong to `url`'s own response).
        `max_bytes`: the body cap when not the fetcher's own (a sitemap may be larger than a page).
        """
        result = PageFetch(url=url, final_url=url)
        host = host_key(url)
        chain = {url}
        current = url
        # Before robots.txt: a refused port gets no request at all, and a final, typed error. (HttpFetcher
        # refuses it too; unit tests drive this class without one, hence the getattr.)
        policy = getattr(self.http, "policy", None)
        if policy is not None:
            try:
                policy.check_port(host)
            except CrawlError as exc:
                result.error = exc
                return result
        for hop in range(self.max_redirects + 1):
            rules = await self.robots.get(origin(current))
            result.rules = rules
            self.gate.learn_crawl_delay(host, rules.crawl_delay)
            if rules.kind == "disallow_all" and rules.reason.startswith(ErrorType.PRIVATE_ADDRESS.value):
                # The host itself is refused: the page would be too, so this is final.
                result.error = CrawlError(ErrorType.PRIVATE_ADDRESS, f"{host} resolves to a refused address")
                return result
            if rules.kind == "disallow_all":  # robots.txt unreachable (5xx, 429, network): wait
                result.robots_unavailable = True
                # A network failure keeps its own type (dns_error, timeout, ...); a 5xx/429 is a refusal.
                cause = rules.reason.split(" ", 1)[0]
                etype = ErrorType(cause) if cause in _NETWORK_CAUSES else ErrorType.ROBOTS_DISALLOWED
                result.error = CrawlError(etype, f"robots.txt unavailable: {rules.reason}")
                return result
            if not rules.allowed(current):
                result.error = CrawlError(ErrorType.ROBOTS_DISALLOWED, "disallowed by robots.txt")
                return result
            conditional = validators.headers() if validators is not None and hop == 0 else None
            try:
                async with self.gate.request(host, until=until):
                    resp = await self.http.fetch(current, headers=conditional, max_bytes=max_bytes)
            except CrawlError as exc:
                result.error = exc
                return result
            result.response = resp
            result.final_url = current
            result.conditional = conditional is not None
            # 304 Not Modified is an answer about this URL, not a redirect, whatever Location it carries.
            if not (300 <= resp.status < 400 and resp.status != 304 and resp.location):
                return result
            try:
                target = normalize(resp.location, current, self.strip)
            except CrawlError as exc:
                result.error = CrawlError(ErrorType.REDIRECT_REFUSED, f"redirect to {exc.message}")
                return result
            result.hops.append({"url": current, "status": resp.status, "location": target})
            if target in chain:
                result.error = CrawlError(ErrorType.REDIRECT_LOOP, f"redirect loop back to {target}")
                return result
            if hop == self.max_redirects:
                break
            reason = self.scope.reason(target, host_key(target), depth)
            if reason is not None:
                etype = ErrorType.BAD_PORT if reason == ErrorType.BAD_PORT.value else ErrorType.REDIRECT_REFUSED
                result.error = CrawlError(etype, f"redirect target {reason}: {target}")
                return result
            if host_key(target) != host:
                result.redirect_to = target
                return result
            chain.add(target)
            current = target
        result.error = CrawlError(ErrorType.TOO_MANY_REDIRECTS, f"more than {self.max_redirects} redirects from {url}")
        return result
