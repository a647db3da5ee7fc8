"""The WARC archive's cost per page: on the event loop (queueing) and in its writer thread (records, digests,
gzip, write), for ~23 KB pages like `bench_crawl.py`'s, at a few gzip levels.

    python scripts/bench_warc.py [--pages 2000] [--batch 50]

The full-pipeline cost is `python scripts/bench_crawl.py --warc` (crawler with and without `--warc`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crawler.core.exchange import Exchange  # noqa: E402
from crawler.core.record import Record  # noqa: E402
from crawler.output.warc import WarcArchive  # noqa: E402
from scripts.bench_crawl import make_page  # noqa: E402


def exchanges(n: int) -> list[Exchange]:
    """`n` distinct pages as the fetcher would hand them over."""
    out = []
    for i in range(n):
        body = make_page(f"h{i % 200}.bench", i, 200, 25, 8080)
        out.append(
            Exchange(
                url=f"http://h{i % 200}.bench:8080/p{i}.html",
                started=time.time(),
                ip="127.0.0.1",
                method="GET",
                target=f"/p{i}.html",
                request_headers=(
                    ("Host", f"h{i % 200}.bench:8080"),
                    ("User-Agent", "PoliteCrawler/0.1"),
                    ("Accept", "text/html"),
                    ("Accept-Encoding", "gzip, deflate, br"),
                ),
                http_version="1.1",
                status=200,
                reason="OK",
                headers=(
                    (b"Content-Type", b"text/html; charset=utf-8"),
                    (b"Content-Length", str(len(body)).encode()),
                    (b"Date", b"Mon, 01 Dec 2026 00:00:00 GMT"),
                    (b"Server", b"Python/3.11 aiohttp/3.14"),
                ),
                payload=body,
            )
        )
    return out


async def run(n: int, batch: int, level: int) -> tuple[float, float, float, int]:
    """Returns (µs per page on the loop, wall µs and CPU µs per page in the writer, bytes written).

    CPU time is the steadier figure on a busy machine: while the loop awaits a flush it does nothing.
    """
    items = exchanges(n)
    with tempfile.TemporaryDirectory() as tmp:
        async with WarcArchive(Path(tmp), writer="bench", user_agent="bench", gzip_level=level) as archive:
            on_loop = 0.0
            cpu = time.process_time()
            started = time.perf_counter()
            for i in range(0, n, batch):
                t = time.perf_counter()
                for ex in items[i : i + batch]:
                    archive.add_exchange(ex)
                    archive.add_page(Record(url=ex.url, final_url=ex.url), ex)
                on_loop += time.perf_counter() - t
                await archive.flush()  # the loop waits here; in a crawl it would go on crawling
            total = time.perf_counter() - started - on_loop
            cpu = time.process_time() - cpu - on_loop
        size = sum(p.stat().st_size for p in (Path(tmp) / "warc").glob("*.warc.gz"))
    return on_loop / n * 1e6, total / n * 1e6, cpu / n * 1e6, size


def main() -> None:
    """Print the per-page costs for gzip levels 1, 6 (the default) and 9."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=50, help="pages per flush (the committer flushes every 50 ms)")
    args = ap.parse_args()
    print(f"{args.pages} pages of ~23 KB, flushed {args.batch} at a time")
    for level in (1, 6, 9):
        loop_us, writer_us, cpu_us, size = asyncio.run(run(args.pages, args.batch, level))
        print(
            f"gzip level {level}: on the event loop {loop_us:.1f} µs/page; writer thread {writer_us:.0f} µs/page "
            f"wall, {cpu_us:.0f} µs/page CPU; {size / args.pages / 1024:.1f} KiB/page on disk"
        )


if __name__ == "__main__":
    main()
