"""Reading sitemaps: the parser alone, then parser + normalization into frontier items, per URL and per file.

A 50,000-URL `<urlset>` (the protocol's maximum, ~4.5 MB with lastmods) plain and gzipped, and a 200 MiB
gzip bomb; prints time per file, µs per URL and the peak of traced memory.

    python scripts/bench_sitemap.py [--urls 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.app.builder import make_scope
from crawler.core.config import config_from_dict
from crawler.core.record import Record
from crawler.core.stats import Stats
from crawler.core.urlitem import SITEMAP, UrlItem
from crawler.extract.sitemap import parse_sitemap
from crawler.fetch.http import Response
from crawler.ingest.admit import Ingest
from crawler.worker.sitemaps import SitemapReader

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def urlset(n: int) -> bytes:
    rows = "".join(
        f"<url><loc>https://www.example.com/products/item-{i}?color=blue</loc>"
        f"<lastmod>2024-05-{1 + i % 28:02d}</lastmod><changefreq>weekly</changefreq></url>\n"
        for i in range(n)
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{NS}">\n{rows}</urlset>\n'.encode()


def bomb(mib: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(f'<urlset xmlns="{NS}">'.encode())]
    parts += [comp.compress(b" " * 2**20) for _ in range(mib)]
    return b"".join([*parts, comp.flush()])


def measure(label: str, n: int, rounds: int, run: Callable[[], object]) -> None:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()  # one more round for memory: tracing slows allocation-heavy code tenfold
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    per = f"{best / n * 1e6:6.2f} µs/URL" if n else " " * 13
    print(f"{label:44s} {best * 1000:8.1f} ms  {per}  peak {peak / 2**20:6.1f} MiB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--urls", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    plain = urlset(args.urls)
    packed = gzip.compress(plain)
    big = bomb(200)
    print(f"urlset of {args.urls} URLs: {len(plain) / 2**20:.1f} MiB, gzipped {len(packed) / 2**20:.2f} MiB")
    measure("parse, plain XML", args.urls, args.rounds, lambda: parse_sitemap(plain))
    measure("parse, gzipped XML", args.urls, args.rounds, lambda: parse_sitemap(packed))
    measure(f"parse, 200 MiB gzip bomb ({len(big) // 1024} KiB)", 0, args.rounds, lambda: parse_sitemap(big))

    cfg = config_from_dict({"crawl": {"allow_domains": ["www.example.com"]}})
    item = UrlItem("https://www.example.com/sitemap.xml", "www.example.com", 0, kind=SITEMAP)
    resp = Response(item.url, 200, {}, packed, "application/gzip", None, None, None, 1.0, len(packed), None)

    def read() -> None:
        stats = Stats()
        reader = SitemapReader(cfg, Ingest(cfg, make_scope(cfg, []), stats), stats, cfg.for_host)
        rec = Record(item.url, item.url)
        _, items = asyncio.run(reader.read(rec, resp, item.url, item, 1000))
        assert len(items) == args.urls, len(items)

    measure("read into items (parse, normalize, admit)", args.urls, args.rounds, read)


if __name__ == "__main__":
    main()
