"""Render ~200 small JS pages from a loopback test web with a BrowserPool; print pages/s and peak RSS.

Each page loads a shared script that fetch()es a per-page JSON list and turns it into links, so every
render makes two subrequests through a real HttpFetcher. RSS is the sum of VmRSS over the pool's
Chromium processes plus this process, sampled every 100 ms
(the RSS sum counts shared pages once per process, so PSS is printed too).

    PYTHONPATH=. python scripts/bench_render.py [--pages 200] [--size 4] [--settle-ms 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.extract.html import extract
from crawler.fetch.http import HttpFetcher
from crawler.fetch.net import AddressPolicy
from crawler.render.pool import BrowserPool
from crawler.render.types import SubResponse
from tests.testweb import Page, Site, TestWeb

HOSTS = 4
APP_JS = """fetch(document.body.dataset.src).then(r => r.json()).then(list => {
  const nav = document.getElementById('root');
  for (const u of list) { const a = document.createElement('a'); a.href = u; a.textContent = u; nav.appendChild(a); }
});"""


def build_sites(pages: int) -> dict[str, Site]:
    """`pages` JS pages spread over HOSTS hosts, each with its JSON link list and the shared script."""
    sites: dict[str, dict[str, Page]] = {f"js{h}.test": {"/app.js": Page(APP_JS)} for h in range(HOSTS)}
    for i in range(pages):
        host = f"js{i % HOSTS}.test"
        sites[host][f"/p{i}.html"] = Page(
            f'<!doctype html><html><head><title>page {i}</title></head><body data-src="/d{i}.json">'
            f'<div id="root"></div><script src="/app.js"></script></body></html>'
        )
        links = ",".join(f'"/p{(i + k) % pages}.html"' for k in range(1, 6))
        sites[host][f"/d{i}.json"] = Page(f"[{links}]", headers={"Content-Type": "application/json"})
    return {h: Site(p) for h, p in sites.items()}  # type: ignore[arg-type]


def proc_kib(pid: int, path: str, field: str) -> int:
    """A `field:` value in KiB from /proc/PID/`path`, 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


async def sample_memory(pool: BrowserPool, peak: list[int], stop: asyncio.Event) -> None:
    """Track peak summed VmRSS and Pss of the browser processes plus this one until `stop` is set."""
    me = os.getpid()
    while not stop.is_set():
        pids = [me, *pool.browser_pids()]
        peak[0] = max(peak[0], sum(proc_kib(p, "status", "VmRSS:") for p in pids))
        # RSS counts shared pages (libraries, shared memory) once per process; Pss splits them.
        peak[1] = max(peak[1], sum(proc_kib(p, "smaps_rollup", "Pss:") for p in pids))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def main(pages: int, size: int, settle_ms: int) -> None:
    """Run the benchmark and print its numbers."""
    with TestWeb(build_sites(pages)) as web:
        policy = AddressPolicy(resolve=web.resolve_map())
        async with HttpFetcher(policy, user_agent="bench-render/1.0", max_per_host=8) as fetcher:
            docs = []
            for i in range(pages):
                url = web.url(f"js{i % HOSTS}.test", f"/p{i}.html")
                resp = await fetcher.fetch(url)
                docs.append((url, resp.body, resp.headers["content-type"]))

            async def fetch_sub(url: str, kind: str) -> SubResponse | None:
                resp = await fetcher.fetch(url)
                return SubResponse(resp.status, dict(resp.headers), resp.body)

            async with BrowserPool(size=size, user_agent="bench-render/1.0", settle_ms=settle_ms) as pool:
                peak = [0, 0]
                stop = asyncio.Event()
                sampler = asyncio.create_task(sample_memory(pool, peak, stop))
                started = time.perf_counter()
                results = await asyncio.gather(
                    *(pool.render(u, body=b, content_type=c, fetch_sub=fetch_sub) for u, b, c in docs),
                    return_exceptions=True,
                )
                elapsed = time.perf_counter() - started
                stop.set()
                await sampler
                nproc = len(pool.browser_pids())

    failed = [r for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    with_links = sum(1 for r in ok if len(extract(r.html).links) == 5)
    lat = sorted(r.elapsed_ms for r in ok)
    print(f"pages={pages} pool={size} settle_ms={settle_ms} chromium_processes={nproc}")
    print(f"rendered {len(ok)} ({with_links} with all 5 script-built links), failed {len(failed)}")
    print(f"elapsed {elapsed:.2f} s -> {len(ok) / elapsed:.1f} rendered pages/s")
    if lat:
        print(f"render latency ms: p50 {lat[len(lat) // 2]:.0f}  p95 {lat[int(len(lat) * 0.95)]:.0f}")
    print(f"peak memory (chromium + this process): RSS sum {peak[0] / 1024:.0f} MiB, PSS {peak[1] / 1024:.0f} MiB")
    for exc in failed[:3]:
        print(f"  failure: {exc!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--size", type=int, default=4)
    parser.add_argument("--settle-ms", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.pages, args.size, args.settle_ms))
