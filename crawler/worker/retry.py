"""The failure matrix: one table of named policies saying which failures get another attempt, and when.

Each `Policy` row names a failure, how it is detected, what the crawler does about it and the retry
schedule. `classify` picks the row for one fetch; `retry_at` turns the row into a time (or None: record
it now, or dead-letter it when attempts are used up). `LeaseRunner` uses nothing else to decide, and the
README's failure table lists the same rows (a test holds them equal). Every interval is a config key.

robots.txt outages are not a row here: the lease runner retries them when the cached "disallow all"
expires (`politeness.robots_*`), because until then the host cannot be fetched at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from crawler.core.config import FetchSettings
from crawler.core.errors import RETRYABLE, CrawlError, ErrorType
from frontier.politeness import parse_retry_after


@dataclass(frozen=True, slots=True)
class Failure:
    """What one fetch's failure looked like, as far as the policies care."""

    error: ErrorType | None  # a typed error, or None when the server answered
    status: int | None  # the HTTP status, when there was a response
    retry_after: float | None = None  # seconds the server asked us to wait (Retry-After, parsed and capped)


#: `delay(fetch, attempts, failure)`: seconds after now before the next attempt (None: never retry).
Delay = Callable[[FetchSettings, int, Failure], float | None]


@dataclass(frozen=True, slots=True)
class Policy:
    """One row of the failure matrix: a named, documented response to one kind of failure."""

    name: str
    detects: str  # what the row matches, for people (the README table repeats it)
    response: str  # what the crawler does
    schedule: str  # when the URL is tried again
    matches: Callable[[Failure], bool]
    delay: Delay
    jitter: bool = True  # spread retries of many URLs that failed together (not for a server's own date)

    @property
    def retries(self) -> bool:
        """Whether this row ever gives a URL another attempt (if not, the failure is recorded at once)."""
        return self.delay is not _never


def _exponential(fetch: FetchSettings, attempts: int, _: Failure) -> float:
    # The n-th failure waits retry_backoff[n-1]; past the list's end its last step repeats.
    return fetch.retry_backoff[min(attempts, len(fetch.retry_backoff)) - 1] if fetch.retry_backoff else 0.0


def _linear(fetch: FetchSettings, attempts: int, _: Failure) -> float:
    # "Linear backoff at 5-minute intervals" (the seed's matrix): a try every interval, so the n-th try
    # comes n intervals after the first failure; the host's own politeness (breaker) spaces its requests.
    return fetch.server_error_interval


def _server_says(_: FetchSettings, __: int, failure: Failure) -> float:
    # Without Retry-After the host's doubled delay (frontier.politeness) decides: `host_due` alone.
    return failure.retry_after or 0.0


def _never(_: FetchSettings, __: int, ___: Failure) -> None:
    return None


def _status_in(*statuses: int) -> Callable[[Failure], bool]:
    return lambda f: f.error is None and f.status in statuses


def _rate_limited(f: Failure) -> bool:
    # A 503 with Retry-After is the server saying "too busy, come back then": the same as a 429.
    return f.error is None and (f.status == 429 or (f.status == 503 and f.retry_after is not None))


#: The failure matrix, first match wins. Successes (2xx, 3xx) match no row.
FAILURE_MATRIX: tuple[Policy, ...] = (
    Policy(
        "network",
        "timeout (`fetch.read_timeout`, `total_timeout`), connection refused or reset, DNS failure, "
        "truncated body, browser crash",
        "temporary failure: no record yet; the failure counts towards the host's circuit breaker",
        "exponential: `fetch.retry_backoff` (60 s, 300 s, 1800 s), ±20 % jitter",
        lambda f: f.error in RETRYABLE,
        _exponential,
    ),
    Policy(
        "parse_error",
        "the HTML parser failed: lexbor, then selectolax's modest parser on the same body (no refetch)",
        "a `parse_error` record with the links a regex scan finds",
        "none (parsing again later would fail the same way)",
        lambda f: f.error is ErrorType.PARSE_ERROR,
        _never,
    ),
    Policy(
        "other_error",
        "any other typed error (`too_large`, `robots_disallowed`, `redirect_loop`, `bad_port`, ...)",
        "a record with the error",
        "none",
        lambda f: f.error is not None,
        _never,
    ),
    Policy(
        "not_found",
        "HTTP 404, 410",
        "an `http_error` record: logged and skipped",
        "none",
        _status_in(404, 410),
        _never,
    ),
    Policy(
        "rate_limited",
        "HTTP 429, or 503 with Retry-After",
        "the host backs off (Retry-After, capped at `politeness.retry_after_max`; without it the host's "
        "delay doubles up to `politeness.max_backoff_delay`)",
        "when Retry-After says, never before the host is due; without it, when the host is due",
        _rate_limited,
        _server_says,
        jitter=False,
    ),
    Policy(
        "server_error",
        "HTTP 5xx",
        "temporary failure: no record yet; counts towards the host's circuit breaker",
        "linear: one try every `fetch.server_error_interval` (300 s, 300 s, ...), ±20 % jitter",
        lambda f: f.error is None and f.status is not None and 500 <= f.status < 600,
        _linear,
    ),
    Policy(
        "client_error",
        "any other HTTP 4xx (400, 401, 403, 405, 408, ...)",
        "retried: a 4xx can be a transient misconfiguration or an over-eager firewall",
        "exponential: `fetch.retry_backoff`, like network errors",
        lambda f: f.error is None and f.status is not None and 400 <= f.status < 500,
        _exponential,
    ),
)

POLICIES: dict[str, Policy] = {p.name: p for p in FAILURE_MATRIX}


def failure_of(
    error: CrawlError | None, status: int | None, retry_after: str | None, *, now: float, cap: float
) -> Failure:
    """The `Failure` of one fetch; `retry_after` is the raw header, capped at `cap` seconds once parsed."""
    wait = parse_retry_after(retry_after, now) if error is None else None
    return Failure(error.type if error is not None else None, status, min(wait, cap) if wait is not None else None)


def classify(failure: Failure) -> Policy | None:
    """The failure matrix's row for `failure`, or None for a success."""
    return next((p for p in FAILURE_MATRIX if p.matches(failure)), None)


def retry_at(
    fetch: FetchSettings, policy: Policy, attempts: int, failure: Failure, *, host_due: float, now: float, jitter: float
) -> float | None:
    """When attempt `attempts + 1` may run (never before the host is due); None when the row does not retry
    or the attempts are used up (the caller records the failure, as a dead letter in the second case).

    `jitter` (e.g. uniform in 0.8–1.2) spreads retries of many URLs that failed together.
    """
    if attempts >= fetch.max_attempts:
        return None
    delay = policy.delay(fetch, attempts, failure)
    if delay is None:
        return None
    return max(host_due, now + delay * (jitter if policy.jitter else 1.0))
