"""Micro-benchmark of URL normalization, host keys and scope checks: prints µs per call.

Usage: python scripts/bench_urlnorm.py [--rounds N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.core.urlnorm import DEFAULT_STRIP_PARAMS, ParamStripper, host_key, normalize, origin
from crawler.ingest.scope import Scope

BASE = "https://www.example.com/dir/page.html?x=1"
RELATIVE = [
    "/path/page?id=3&utm_source=x",
    "/about/team",
    "../other/page.html",
    "article-42.html?ref=home",
    "#top",
    "/search?q=crawler&page=2",
    "/static/img/logo.png",
    "?page=3",
]
ABSOLUTE = [
    "https://www.example.com/path/page?id=3",
    "http://blog.example.org/2024/05/post-title/",
    "https://cdn.example.net/assets/app.js?v=12",
    "https://www.example.com/a/b/c",
]
T = TypeVar("T")

MESSY = [
    "HTTPS://WWW.Example.COM:443/a/./b/../c/%7euser/%e2%82%ac?utm_medium=y&id=1#frag",
    " /path with space/ü?q=ä ",
    "https://user:pw@Bücher.example/x;jsessionid=abc?x=1",
]


def per_call_us(fn: Callable[[T], object], inputs: Sequence[T], rounds: int) -> float:
    """Best-of-5 mean µs per call of `fn` over `inputs`, repeated `rounds` times."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(rounds):
            for x in inputs:
                fn(x)
        best = min(best, time.perf_counter() - t0)
    return best / (rounds * len(inputs)) * 1e6


def main() -> None:
    """Run every case and print one line each."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5000)
    rounds = ap.parse_args().rounds
    strip = ParamStripper(DEFAULT_STRIP_PARAMS)
    urls = [normalize(u, BASE, strip) for u in RELATIVE + ABSOLUTE]
    keys = [host_key(u) for u in urls]
    scope = Scope.for_seeds(["https://www.example.com/"], max_depth=10, max_url_length=2000, max_repeated_segments=3)
    pairs = list(zip(urls, keys, strict=True))
    cases: list[tuple[str, Callable[[str], object], list[str]]] = [
        ("normalize relative (with strip)", lambda h: normalize(h, BASE, strip), RELATIVE),
        ("normalize relative (no strip)", lambda h: normalize(h, BASE), RELATIVE),
        ("normalize absolute (with strip)", lambda h: normalize(h, BASE, strip), ABSOLUTE),
        ("normalize absolute, no base", normalize, ABSOLUTE),
        ("normalize messy (slow path)", lambda h: normalize(h, BASE, strip), MESSY),
        ("host_key", host_key, urls),
        ("origin", origin, urls),
    ]
    for name, fn, inputs in cases:
        print(f"{name:36s} {per_call_us(fn, inputs, rounds):6.2f} µs/call")
    us = per_call_us(lambda p: scope.reason(p[0], p[1], 2), pairs, rounds)
    print(f"{'Scope.reason (in scope)':36s} {us:6.2f} µs/call")


if __name__ == "__main__":
    main()
