"""Benchmark Bloom filter candidates for the seen-URL filter: µs per add / lookup and FP rate.

Usage: python scripts/bench_dedup.py [--n 200000] [--error-rate 0.001]
Compares pybloom-live (fixed and scalable), raw rbloom (process-salted hash: not persistable,
shown as the floor), rbloom with the stable xxh3-128 hash, and `crawler.ingest.bloom.SeenBloom`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rbloom import Bloom

from crawler.ingest.bloom import SeenBloom, stable_hash


def urls(n: int, tag: str) -> list[str]:
    """Realistic-looking distinct URLs over 500 hosts."""
    return [f"https://www.host{i % 500}.test/{tag}/articles/2026/{i}/some-slug-{i * 7919 % 100003}" for i in range(n)]


def timed(fn: Callable[[str], object], keys: Iterable[str], n: int) -> float:
    t0 = time.perf_counter()
    for k in keys:
        fn(k)
    return (time.perf_counter() - t0) / n * 1e6


def run(name: str, add: Callable[[str], object], contains: Callable[[str], bool], n: int, rate: float) -> None:
    """Add n URLs, look them all up again, then measure the FP rate on n unseen URLs."""
    seen, unseen = urls(n, "seen"), urls(n, "unseen")
    add_us = timed(add, seen, n)
    hit_us = timed(contains, seen, n)
    missing = sum(1 for k in seen if not contains(k))
    t0 = time.perf_counter()
    fps = sum(1 for k in unseen if contains(k))
    miss_us = (time.perf_counter() - t0) / n * 1e6
    print(
        f"{name:34s} add {add_us:6.2f} µs  lookup(hit) {hit_us:6.2f} µs  lookup(miss) {miss_us:6.2f} µs  "
        f"FP {fps / n:.5f} (configured {rate})  false negatives {missing}"
    )


def main() -> None:
    """Print the comparison table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--error-rate", type=float, default=0.001)
    args = ap.parse_args()
    n, rate = args.n, args.error_rate

    from pybloom_live import BloomFilter, ScalableBloomFilter

    pb = BloomFilter(capacity=n, error_rate=rate)
    run("pybloom_live.BloomFilter", pb.add, pb.__contains__, n, rate)
    ps = ScalableBloomFilter(initial_capacity=n // 8, error_rate=rate, mode=ScalableBloomFilter.SMALL_SET_GROWTH)
    run("pybloom_live.ScalableBloomFilter n/8", ps.add, ps.__contains__, n, rate)
    rb = Bloom(n, rate)
    run("rbloom (builtin hash; not portable)", rb.add, rb.__contains__, n, rate)
    rx = Bloom(n, rate, stable_hash)
    run("rbloom + xxh3_128 hash_func", rx.add, rx.__contains__, n, rate)
    sb = SeenBloom(n, rate)
    run("SeenBloom (within capacity)", sb.add, sb.__contains__, n, rate)
    sg = SeenBloom(n // 8, rate)
    run("SeenBloom n/8 (grows to 4 stages)", sg.add, sg.__contains__, n, rate)
    print(f"SeenBloom n/8 stages: {sg.stages}")


if __name__ == "__main__":
    main()
