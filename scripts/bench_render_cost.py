"""Does a started browser slow the crawl of plain pages? `crawler crawl` with and without one JS page.

nginx serves a static test web (`h{i}.bench`, ~23 KB pages that each load a script, as Sphinx pages do,
and have plenty of links and text, so auto mode does not render them) and, in the "browser" runs, one
more host whose only page is an empty app root filled by JavaScript: auto mode renders it, which starts
Chromium early in the crawl. Both runs crawl the same plain pages with render = "auto"; the app page is the
first seed, so Chromium starts at the crawl's beginning and the browser run crawls its plain pages with
a browser up. The figures are plain-page records per second (from `fetched_at`) in both runs over the
same stretch (after the render was recorded: the browser is up and idle; from the browser's start: its
launch and the render included; the whole crawl), their ratio, and CPU per plain page incl. Chromium.
Rounds are interleaved and medians printed.

    python scripts/bench_render_cost.py [--hosts 20] [--pages 300] [--rounds 3]

Needs nginx (`apt-get install nginx-light`) and Chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import calendar
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_crawl import make_page  # noqa: E402

APP_HTML = (
    "<!doctype html><html><head><title>app</title></head><body><div id='root'></div>"
    "<script src='/index.js'></script><script src='/app.js'></script></body></html>"
)
# Like a Sphinx search index: a few MB of script to download, parse and run (Chromium's own CPU cost).
BIG_JS = "window.index = [" + ",".join(f'"entry {i} of the search index"' for i in range(120_000)) + "];"
APP_JS = (
    "const r = document.getElementById('root');"
    "for (let i = 0; i < 5; i++) { const a = document.createElement('a'); a.href = '/x' + i + '.html';"
    " a.textContent = 'x' + i; r.appendChild(a); }"
)
DOC_JS = "window.docs = true;"


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_web(www: Path, hosts: int, pages: int, port: int) -> None:
    """The static files: plain hosts, each page loading /doc.js, and the JS app host."""
    for h in range(hosts):
        host = f"h{h}.bench"
        d = www / host
        d.mkdir(parents=True)
        (d / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
        (d / "doc.js").write_text(DOC_JS)
        for i in range(pages):
            body = make_page(host, i, hosts, pages, port)
            body = body.replace(b"</head>", b'<script src="/doc.js"></script></head>', 1)
            (d / f"p{i}.html").write_bytes(body)
        (d / "index.html").write_bytes((d / "p0.html").read_bytes())
    app = www / "app.bench"
    app.mkdir()
    (app / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    (app / "index.html").write_text(APP_HTML)
    (app / "app.js").write_text(APP_JS)
    (app / "index.js").write_text(BIG_JS)
    for i in range(5):
        (app / f"x{i}.html").write_text(f"<html><head><title>x{i}</title></head><body>x{i}</body></html>")


def start_nginx(tmp: Path, www: Path, port: int) -> subprocess.Popen[bytes]:
    """nginx serving `www/$host` on `port`, one worker process (the crawler keeps the other core)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx not found: apt-get install nginx-light")
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        "events { worker_connections 4096; }\n"
        "http {\n  access_log off;\n  keepalive_requests 100000;\n"
        "  types { text/html html; application/javascript js; text/plain txt; }\n"
        f"  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;\n"
        f"  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {www}/$host; index index.html; }}\n}}\n"
    )
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"nginx failed: {proc.stderr.read().decode() if proc.stderr else ''}") from None
            time.sleep(0.05)
    raise SystemExit("nginx did not start")


def parse_ts(value: str) -> float:
    """`fetched_at` (ISO 8601 UTC with ms) as Unix seconds."""
    base, _, ms = value.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(ms or 0) / 1000


def browser_started(log: str) -> float | None:
    """When the crawler logged "browser started" (Unix seconds), None if it did not."""
    for line in log.splitlines():
        if "browser started" in line:
            stamp, _, ms = line[:23].partition(",")
            return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000
    return None


def crawl(tmp: Path, seeds: list[str], tag: str) -> tuple[list[dict], float, float | None]:
    """One `crawler crawl` in a subprocess: its records (in output order), the CPU seconds it and its
    children (the browser's processes included) used, and when its browser started."""
    out = tmp / f"out-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    seed_file = tmp / f"seeds-{tag}.txt"
    seed_file.write_text("\n".join(seeds) + "\n")
    cmd = [sys.executable, "-m", "crawler", "crawl", "--seeds", str(seed_file), "-o", str(out)]
    cmd += ["--delay", "0", "--concurrency", "64", "--max-depth", "1000", "--resolve", "*.bench=127.0.0.1"]
    cmd += ["--no-progress"]  # render = "auto" is the default
    err = tmp / f"stderr-{tag}.txt"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"crawler failed ({proc.returncode}):\n{err.read_text()[-3000:]}")
    records = [orjson.loads(line) for line in (out / "pages.jsonl").read_bytes().splitlines()]
    return records, usage.ru_utime + usage.ru_stime, browser_started(err.read_text())


def is_plain(record: dict) -> bool:
    """A page of the plain hosts (not the app host)."""
    return "//app.bench" not in record["url"]


def plain_rate(records: list[dict]) -> float:
    """Plain records per second, first fetch to last."""
    plain = [parse_ts(r["fetched_at"]) for r in records if is_plain(r)]
    return len(plain) / (max(plain) - min(plain))


def rate_after(records: list[dict], offset: float) -> float | None:
    """Plain records per second among fetches that started `offset` seconds or more into the crawl."""
    plain = sorted(parse_ts(r["fetched_at"]) for r in records if is_plain(r))
    start = plain[0] + offset
    after = [t for t in plain if t >= start]
    if len(after) < 100 or after[-1] - start <= 0:
        return None
    return len(after) / (after[-1] - start)


def render_span(records: list[dict]) -> float:
    """Seconds from the crawl's first plain fetch until the rendered record was written (approximately: the
    latest fetch start among the records written before it; records are written in completion order)."""
    first = min(parse_ts(r["fetched_at"]) for r in records if is_plain(r))
    at = next((i for i, r in enumerate(records) if r.get("rendered")), None)
    if at is None:
        return -1.0
    return max(parse_ts(r["fetched_at"]) for r in records[: at + 1]) - first


def main() -> None:
    """Interleave rounds of both runs; print the plain-page rates and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--pages", type=int, default=300, help="plain pages per host")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        www = tmp / "www"
        write_web(www, args.hosts, args.pages, port)
        nginx = start_nginx(tmp, www, port)
        try:
            plain_seeds = [f"http://h{i}.bench:{port}/" for i in range(args.hosts)]
            with_app = [f"http://app.bench:{port}/", *plain_seeds]
            ratios, cpu, after, since = [], [], [], []
            for r in range(args.rounds):
                recs_b, cpu_b, up_at = crawl(tmp, with_app, "browser")
                recs_a, cpu_a, _ = crawl(tmp, plain_seeds, "plain")
                rate_a, rate_b = plain_rate(recs_a), plain_rate(recs_b)
                wrong = sum(1 for x in recs_a + recs_b if is_plain(x) and x.get("rendered"))
                if wrong:  # the comparison would measure renders, not a browser that is merely up
                    raise SystemExit(f"{wrong} plain pages were rendered: the test web no longer fits its purpose")
                n_plain = sum(1 for x in recs_a if is_plain(x))
                first_b = min(parse_ts(x["fetched_at"]) for x in recs_b if is_plain(x))
                up = (up_at - first_b) if up_at is not None else float("nan")
                done = render_span(recs_b)
                figures = []
                for label, offset, into in (("from the browser's start", up, since), ("after the render", done, after)):
                    a, b = rate_after(recs_a, offset), rate_after(recs_b, offset)
                    if a and b:
                        into.append(b / a)
                        figures.append(f"{label} {a:.0f} / {b:.0f} ({b / a:.2f})")
                    else:
                        figures.append(f"{label}: too few pages left")
                print(
                    f"round {r + 1}: browser up {up:.1f}s in, render recorded {done:.1f}s in; plain pages/s, "
                    f"no browser / browser (ratio): {'; '.join(figures)}; whole crawl {rate_a:.0f} / {rate_b:.0f} "
                    f"({rate_b / rate_a:.2f}); CPU ms per plain page incl. children: "
                    f"{1000 * cpu_a / n_plain:.2f} / {1000 * cpu_b / n_plain:.2f}"
                )
                ratios.append(rate_b / rate_a)
                cpu.append(cpu_b - cpu_a)

            def med(xs: list[float]) -> float:
                return statistics.median(xs) if xs else float("nan")

            print(
                f"median ratio of plain pages/s, browser / no browser: after the render {med(after):.2f} "
                f"(target >= 0.90), from the browser's start {med(since):.2f}, whole crawl {med(ratios):.2f}; "
                f"extra CPU s for starting the browser and one render: {med(cpu):.1f}"
            )
        finally:
            nginx.terminate()
            nginx.wait()


if __name__ == "__main__":
    main()
