"""Politeness timing as a pure function, driven by a fake clock."""

import email.utils

from frontier.politeness import HostPace, PaceRules, next_due, parse_retry_after

NOW = 1_790_000_000.0


def test_plain_success_waits_the_configured_delay() -> None:
    due, pace = next_due(PaceRules(delay=0.2), HostPace(), now=NOW, status=200)
    assert due == NOW + 0.2
    assert pace.backoff == 0.0


def test_crawl_delay_wins_when_larger() -> None:
    due, _ = next_due(PaceRules(delay=0.2, crawl_delay=3.0), HostPace(), now=NOW, status=200)
    assert due == NOW + 3.0
    due, _ = next_due(PaceRules(delay=5.0, crawl_delay=3.0), HostPace(), now=NOW, status=200)
    assert due == NOW + 5.0


def test_retry_after_seconds_and_http_date_are_honoured_and_clamped() -> None:
    rules = PaceRules(delay=1.0, retry_after_max=100.0)
    due, _ = next_due(rules, HostPace(), now=NOW, status=429, retry_after="30")
    assert due == NOW + 30
    date = email.utils.formatdate(NOW + 50, usegmt=True)
    due, _ = next_due(rules, HostPace(), now=NOW, status=503, retry_after=date)
    assert abs(due - (NOW + 50)) < 1.0
    due, _ = next_due(rules, HostPace(), now=NOW, status=503, retry_after="99999")
    assert due == NOW + 100.0


def test_slow_down_without_retry_after_doubles_up_to_cap_then_relaxes() -> None:
    rules = PaceRules(delay=1.0, max_backoff_delay=8.0)
    pace = HostPace()
    gaps = []
    for _ in range(6):
        due, pace = next_due(rules, pace, now=NOW, status=429)
        gaps.append(due - NOW)
    assert gaps[:3] == [2.0, 4.0, 8.0]
    assert max(gaps) == 8.0
    relaxed = []
    for _ in range(30):
        due, pace = next_due(rules, pace, now=NOW, status=200)
        relaxed.append(due - NOW)
    assert relaxed == sorted(relaxed, reverse=True)
    assert relaxed[0] < 8.0 and relaxed[-1] == 1.0


def test_errors_do_not_shorten_the_delay() -> None:
    rules = PaceRules(delay=1.0, max_backoff_delay=8.0)
    _, pace = next_due(rules, HostPace(), now=NOW, status=503)
    due, pace2 = next_due(rules, pace, now=NOW, status=500)
    assert pace2.backoff == pace.backoff
    due_none, _ = next_due(rules, pace, now=NOW, status=None)
    assert due_none == due


def test_parse_retry_after_garbage() -> None:
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after("-5", NOW) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", NOW) == 0.0


def test_circuit_breaker_opens_after_consecutive_failures_and_closes_on_success() -> None:
    rules = PaceRules(delay=1.0, breaker_failures=3, breaker_cooldown=60.0, breaker_max_cooldown=200.0)
    pace = HostPace()
    gaps = []
    for status in (500, None, 502, 500, 500, 500):
        due, pace = next_due(rules, pace, now=NOW, status=status)
        gaps.append(due - NOW)
    assert gaps[:2] == [1.0, 1.0]
    assert gaps[2:] == [60.0, 120.0, 200.0, 200.0]
    due, pace = next_due(rules, pace, now=NOW, status=200)
    assert due == NOW + 1.0 and pace.failures == 0
    # A 404 is the server answering normally: it does not count towards the breaker.
    for _ in range(5):
        due, pace = next_due(rules, pace, now=NOW, status=404)
    assert due == NOW + 1.0
