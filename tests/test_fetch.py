"""PageFetcher's robots gate: why a page was not fetched is carried into the error type."""

from __future__ import annotations

import pytest

from crawler.core.config import Config
from crawler.core.errors import CrawlError, ErrorType
from crawler.core.urlnorm import ParamStripper
from crawler.fetch.pages import PageFetcher
from crawler.fetch.robots import RobotsCache, RobotsResponse
from crawler.ingest.scope import Scope
from crawler.worker.slot import HostSlots


def _fetcher(answer: RobotsResponse | CrawlError) -> PageFetcher:
    async def fetch(url: str) -> RobotsResponse:
        if isinstance(answer, CrawlError):
            raise answer
        return answer

    robots = RobotsCache(fetch, product_token="PoliteCrawler")
    scope = Scope([], max_depth=None, max_url_length=2048, max_repeated_segments=3)
    # The HTTP client is never reached when robots.txt refuses: None proves it.
    slots = HostSlots(Config().for_host, Config().politeness)
    return PageFetcher(None, robots, scope, ParamStripper([]), slots, max_redirects=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "expected", "unavailable"),
    [
        (CrawlError(ErrorType.DNS, "no such host"), ErrorType.DNS, True),
        (CrawlError(ErrorType.TIMEOUT, "slow"), ErrorType.TIMEOUT, True),
        (RobotsResponse(503, b"", None), ErrorType.ROBOTS_DISALLOWED, True),
        (RobotsResponse(200, b"User-agent: *\nDisallow: /\n", None), ErrorType.ROBOTS_DISALLOWED, False),
        (CrawlError(ErrorType.PRIVATE_ADDRESS, "loopback"), ErrorType.PRIVATE_ADDRESS, False),
    ],
)
async def test_robots_gate_reports_the_cause(
    answer: RobotsResponse | CrawlError, expected: ErrorType, unavailable: bool
) -> None:
    result = await _fetcher(answer).fetch("http://a.test/page", 0)
    assert result.response is None
    assert result.error is not None and result.error.type is expected
    assert result.robots_unavailable is unavailable
