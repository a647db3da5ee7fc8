"""Full-pipeline throughput: `crawler crawl` against a bare aiohttp + selectolax loop, same run, same server.

A separate server process serves many virtual hosts (`h{i}.bench`) of ~23 KB HTML pages that link within
and across hosts. The baseline is the least a crawler can do (fetch, parse links, a set for dedup);
the crawler runs its whole pipeline (robots, politeness bookkeeping, normalization, scope, Bloom +
seen-set, extraction, SimHash, JSONL, SQLite commits). Prints pages/s for both and the ratio; with
`--warc`, the crawler runs once more with WARC output on, and the cost per page of the archive is printed.

    python scripts/bench_crawl.py [--hosts 200] [--pages 25] [--concurrency 64] [--warc] [--metrics]

With `--metrics` the crawler also runs with its Prometheus endpoint on (`--metrics-port`), scraped every
second as Prometheus would, alternating with runs without it, and the best run of each is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlsplit

ROOT = Path(__file__).resolve().parent.parent
WORDS = [
    "river",
    "stone",
    "lantern",
    "copper",
    "meadow",
    "orbit",
    "velvet",
    "harbor",
    "signal",
    "thistle",
    "quartz",
    "ember",
    "falcon",
    "willow",
    "prism",
    "cobalt",
    "tundra",
    "sonnet",
    "galaxy",
    "pepper",
    "marble",
    "canyon",
    "violet",
    "beacon",
    "saddle",
    "nectar",
    "glacier",
    "rhythm",
    "fossil",
]


def make_page(host: str, idx: int, hosts: int, pages: int, port: int) -> bytes:
    """A deterministic ~23 KB page with ~60 links (most on the same host, a few to other hosts)."""
    rng = random.Random(f"{host}/{idx}")
    links = [f'<a href="/p{rng.randrange(pages)}.html">same {i}</a>' for i in range(50)]
    for i in range(10):
        other = f"h{rng.randrange(hosts)}.bench"
        links.append(f'<a href="http://{other}:{port}/p{rng.randrange(pages)}.html">other {i}</a>')
    paras = [" ".join(rng.choice(WORDS) for _ in range(120)) for _ in range(22)]
    body = (
        f"<!doctype html><html><head><title>{host} page {idx}</title>"
        f'<meta name="description" content="page {idx} of {host}"></head><body>'
        f"<h1>{host} {idx}</h1>"
        + "".join(f"<p>{p}</p>" for p in paras)
        + "<ul>"
        + "".join(f"<li>{a}</li>" for a in links)
        + "</ul></body></html>"
    )
    return body.encode()


def serve(sock: socket.socket, hosts: int, pages: int) -> None:
    """Server process: answers every host from one port."""
    from aiohttp import web

    port = sock.getsockname()[1]
    cache: dict[tuple[str, int], bytes] = {}

    async def handle(request: web.Request) -> web.Response:
        host = (request.host or "").split(":")[0]
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nDisallow: /private/\n")
        name = request.path.rsplit("/", 1)[-1]
        if name == "":
            name = "p0.html"
        if not (name.startswith("p") and name.endswith(".html")):
            return web.Response(status=404)
        idx = int(name[1:-5])
        key = (host, idx)
        body = cache.get(key)
        if body is None:
            body = cache[key] = make_page(host, idx, hosts, pages, port)
        return web.Response(body=body, content_type="text/html")

    async def main() -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.SockSite(runner, sock, backlog=1024)
        await site.start()
        await asyncio.Event().wait()

    asyncio.run(main())


async def baseline(seeds: list[str], port: int, concurrency: int) -> tuple[int, float]:
    """The bare loop: aiohttp fetch, selectolax links, a set for dedup; returns (pages, seconds)."""
    import aiohttp
    from selectolax.lexbor import LexborHTMLParser

    class Resolver(aiohttp.abc.AbstractResolver):
        async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict]:
            return [
                {"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            ]

        async def close(self) -> None:
            pass

    seen = set(seeds)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for s in seeds:
        queue.put_nowait(s)
    done = 0
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(resolver=Resolver(), limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def work() -> None:
            nonlocal done
            while True:
                url = await queue.get()
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                    tree = LexborHTMLParser(body)
                    for a in tree.css("a[href]"):
                        link = urljoin(url, a.attributes.get("href") or "")
                        if link not in seen and urlsplit(link).hostname.endswith(".bench"):
                            seen.add(link)
                            queue.put_nowait(link)
                    done += 1
                finally:
                    queue.task_done()

        workers = [asyncio.create_task(work()) for _ in range(concurrency)]
        await queue.join()
        for w in workers:
            w.cancel()
    return done, time.perf_counter() - started


def _scrape_every_second(port: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                resp.read()
        except OSError:
            pass  # not up yet, or already gone


def run_crawler(seeds: list[str], concurrency: int, *extra: str, metrics: bool = False) -> tuple[int, float]:
    """The real `crawler crawl` in a subprocess (`extra` flags added; with metrics on and scraped every
    second, if asked); returns (pages recorded, seconds).

    Also sets `run_crawler.cpu`: the CPU seconds (user + system) the crawler process used, a figure a busy
    machine disturbs far less than wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        seed_file = Path(tmp) / "seeds.txt"
        seed_file.write_text("\n".join(seeds) + "\n")
        cmd = [
            sys.executable,
            "-m",
            "crawler",
            "crawl",
            "--seeds",
            str(seed_file),
            "-o",
            str(out),
            "--delay",
            "0",
            "--concurrency",
            str(concurrency),
            "--max-depth",
            "1000",
            "--resolve",
            "*.bench=127.0.0.1",
            "--no-progress",
            *extra,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=False
        )
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        run_crawler.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # type: ignore[attr-defined]
        if proc.returncode != 0:
            raise SystemExit(f"crawler failed:\n{proc.stderr[-3000:]}")
        pages = (out / "pages.jsonl").read_bytes().count(b"\n")
    return pages, elapsed


def main() -> None:
    """Run both and print pages/s and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--pages", type=int, default=25, help="pages per host")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--warc", action="store_true", help="also run the crawler with --warc and compare")
    ap.add_argument("--metrics", action="store_true", help="also run with the metrics endpoint on, and compare")
    args = ap.parse_args()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    server = multiprocessing.get_context("fork").Process(target=serve, args=(sock, args.hosts, args.pages))
    server.start()
    try:
        seeds = [f"http://h{i}.bench:{port}/" for i in range(args.hosts)]
        total = args.hosts * args.pages
        print(f"test web: {args.hosts} hosts x {args.pages} pages (~23 KB each), concurrency {args.concurrency}")
        b_pages, b_secs = asyncio.run(baseline(seeds, port, args.concurrency))
        c_pages, c_secs = run_crawler(seeds, args.concurrency)
        c_cpu = run_crawler.cpu  # type: ignore[attr-defined]
        b_rate, c_rate = b_pages / b_secs, c_pages / c_secs
        print(f"baseline aiohttp+selectolax: {b_pages} pages in {b_secs:.2f}s = {b_rate:.0f} pages/s")
        print(
            f"crawler crawl (full pipeline, incl. process start): {c_pages} pages in {c_secs:.2f}s "
            f"= {c_rate:.0f} pages/s"
        )
        print(f"ratio crawler/baseline: {c_rate / b_rate:.2f}  (reachable pages: about {total})")
        if args.metrics:
            rates: dict[bool, list[float]] = {False: [c_rate], True: []}
            for on in (True, False, True, False, True):  # alternated: this machine's load drifts
                pages, secs = run_crawler(seeds, args.concurrency, metrics=on)
                rates[on].append(pages / secs)
            off, on = max(rates[False]), max(rates[True])
            print("runs (pages/s): off", [round(r) for r in rates[False]], "on", [round(r) for r in rates[True]])
            print(
                f"metrics off: best {off:.0f} pages/s; on (scraped every 1 s): best {on:.0f} pages/s; "
                f"ratio {on / off:.3f}"
            )
        if args.warc:
            w_pages, w_secs = run_crawler(seeds, args.concurrency, "--warc")
            w_cpu = run_crawler.cpu  # type: ignore[attr-defined]
            w_rate = w_pages / w_secs
            print(
                f"crawler crawl --warc: {w_pages} pages in {w_secs:.2f}s = {w_rate:.0f} pages/s "
                f"({w_rate / c_rate:.2f} of the run without WARC); CPU {w_cpu / w_pages * 1000:.2f} ms/page "
                f"against {c_cpu / c_pages * 1000:.2f} ms/page without"
            )
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()
