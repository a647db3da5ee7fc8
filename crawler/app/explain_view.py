"""`crawler explain`'s human output: the facts of `explain_facts.explain_url` on one screen."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["render"]


def _ago(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def when(ts: float | None, now: float) -> str:
    """`2026-01-02 03:04:05 UTC (in 12 s)` or `(3 min ago)`; `-` for no time."""
    if ts is None:
        return "-"
    if ts <= 0:
        return "at once"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    rel = f"in {_ago(ts - now)}" if ts > now else f"{_ago(now - ts)} ago"
    return f"{stamp} ({rel})"


def _line(label: str, text: str) -> str:
    return f"  {label:<11}{text}"


def render(e: dict[str, Any], now: float) -> str:
    """The explanation as a few labelled lines (one screen)."""
    out = [e["url"]]
    if e["duplicate_of"]:
        out.append(_line("same as", f"{e['normalized']} ({'; '.join(e['normalization'])})"))
    out.append(_line("verdict", f"{e['verdict']}: {e['summary']}"))
    waiting = e.get("waiting")
    if waiting:
        out.append(_line("until", when(waiting["until"], now) if waiting["until"] else "no time known"))
        for b in waiting["behind"]:
            at = f", until {when(b['until'], now)}" + (" (estimate)" if b.get("estimate") else "") if b["until"] else ""
            out.append(_line("", f"- {b['kind']}: {b['detail']}{at}"))
    scope = e.get("scope")
    if scope and e["verdict"] not in ("skipped", "unknown"):  # those summaries name the rule already
        out.append(_line("scope", f"now out of bounds: {scope['reason']}: {scope['rule']}"))
    out += _robots(e.get("robots"), now, e["verdict"])
    rec = e.get("record")
    if rec:
        error = rec.get("error") or {}
        err = f", error {error.get('type')} ({error.get('message')})" if error else ""
        near = f", near-duplicate of {rec['near_duplicate_of']}" if rec.get("near_duplicate_of") else ""
        dead = ", dead letter" if rec.get("dead_letter") else ""
        status = rec.get("status") if rec.get("status") is not None else "-"
        more = f" ({e['records']} records, newest shown)" if e["records"] > 1 else ""
        out.append(
            _line(
                "record",
                f"{rec['file']} @ byte {rec['offset']}{more}: HTTP {status}, depth {rec.get('depth')}, "
                f"attempts {rec.get('attempts')}, fetched {rec.get('fetched_at')}{err}{near}{dead}",
            )
        )
        if rec.get("final_url") and rec["final_url"] != e["normalized"]:
            out.append(_line("", f"final URL {rec['final_url']} after {len(rec.get('redirects') or [])} redirects"))
    out.append(_line("frontier", _frontier(e["frontier"], now)))
    host = e.get("host")
    if host:
        out.append(_line("host", _host(host, now)))
    for key, label in (("linked_from", "linked"), ("redirected_from", "redirected")):
        ref = e.get(key)
        if ref:
            out.append(_line(label, f"from {ref['url']} (depth {ref['depth']}; {ref['file']} @ byte {ref['offset']})"))
    crawl = e["crawl"]
    running = {True: "running", False: "not running", None: "unknown"}[crawl["running"]]
    out.append(_line("crawl", f"{crawl['mode']}, {running}"))
    for note in e.get("notes") or ():
        out.append(_line("note", note))
    return "\n".join(out)


def _robots(r: dict[str, Any] | None, now: float, verdict: str) -> list[str]:
    if not r:
        return []
    if not r.get("kept"):
        return [_line("robots.txt", f"no answer kept for {r['url']} (not fetched yet, failed, or expired)")]
    head = f"{r['url']} (HTTP {r['status']}, fetched {when(r['fetched_at'], now)})"
    lines = [_line("robots.txt", head)]
    allowed = "allows" if r.get("allowed") else "disallows"
    if r.get("rule"):
        lines.append(
            _line("", f"{allowed} it: line {r['line']}: {r['rule']}  (group at line {r['group_line']}: {r['group']})")
        )
    elif r.get("note"):
        group = f" (group at line {r['group_line']}: {r['group']})" if r.get("group") else ""
        lines.append(_line("", f"{allowed} it: {r['note']}{group}"))
    return lines


def _frontier(f: dict[str, Any], now: float) -> str:
    if f["seen_at"] is None and f["place"] is None:
        return "never admitted (not in the seen-set)"
    parts = []
    if f["seen_at"] is not None:
        expired = " (expired: it may be queued again)" if f["seen_expired"] else ""
        parts.append(f"seen {when(f['seen_at'], now)}{expired}")
    place = f["place"]
    if place == "queued":
        tried = f"{f['attempts']} attempt{'' if f['attempts'] == 1 else 's'}"
        parts.append(f"queued at depth {f['depth']} after {tried}, {f['ahead']} ahead on its host")
        if f["not_before"]:
            parts.append(f"not before {when(f['not_before'], now)}")
    elif place == "leased":
        parts.append(f"leased, handed out again {when(f['lease_expires'], now)} if unanswered")
    elif place == "dead":
        error = f["error"] or {}
        parts.append(
            f"dead letter since {when(f['died_at'], now)} after {f['attempts']} attempts: "
            f"{error.get('type')} ({error.get('message')})"
        )
    else:
        parts.append("in no queue (finished)")
    return "; ".join(parts)


def _host(h: dict[str, Any], now: float) -> str:
    pace = f"delay {h['delay']:g} s" + (f", robots.txt Crawl-delay {h['crawl_delay']:g} s" if h["crawl_delay"] else "")
    budget = f", budget {h['admitted']}/{h['budget']}" if h["budget"] is not None else ""
    due = f", next due {when(h['due_at'], now)}" if h["due_at"] is not None else ""
    return f"{h['host']}: {pace}, {h['inflight']}/{h['concurrency']} in flight, {h['queued']} queued{due}{budget}"
