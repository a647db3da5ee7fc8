"""Benchmark decode_html + extract (+ simhash64, the render decision) on a generated ~25 KB page with ~100 links.

Usage: python scripts/bench_extract.py [--rounds N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.extract.charset import decode_html
from crawler.extract.html import extract
from crawler.extract.neardup import simhash64
from crawler.extract.sniff import looks_like_html
from crawler.render.policy import RenderPolicy

_WORDS = [
    "crawler",
    "polite",
    "frontier",
    "request",
    "response",
    "server",
    "client",
    "network",
    "latency",
    "page",
    "index",
    "archive",
    "history",
    "science",
    "market",
    "river",
    "mountain",
    "village",
    "station",
    "library",
    "museum",
    "garden",
    "kitchen",
    "winter",
    "summer",
    "journey",
    "article",
    "report",
    "update",
    "review",
    "guide",
    "tutorial",
    "example",
    "reference",
    "manual",
    "notes",
]


def make_page(target_bytes: int = 22_000, links: int = 100, seed: int = 1) -> bytes:
    """A plausible article page: head metadata, nav, paragraphs with inline links, script, footer."""
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 20))).capitalize() + "."

    def link(i: int) -> str:
        rel = ' rel="nofollow"' if i % 25 == 0 else ""
        href = f"/section/{i % 7}/item-{i}.html?ref=nav&amp;p={i}"
        return f'<a href="{href}" class="lnk"{rel}>{sentence()[:24]}</a>'

    head = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>An article about crawling &amp; politeness</title>"
        '<meta name="description" content="A generated article used to benchmark extraction.">'
        '<meta name="robots" content="index, follow"><link rel="canonical" href="https://site.test/a">'
        '<link rel="stylesheet" href="/s.css"><style>body{font:14px sans-serif}.lnk{color:#00e}</style>'
        "<script>window.dataLayer=window.dataLayer||[];function g(){dataLayer.push(arguments)}</script>"
        "</head><body>"
    )
    nav = "<nav><ul>" + "".join(f"<li>{link(i)}</li>" for i in range(20)) + "</ul></nav>"
    parts = [head, nav, "<main><article><h1>Crawling politely</h1>"]
    i = 20
    size = sum(map(len, parts))
    while size < target_bytes - 600:
        body = " ".join(sentence() for _ in range(rng.randint(3, 6)))
        if i < links:
            body += " " + link(i)
            i += 1
        chunk = f'<div class="para"><p>{body}</p></div>'
        parts.append(chunk)
        size += len(chunk)
    while i < links:
        parts.append(link(i))
        i += 1
    parts.append('</article></main><footer><p>&copy; 2026 Example</p><script>g("x")</script></footer>')
    parts.append("</body></html>")
    return "".join(parts).encode("utf-8")


def bench(fn: Callable[[], object], rounds: int) -> float:
    """Best-of-3 mean µs per call."""
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - t0) / rounds * 1e6)
    return best


def main() -> None:
    """Print µs per page for each step."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()

    body = make_page()
    ctype = "text/html; charset=utf-8"
    html = decode_html(body, ctype)
    page = extract(html, "politecrawler")
    print(
        f"page: {len(body):,} bytes, {len(page.links)} links kept, {page.nofollow_links} nofollow, "
        f"{len(page.text):,} chars of text"
    )
    n = args.rounds
    print(f"looks_like_html        {bench(lambda: looks_like_html(body, ctype), n * 10):8.1f} µs")
    print(f"decode_html            {bench(lambda: decode_html(body, ctype), n * 10):8.1f} µs")
    print(f"decode_html (meta)     {bench(lambda: decode_html(body, 'text/html'), n * 10):8.1f} µs")
    print(f"extract                {bench(lambda: extract(html, 'politecrawler'), n):8.1f} µs")
    both = bench(lambda: extract(decode_html(body, ctype), "politecrawler"), n)
    print(f"decode+extract         {both:8.1f} µs")
    print(f"simhash64(page.text)   {bench(lambda: simhash64(page.text), n):8.1f} µs")
    # Runs on every page with a <script> in auto mode (the default), before anything is rendered.
    policy = RenderPolicy()
    print(f"render policy decide   {bench(lambda: policy.decide('site.test', 'auto', html, page), n):8.1f} µs")


if __name__ == "__main__":
    main()
