"""Throughput of HttpFetcher vs a bare aiohttp `session.get(); await resp.read()` loop, same server, same run.

Client CPU per page is printed too: on a shared machine it is steadier than wall-clock throughput.

A separate server process serves a ~23 KB HTML page as identity and as gzip on 127.0.0.1.
Usage: python scripts/bench_fetch.py [--requests 4000] [--concurrency 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import multiprocessing as mp
import random
import socket
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crawler.fetch.http import HttpFetcher
from crawler.fetch.net import AddressPolicy


def make_page(size: int = 23_000, seed: int = 1) -> bytes:
    """An HTML page of about `size` bytes with text that compresses like real prose."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(800)]
    parts = ["<!doctype html><html><head><title>bench</title></head><body>"]
    n = 0
    while n < size:
        para = " ".join(rng.choice(words) for _ in range(40))
        link = f'<a href="/p{rng.randint(0, 10**6)}.html">{rng.choice(words)}</a>'
        chunk = f"<p>{para} {link}</p>\n"
        parts.append(chunk)
        n += len(chunk)
    parts.append("</body></html>")
    return "".join(parts).encode()


def serve(sock: socket.socket, page: bytes) -> None:
    """Server process: /id (identity) and /gz (gzip) forever."""
    gz = gzip.compress(page, 6)

    async def ident(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html")

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=gz, content_type="text/html", headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/id", ident)
    app.router.add_get("/gz", gzipped)
    web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)


async def run_bare(url: str, n: int, conc: int) -> tuple[float, float]:
    """(pages per second, client CPU microseconds per page) for a bare session loop."""
    conn = aiohttp.TCPConnector(limit=conc, limit_per_host=conc)
    async with aiohttp.ClientSession(connector=conn) as session:
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.get(url) as resp:
                    await resp.read()

        await worker_warmup(session, url)
        t, c = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(conc)))
        return n / (time.perf_counter() - t), (time.process_time() - c) / n * 1e6


async def worker_warmup(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url) as resp:
        await resp.read()


async def run_fetcher(url: str, n: int, conc: int) -> tuple[float, float]:
    """(pages/s, client CPU µs/page) through HttpFetcher (guarded resolver, decoding, caps, deadline)."""
    policy = AddressPolicy({"bench.test": "127.0.0.1"})
    async with HttpFetcher(policy, user_agent="bench", max_connections=conc, max_per_host=conc) as f:
        await f.fetch(url)
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                resp = await f.fetch(url)
                assert resp.status == 200 and len(resp.body) > 20_000

        t, c = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(conc)))
        return n / (time.perf_counter() - t), (time.process_time() - c) / n * 1e6


def main() -> None:
    """Run the comparison and print a small table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    page = make_page()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    proc = mp.get_context("spawn").Process(target=serve, args=(sock, page), daemon=True)
    proc.start()
    time.sleep(1.0)
    print(f"page {len(page)} B identity, {len(gzip.compress(page, 6))} B gzip; "
          f"{args.requests} requests x {args.rounds} rounds, concurrency {args.concurrency}")  # fmt: skip
    try:
        for kind in ("id", "gz"):
            bare_url = f"http://127.0.0.1:{port}/{kind}"
            our_url = f"http://bench.test:{port}/{kind}"
            bare, ours = [], []
            for _ in range(args.rounds):
                # Interleaved so drift (other load on the machine) hits both alike.
                bare.append(asyncio.run(run_bare(bare_url, args.requests, args.concurrency)))
                ours.append(asyncio.run(run_fetcher(our_url, args.requests, args.concurrency)))
            b, o = statistics.median(r[0] for r in bare), statistics.median(r[0] for r in ours)
            bc, oc = statistics.median(r[1] for r in bare), statistics.median(r[1] for r in ours)
            print(f"{kind:>3}: bare aiohttp {b:6.0f} pages/s {bc:5.0f} µs CPU/page | "
                  f"HttpFetcher {o:6.0f} pages/s {oc:5.0f} µs CPU/page | "
                  f"ratio throughput {o / b:.2f}, CPU {oc / bc:.2f}  (medians of {args.rounds})")  # fmt: skip
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()
