"""Retry policy: which failures deserve another attempt, and when."""

from __future__ import annotations

from crawler.core.config import FetchSettings
from crawler.core.errors import RETRYABLE, CrawlError

#: HTTP statuses worth another attempt (RFC 9110: the server may succeed later).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_retryable(error: CrawlError | None, status: int | None) -> bool:
    """A transient network failure, or a status that says "try again later"."""
    if error is not None:
        return error.type in RETRYABLE
    return status is not None and status in RETRY_STATUSES


def retry_at(fetch: FetchSettings, attempts: int, *, host_due: float, now: float, jitter: float) -> float | None:
    """When attempt `attempts + 1` may run (never before the host is due), or None when attempts are used up.

    `jitter` (e.g. uniform in 0.8–1.2) spreads retries of many URLs that failed together.
    """
    if attempts >= fetch.max_attempts:
        return None
    backoff = fetch.retry_backoff[min(attempts, len(fetch.retry_backoff)) - 1] if fetch.retry_backoff else 0.0
    return max(host_due, now + backoff * jitter)
