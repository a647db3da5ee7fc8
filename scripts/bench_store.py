"""Benchmark a frontier store under a simulated crawl (embedded SQLite by default, or Redis).

Claims batches of leases over many hosts, completes each page with links of which most are
duplicates, flushes every 200 ms of wall time, and prints the pages/s the store sustains and the
store's cost per link. Only time spent inside store calls is counted as store time.

    python scripts/bench_store.py --pages 20000
    python scripts/bench_store.py --backend redis            # a private redis-server in a temp dir
    python scripts/bench_store.py --backend redis --redis-url redis://host:6379/0 --job bench

With Redis it also prints the round trips per page (requests the store sent, and EVALSHA calls the
server counted). `--redis-url` must not point at a Redis whose data matters: the job is opened fresh.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from crawler.core.urlitem import UrlItem
from frontier.redis.store import RedisStore
from frontier.sqlite.store import SqliteStore
from frontier.store import FrontierStore, HostLimits, Outcome


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=20_000, help="pages to complete")
    p.add_argument("--hosts", type=int, default=1_000)
    p.add_argument("--batch", type=int, default=64, help="claim limit per call")
    p.add_argument("--links", type=int, default=30, help="links per page")
    p.add_argument("--dup", type=float, default=0.8, help="fraction of links already seen")
    p.add_argument("--flush-every", type=float, default=0.2, help="seconds of wall time between flushes")
    p.add_argument("--path", type=Path, default=None, help="database directory (default: a temp dir)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--backend", choices=("sqlite", "redis"), default="sqlite")
    p.add_argument("--redis-url", default=None, help="Redis to use (default: start a private redis-server)")
    p.add_argument("--job", default="bench", help="Redis job name (its store keys are deleted first)")
    p.add_argument("--appendonly", action="store_true", help="private redis-server: AOF with appendfsync always")
    return p.parse_args()


async def open_store(args: argparse.Namespace, folder: Path, *, fresh: bool) -> FrontierStore:
    """The store under test: SQLite in `folder`, or the Redis job at `args.redis_url`."""
    if args.backend == "redis":
        return await RedisStore.open(args.redis_url, job=args.job, host_limits=lambda _h: HostLimits(), fresh=fresh)
    return await SqliteStore.open(folder, host_limits=lambda _h: HostLimits(), fresh=fresh)


async def evalsha_stats(store: FrontierStore) -> tuple[int, int]:
    """EVALSHA calls and µs the Redis server has counted ((0, 0) for SQLite)."""
    if not isinstance(store, RedisStore):
        return 0, 0
    stats = (await store._r.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


async def run(args: argparse.Namespace, folder: Path) -> None:
    """Run the simulated crawl and print the figures."""
    rng = random.Random(args.seed)
    hosts = [f"h{i}.test" for i in range(args.hosts)]
    known: list[UrlItem] = []
    serial = 0

    def new_link(host: str, depth: int) -> UrlItem:
        nonlocal serial
        serial += 1
        item = UrlItem(f"http://{host}/page/{serial}?q={serial * 7919 % 104729}", host, depth)
        known.append(item)
        return item

    store = await open_store(args, folder, fresh=True)
    seeds = [new_link(h, 0) for h in hosts for _ in range(5)]
    await store.add(seeds, 0.0)
    await store.flush()
    trips0 = getattr(store, "round_trips", 0)
    evalsha0, usec0 = await evalsha_stats(store)

    n_dup = round(args.links * args.dup)
    store_time = 0.0
    flushes = 0
    flush_times: list[float] = []
    links_added = 0
    pages = 0
    now = 1.0
    wall0 = last_flush = time.perf_counter()
    while pages < args.pages:
        t = time.perf_counter()
        leases = await store.claim(now, args.batch)
        store_time += time.perf_counter() - t
        if not leases:
            raise SystemExit(f"frontier ran dry after {pages} pages")
        outcomes = []
        for lease in leases:
            # Links mostly point back into the same site, like real pages do.
            links = [known[rng.randrange(len(known))] for _ in range(n_dup)]
            links += [
                new_link(lease.item.host if rng.random() < 0.7 else rng.choice(hosts), lease.item.depth + 1)
                for _ in range(args.links - n_dup)
            ]
            outcomes.append(Outcome(lease, "done", host_due=now, links=links))
        t = time.perf_counter()
        await store.complete(outcomes, now)
        store_time += time.perf_counter() - t
        pages += len(leases)
        links_added += len(leases) * args.links
        now += 0.01
        if time.perf_counter() - last_flush >= args.flush_every:
            t = time.perf_counter()
            await store.flush()
            flush_times.append(time.perf_counter() - t)
            store_time += flush_times[-1]
            last_flush = time.perf_counter()
            flushes += 1
    trips = getattr(store, "round_trips", 0) - trips0
    evalsha, usec = await evalsha_stats(store)
    evalsha, usec = evalsha - evalsha0, usec - usec0
    add_us = await _time_add(store, known, rng, new_link, hosts, now)
    t = time.perf_counter()
    await store.close()
    store_time += time.perf_counter() - t
    wall = time.perf_counter() - wall0

    counts_store = await open_store(args, folder, fresh=False)
    counts = await counts_store.counts()
    if isinstance(counts_store, RedisStore):
        used = (await counts_store._r.info("memory"))["used_memory"]
        size_line = f"redis used_memory     {used / 1e6:.1f} MB (whole server)"
    else:
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        size_line = f"database size         {size / 1e6:.1f} MB"
    await counts_store.close()
    shape = f"{args.batch}-lease claims, {args.hosts:,} hosts, {flushes} flushes"
    print(f"pages completed       {pages:,} ({shape})")
    print(f"links offered         {links_added:,} ({args.dup:.0%} duplicates)")
    print(f"store time            {store_time:.2f} s  (whole loop incl. simulation {wall:.2f} s)")
    print(f"store throughput      {pages / store_time:,.0f} pages/s")
    print(f"store cost per link   {store_time / links_added * 1e6:.2f} µs  (claim+complete+add+flush)")
    mean_flush = sum(flush_times) / max(len(flush_times), 1)
    max_flush = max(flush_times, default=0.0)
    print(f"flush (commit)        {mean_flush * 1e3:.1f} ms mean, {max_flush * 1e3:.1f} ms max")
    print(f"add of 100 links      {add_us:.0f} µs per call (80 duplicates, 20 new)")
    print(f"final counts          {counts}")
    if args.backend == "redis":
        print(f"round trips per page  {trips / pages:.3f} sent, {evalsha / pages:.3f} EVALSHA counted by Redis")
        print(
            f"redis script time     {usec / pages:.0f} µs per page ({pages / (usec / 1e6):,.0f} pages/s for one Redis)"
        )
    print(size_line)


async def _time_add(
    store: FrontierStore,
    known: list[UrlItem],
    rng: random.Random,
    new_link: Callable[[str, int], UrlItem],
    hosts: list[str],
    now: float,
) -> float:
    """Mean µs of one `add` of 100 links, 80 of them already seen."""
    batches = [
        [known[rng.randrange(len(known))] for _ in range(80)] + [new_link(rng.choice(hosts), 1) for _ in range(20)]
        for _ in range(200)
    ]
    t = time.perf_counter()
    for batch in batches:
        await store.add(batch, now)
    return (time.perf_counter() - t) / len(batches) * 1e6


def main() -> None:
    """Entry point."""
    args = _parse()
    if args.path is not None:
        args.path.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args, args.path))
        return
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        if args.backend == "redis" and args.redis_url is None:
            from redis_server import RedisServer  # tests/redis_server.py: a private server on a free port

            with RedisServer(Path(tmp) / "redis", appendonly=args.appendonly) as server:
                args.redis_url = server.url
                asyncio.run(run(args, Path(tmp)))
            return
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
