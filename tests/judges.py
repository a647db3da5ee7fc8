"""Judges of a crawl, shared by the end-to-end and fault-injection tests.

They look only at what the crawler shows the outside world: the test web's request log (when each
request to each host started and finished) and the records every worker wrote. Each returns a list of
readable problems (empty when the promise held); `assert_*` turn that into one assertion.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tests.conftest import page_key
from tests.testweb import LoggedRequest

_SHOWN = 12  # problems listed in an assertion message; the count is always given


def politeness_problems(log: Iterable[LoggedRequest], delay: float, slack: float = 0.02) -> list[str]:
    """Per host: no request starts before an earlier one finished, and starts are ≥ delay − slack apart."""
    by_host: dict[str, list[LoggedRequest]] = defaultdict(list)
    for r in log:
        by_host[r.host].append(r)
    problems: list[str] = []
    for host, reqs in sorted(by_host.items()):
        reqs.sort(key=lambda r: r.started)
        busy_until, busy_with = float("-inf"), ""
        for prev, cur in itertools.pairwise(reqs):
            if prev.finished > busy_until:
                busy_until, busy_with = prev.finished, prev.path
            if cur.started < busy_until - 0.001:
                problems.append(
                    f"{host}: {cur.path} started while {busy_with} was in flight "
                    f"({busy_until - cur.started:.3f}s before it finished)"
                )
            gap = cur.started - prev.started
            if gap < delay - slack:
                problems.append(f"{host}: {prev.path} → {cur.path} started {gap * 1000:.0f} ms apart (delay {delay}s)")
    return problems


def recording_problems(
    records: Sequence[Mapping[str, Any]],
    reachable: set[str],
    disallowed: set[str] = frozenset(),  # type: ignore[assignment]
    *,
    hosts: set[str] | None = None,
) -> list[str]:
    """Every reachable page recorded once and successfully, every disallowed one refused once, nothing else.

    Pages are keyed `host/path` (port ignored, see `page_key`). With `hosts`, only records and pages of
    those hosts are judged. Sitemap records (the `/sitemap.xml` each host is asked for by default) are
    held to "recorded once" only: which sitemaps a site has is the sitemap tests' business.
    """

    def mine(key: str) -> bool:
        return hosts is None or key.split("/", 1)[0] in hosts

    reachable = {k for k in reachable if mine(k)}
    disallowed = {k for k in disallowed if mine(k)}
    every = Counter(k for k in (page_key(r["url"]) for r in records) if mine(k))
    keys = [(page_key(r["url"]), r.get("error")) for r in pages_only(records)]
    keys = [(k, e) for k, e in keys if mine(k)]
    ok = {k for k, e in keys if e is None}
    refused = {k for k, e in keys if e is not None}
    problems: list[str] = []
    twice = sorted(k for k, n in every.items() if n > 1)
    if twice:
        problems.append(f"{len(twice)} URLs recorded more than once: {_some(twice, every)}")
    missing = sorted(reachable - ok)
    if missing:
        problems.append(f"{len(missing)} of {len(reachable)} reachable pages not recorded: {_some(missing)}")
    extra = sorted(ok - reachable)
    if extra:
        problems.append(f"{len(extra)} pages recorded that are not reachable: {_some(extra)}")
    if refused != disallowed:
        errs = {k: e for k, e in keys if e is not None}
        wrong = sorted(refused - disallowed)
        problems.append(
            f"refused records differ: {len(disallowed - refused)} disallowed pages without one, "
            f"{len(wrong)} unexpected errors: {_some([f'{k} ({errs[k]})' for k in wrong])}"
        )
    return problems


def pages_only(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records of pages, without those of sitemaps (`sitemap_urls` set)."""
    return [r for r in records if r.get("sitemap_urls") is None]


def fetched_more_than_once(log: Iterable[LoggedRequest]) -> dict[str, int]:
    """`host/path` → times requested, for pages requested more than once (robots.txt aside)."""
    seen = Counter(r.host + r.path for r in log if r.path != "/robots.txt")
    return {k: n for k, n in sorted(seen.items()) if n > 1}


def assert_polite(log: Iterable[LoggedRequest], delay: float, slack: float = 0.02) -> None:
    """`politeness_problems` as an assertion."""
    problems = politeness_problems(log, delay, slack)
    assert not problems, f"{len(problems)} politeness violations: " + "; ".join(problems[:_SHOWN])


def assert_recorded_once(
    records: Sequence[Mapping[str, Any]],
    reachable: set[str],
    disallowed: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """`recording_problems` as an assertion."""
    problems = recording_problems(records, reachable, disallowed)
    assert not problems, "; ".join(problems)


def _some(keys: Sequence[str], counts: Mapping[str, int] | None = None) -> str:
    shown = [f"{k} ×{counts[k]}" if counts else k for k in keys[:_SHOWN]]
    return ", ".join(shown) + (" …" if len(keys) > _SHOWN else "")
