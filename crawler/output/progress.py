"""Progress reporting: a live line on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("crawler.output.progress")


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


#: Waiting hosts named in the progress line; more are counted.
SHOWN_WAITING = 3


def describe_waiting(waiting: list[dict[str, Any]]) -> str:
    """`waiting 2: a.test (dns_error, try 3, next in 4s), b.test (503, try 1, next in 2s)`, or ""."""
    if not waiting:
        return ""
    shown = ", ".join(
        f"{w['host']} ({w['reason']}, try {w['tries']}, next in {max(0.0, w['retry_in']):.0f}s)"
        for w in waiting[:SHOWN_WAITING]
    )
    more = f" +{len(waiting) - SHOWN_WAITING} more" if len(waiting) > SHOWN_WAITING else ""
    return f"  waiting for robots.txt {len(waiting)}: {shown}{more}"


def describe(snap: dict[str, Any], max_pages: int) -> str:
    """One human line: pages done, queued, rate, errors, active hosts, ETA when a limit is set, and the
    hosts waiting for their robots.txt with the reason (else a stalled crawl would look idle for no reason)."""
    rate = snap.get("pages_per_s", 0.0)
    eta = None
    if max_pages and rate > 0:
        eta = max(0.0, (max_pages - snap["pages"]) / rate)
    return (
        f"pages {snap['pages']}"
        + (f"/{max_pages}" if max_pages else "")
        + f"  queued {snap.get('queued', 0)}  in-flight {snap.get('in_flight', 0)}"
        + f"  {rate:.1f} pages/s  errors {snap['failed']}  hosts {snap.get('hosts', 0)}"
        + f"  robots-disallowed {snap['robots_disallowed']}"
        + (f"  unchanged {snap['unchanged']}" if snap.get("unchanged") else "")
        + f"  ETA {_fmt_eta(eta)}"
        + describe_waiting(snap.get("robots_waiting") or [])
    )


async def report_progress(
    snapshot: Callable[[], Awaitable[dict[str, Any]]], max_pages: int, *, interval: float | None = None
) -> None:
    """Run until cancelled: a `rich` live line on a TTY, else a log line every `interval` seconds."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.live import Live

        with Live(console=Console(stderr=True), refresh_per_second=4, transient=False) as live:
            while True:
                live.update(describe(await snapshot(), max_pages))
                await asyncio.sleep(interval or 0.5)
    while True:
        await asyncio.sleep(interval or 10.0)
        log.info("%s", describe(await snapshot(), max_pages))
