"""`crawler explain`: gather what the crawl knows about one URL and decide the one-line verdict.

Every judgement is made by the code the crawl itself uses: normalization (`core/urlnorm`), scope and trap
rules (`Ingest.reason`), robots.txt matching (`fetch/robots_explain` over `robots_rules`); the store says
where the URL is (`frontier.inspect.Inspector`), the record logs say what happened to it
(`output/lookup`). Nothing here writes anything. The result is a JSON-ready dict (`--json` prints it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from crawler.app.explain_scope import scope_detail
from crawler.core.config import Config
from crawler.core.errors import CrawlError, ErrorType
from crawler.core.stats import Stats
from crawler.core.urlnorm import ParamStripper, host_key, normalize, origin
from crawler.fetch.robots_explain import explain_robots
from crawler.fetch.robots_rules import parse_robots
from crawler.ingest.admit import Ingest
from crawler.ingest.bloom import SeenBloom
from crawler.ingest.scope import make_scope
from crawler.output.lookup import Found, RecordRef, find_url
from frontier.inspect import HostState, Inspector, UrlState

__all__ = ["Sources", "explain_url"]

#: robots.txt redirects followed when reading kept answers (as `RobotsCache` follows them).
_ROBOTS_HOPS = 5
#: Record fields shown (the whole record is in the log at the given offset).
_RECORD_FIELDS = (
    "status",
    "final_url",
    "depth",
    "fetched_at",
    "title",
    "error",
    "attempts",
    "dead_letter",
    "near_duplicate_of",
    "redirects",
    "redirect_to",
    "links_followed",
)


@dataclass
class Sources:
    """Where the facts come from, opened by `crawler.app.explain` for one mode."""

    mode: str  # "embedded" or "redis"
    inspector: Inspector
    config: Config
    allow_domains: list[str]
    record_paths: list[Path]
    waits: list[dict[str, Any]] = field(default_factory=list)  # hosts held back (published by the crawl)
    running: bool | None = None  # whether a crawl is working on it now (None: cannot tell)
    notes: list[str] = field(default_factory=list)


async def explain_url(raw: str, src: Sources, now: float | None = None) -> dict[str, Any]:
    """Everything known about `raw` (as given: it is normalized first), with a verdict; raises CrawlError
    (invalid_url) when it is not a URL the crawler could ever fetch."""
    now = time.time() if now is None else now
    cfg = src.config
    strip = ParamStripper(list(cfg.crawl.strip_params))
    url = normalize(raw, None, strip)
    host = host_key(url)
    out: dict[str, Any] = {"url": raw, "normalized": url, "normalization": _changes(raw, url, strip)}
    out["duplicate_of"] = url if out["normalization"] else None
    state = await src.inspector.url_state(url, host)
    host_state = await src.inspector.host_state(host)
    found = find_url(url, src.record_paths) if src.record_paths else Found()
    out["frontier"] = _frontier(state, cfg, now)
    out["robots"] = await _robots(src.inspector, url, cfg, now)
    out["host"] = _host(host_state, cfg, host, out["robots"].get("crawl_delay"))
    latest = found.latest
    out["record"] = _record(latest) if latest is not None else None
    out["records"] = len(found.records)
    out["linked_from"] = _link(found.linked_from)
    out["redirected_from"] = _link(found.redirected_from)
    depth = _depth(state, latest, found.linked_from)
    ingest = Ingest(cfg, make_scope(cfg, src.allow_domains), Stats(), bloom=SeenBloom(16, 0.01))
    reason = ingest.reason(url, host, depth if depth is not None else 0)
    out["scope"] = scope_detail(reason, url, host, depth, cfg, ingest.scope) if reason else None
    waits = [w for w in src.waits if w.get("host") == host]
    pace = out["host"]["pace"] if out["host"] else cfg.for_host(host).delay
    out["waiting"] = _waiting(state, host_state, pace, waits, src, now) if state.place == "queued" else None
    out["crawl"] = {"mode": src.mode, "running": src.running, "hosts_waiting": waits}
    verdict, summary = _verdict(out, state, host_state, found)
    out["verdict"], out["summary"] = verdict, summary
    out["known"] = verdict != "unknown"
    out["notes"] = list(src.notes)
    if src.mode == "redis" and not src.record_paths:
        out["notes"].append("no record logs searched: pass -o with the workers' output folder")
    first = ("url", "normalized", "verdict", "summary", "known", "duplicate_of", "normalization")
    return {**{k: out[k] for k in first}, **out}


def _changes(raw: str, url: str, strip: ParamStripper) -> list[str]:
    """What normalization did to `raw` (empty when it was already canonical)."""
    if raw == url:
        return []
    changes: list[str] = []
    base, hashmark, fragment = raw.partition("#")
    if hashmark:
        changes.append(f"fragment #{fragment} dropped")
    try:
        unstripped = normalize(base)  # canonical, but every parameter kept
    except CrawlError:
        unstripped = url
    if unstripped != url:
        before = [k for k, _ in parse_qsl(unstripped.partition("?")[2], keep_blank_values=True)]
        after = {k for k, _ in parse_qsl(url.partition("?")[2], keep_blank_values=True)}
        gone = [k for k in dict.fromkeys(before) if k not in after]
        changes.append(f"parameters stripped: {', '.join(gone)}" if gone else "path parameters stripped")
    if unstripped != base:
        changes.append(f"written canonically as {unstripped}")
    return changes


def _frontier(state: UrlState, cfg: Config, now: float) -> dict[str, Any]:
    seen_at = state.seen_at
    item = state.item
    return {
        "seen_at": seen_at,
        "seen_expired": seen_at is not None and now - seen_at > cfg.crawl.seen_ttl,
        "place": state.place,
        "depth": item.depth if item else None,
        "attempts": item.attempts if item else None,
        "not_before": state.not_before if state.place == "queued" else None,
        "ahead": state.ahead if state.place == "queued" else None,
        "lease_expires": state.lease_expires,
        "error": state.error,
        "died_at": state.died_at,
    }


def _host(state: HostState | None, cfg: Config, host: str, robots_delay: float | None) -> dict[str, Any] | None:
    if state is None:
        return None
    delay = cfg.for_host(host).delay
    # The store learns a Crawl-delay after the host's first fetch; the kept robots.txt says it sooner.
    crawl_delay = robots_delay if robots_delay else (state.spacing if state.spacing > delay else None)
    return {
        "host": host,
        "due_at": state.due_at,
        "spacing": state.spacing,
        "delay": delay,
        "crawl_delay": crawl_delay,
        "pace": max(delay, crawl_delay or 0.0, state.spacing),  # seconds between request starts
        "concurrency": state.concurrency,
        "inflight": state.inflight,
        "queued": state.queued,
        "budget": state.budget,
        "admitted": state.admitted,
    }


def _record(ref: RecordRef) -> dict[str, Any]:
    rec = ref.record
    out = {k: rec.get(k) for k in _RECORD_FIELDS}
    out.update(file=str(ref.path), offset=ref.offset)
    return out


def _link(ref: RecordRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    rec = ref.record
    return {
        "url": rec.get("url"),
        "depth": rec.get("depth"),
        "links_followed": rec.get("links_followed"),
        "file": str(ref.path),
        "offset": ref.offset,
    }


def _depth(state: UrlState, latest: RecordRef | None, linked: RecordRef | None) -> int | None:
    """The URL's depth: the store's or its record's; else one more than the first page linking to it."""
    if state.item is not None:
        return state.item.depth
    if latest is not None and isinstance(latest.record.get("depth"), int):
        return int(latest.record["depth"])
    if linked is not None and isinstance(linked.record.get("depth"), int):
        return int(linked.record["depth"]) + 1
    return None


async def _robots(inspector: Inspector, url: str, cfg: Config, now: float) -> dict[str, Any]:
    """The kept robots.txt answer for the URL's origin (redirects followed) and what it says about the URL."""
    token = cfg.crawl.product_token
    robots_url = origin(url) + "/robots.txt"
    kept = await inspector.kept_robots(robots_url)
    hops = 0
    while kept is not None and 300 <= kept.status < 400 and kept.location and hops < _ROBOTS_HOPS:
        hops += 1
        kept = await inspector.kept_robots(kept.location)
    if kept is None:
        return {"url": robots_url, "kept": False, "allowed": None}
    out: dict[str, Any] = {
        "url": kept.url,
        "kept": True,
        "status": kept.status,
        "fetched_at": kept.fetched_at,
        "age_s": round(now - kept.fetched_at, 1),
    }
    if 200 <= kept.status < 300:
        match = explain_robots(kept.body, url, product_token=token)
        rules = parse_robots(kept.body, product_token=token, max_crawl_delay=cfg.politeness.max_crawl_delay)
        out.update(
            crawl_delay=rules.crawl_delay,
            allowed=match.allowed,
            rule=match.rule,
            line=match.line,
            group=match.group,
            group_line=match.group_line,
            note=match.note or None,
        )
    elif 300 <= kept.status < 400:
        out.update(allowed=True, note="too many redirects: allow all (RFC 9309 §2.3.1.2)")
    else:
        out.update(allowed=True, note=f"HTTP {kept.status}: allow all (RFC 9309 §2.3.1.3)")
    return out


def _waiting(
    state: UrlState, host: HostState | None, pace: float, waits: list[dict[str, Any]], src: Sources, now: float
) -> dict[str, Any]:
    """What a queued URL waits for, each with the time it ends when that is known."""
    behind: list[dict[str, Any]] = []
    attempts = state.item.attempts if state.item else 0
    if state.not_before > now:
        detail = f"attempt {attempts + 1} of {src.config.fetch.max_attempts}, after {attempts} failed"
        behind.append({"kind": "retry", "until": state.not_before, "detail": detail})
    for w in waits:
        if w.get("cause") == "robots_txt":
            detail = f"robots.txt unavailable ({w.get('reason')}), {_n(w.get('tries'), 'failed try', 'failed tries')}"
            behind.append({"kind": "robots_txt", "until": w.get("until"), "since": w.get("since"), "detail": detail})
        elif w.get("cause") == "circuit_breaker":
            detail = f"circuit breaker open after {_n(w.get('failures'), 'consecutive failure')}"
            behind.append({"kind": "circuit_breaker", "until": w.get("until"), "detail": detail})
    if host is not None:
        if host.inflight >= host.concurrency:
            detail = f"{host.inflight} of {host.concurrency} requests to the host in flight"
            behind.append({"kind": "host_busy", "until": None, "detail": detail})
        elif host.due_at is not None and host.due_at > now:
            behind.append({"kind": "host_due", "until": host.due_at, "detail": "the host is not due before then"})
        if state.ahead or host.inflight:
            # Each URL ahead (and each in flight, which may not have started) takes one pace of the host.
            start = max(now, host.due_at or now, state.not_before)
            eta = start + (state.ahead + host.inflight) * pace / max(1, host.concurrency)
            detail = f"{_n(state.ahead, 'URL')} ahead of it and {host.inflight} in flight, one every {pace:g} s"
            behind.append({"kind": "queue", "until": eta, "estimate": True, "detail": detail})
    if src.running is False:
        how = "crawler crawl -o OUT resumes it" if src.mode == "embedded" else "no live worker"
        behind.append({"kind": "crawl_stopped", "until": None, "detail": f"no crawl is running ({how})"})
    untils = [b["until"] for b in behind if isinstance(b.get("until"), int | float)]
    return {"until": max(untils) if untils else None, "behind": behind}


def _n(count: Any, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _verdict(out: dict[str, Any], state: UrlState, host: HostState | None, found: Found) -> tuple[str, str]:
    """The verdict and its one-line summary, from the facts already in `out`."""
    rec = out["record"]
    scope = out["scope"]
    robots = out["robots"] or {}
    if state.place == "leased":
        return "in_flight", "being fetched now (leased to a worker)"
    if state.place == "queued":
        waiting = out["waiting"]
        kinds = ", ".join(b["kind"] for b in waiting["behind"]) or "a free fetch slot"
        return "waiting", f"queued, waiting for: {kinds}"
    if state.place == "dead":
        error = state.error or {}
        attempts = state.item.attempts if state.item else "?"
        return "dead_letter", f"gave up after {attempts} attempts: {error.get('type')} ({error.get('message')})"
    if rec is not None:
        error = rec.get("error") or {}
        etype = error.get("type")
        if etype is None:
            if rec.get("near_duplicate_of"):
                return "near_duplicate", f"HTTP {rec.get('status')}, a near-duplicate of {rec['near_duplicate_of']}"
            return "fetched", f"HTTP {rec.get('status')}"
        if rec.get("dead_letter"):
            return "dead_letter", f"gave up after {rec.get('attempts')} attempts: {etype} ({error.get('message')})"
        if etype == ErrorType.ROBOTS_DISALLOWED.value:
            where = f": line {robots.get('line')}, {robots.get('rule')}" if robots.get("rule") else ""
            return "robots_disallowed", f"robots.txt forbids it{where}"
        if etype in (ErrorType.PRIVATE_ADDRESS.value, ErrorType.BAD_PORT.value):
            return etype, f"refused: {error.get('message')}"
        return "failed", f"recorded with error {etype} ({error.get('message')})"
    if found.redirected_from is not None and state.seen_at is not None:
        return "fetched_via_redirect", f"fetched as the redirect target of {found.redirected_from.record.get('url')}"
    if state.seen_at is not None:
        return "done", "finished by the frontier (its record is not in the logs searched)"
    linked = out["linked_from"]
    if linked is not None:
        if scope is not None:
            return "skipped", f"{scope['reason']}: {scope['rule']}"
        if host is not None and host.budget is not None and host.admitted >= host.budget:
            return "skipped", f"over_budget: the host has {host.admitted} URLs queued, its max_pages is {host.budget}"
        if not linked.get("links_followed"):
            return "skipped", f"not_followed: the page linking to it ({linked['url']}) was nofollow or a near-duplicate"
        why = "its seen entry expired, or the crawl stopped before adding it"
        return "not_queued", f"linked from {linked['url']} but not in the frontier ({why})"
    summary = "never seen by this crawl"
    if scope is not None:
        summary += f"; it would be skipped: {scope['reason']} ({scope['rule']})"
    elif robots.get("allowed") is False:
        summary += "; robots.txt would disallow it" + (f" (line {robots['line']})" if robots.get("line") else "")
    return "unknown", summary
