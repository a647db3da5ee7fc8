"""When may a host be fetched again? A pure function of the last response and the clock.

No I/O and no clock reads: callers pass `now`, so tests drive it with a fake clock. The store only
enforces the time this returns (a host is not claimed before its due time).
"""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass

#: Statuses that mean "you are going too fast" (RFC 6585 §4, RFC 9110 §15.6.4).
SLOW_DOWN = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class HostPace:
    """What politeness remembers about a host between fetches."""

    backoff: float = 0.0  # seconds added on top of the configured delay after 429/503
    failures: int = 0  # consecutive 5xx / network failures (the circuit breaker's count)


@dataclass(frozen=True, slots=True)
class PaceRules:
    """The knobs of one host's politeness, already resolved from config and robots.txt."""

    delay: float
    crawl_delay: float | None = None  # robots.txt Crawl-delay, already clamped
    retry_after_max: float = 3600.0
    max_backoff_delay: float = 60.0
    breaker_failures: int = 5  # consecutive failures that open the host's circuit
    breaker_cooldown: float = 60.0  # first pause when it opens; doubles while failures go on
    breaker_max_cooldown: float = 1800.0

    @property
    def base_delay(self) -> float:
        """The larger of the configured delay and the robots Crawl-delay."""
        return max(self.delay, self.crawl_delay or 0.0)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None instead of raising
        return None
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def next_due(
    rules: PaceRules,
    pace: HostPace,
    *,
    now: float,
    status: int | None,
    retry_after: str | None = None,
) -> tuple[float, HostPace]:
    """Return (earliest next fetch time, new pace) after a response with `status` finished at `now`.

    `status` None means no response (network error). 429/503 honour Retry-After (clamped to
    `retry_after_max`); without one they double the effective delay up to `max_backoff_delay`.
    Successes relax an earned backoff gradually, never below zero. A run of `breaker_failures`
    5xx or network failures opens the host's circuit: it pauses for a cooldown that doubles while
    the failures continue, so a broken host costs little while other hosts go on.
    """
    due, new = _pace(rules, pace, now=now, status=status, retry_after=retry_after)
    failed = status is None or status >= 500
    failures = pace.failures + 1 if failed else 0
    if failures >= rules.breaker_failures:
        extra = failures - rules.breaker_failures
        cooldown = min(rules.breaker_cooldown * (2.0 ** min(extra, 30)), rules.breaker_max_cooldown)
        due = max(due, now + cooldown)
    return due, HostPace(new.backoff, failures)


def _pace(
    rules: PaceRules, pace: HostPace, *, now: float, status: int | None, retry_after: str | None
) -> tuple[float, HostPace]:
    base = rules.base_delay
    backoff = pace.backoff
    if status in SLOW_DOWN:
        wait = parse_retry_after(retry_after, now)
        if wait is not None:
            wait = min(wait, rules.retry_after_max)
            # Remember some of it, so the host is not hammered again right after the pause.
            backoff = min(max(backoff, base), rules.max_backoff_delay)
            return now + max(wait, base + backoff), HostPace(backoff)
        doubled = max((base + backoff) * 2.0, 1.0)
        backoff = min(doubled, rules.max_backoff_delay) - base
        backoff = max(backoff, 0.0)
        return now + base + backoff, HostPace(backoff)
    if status is not None and status < 500 and backoff > 0.0:
        # Relax by a quarter per good response; drop tiny leftovers entirely.
        backoff = backoff * 0.75
        if backoff < 0.05:
            backoff = 0.0
    return now + base + backoff, HostPace(backoff)
