"""Scaling of the distributed crawl: pages/s with 1, 2 and 4 workers on one Redis, and Redis work per page.

One server process (the test web of `bench_crawl.py`: many virtual hosts `h{i}.bench` of ~23 KB pages on
one loopback port) and one private `redis-server` (temp dir, no AOF, no snapshots) serve every run. For
each worker count N the script submits all host seeds under a fresh job name, starts `crawler frontier`
and N `crawler worker` processes, and times from the first worker start until the job's state says done.
Pages are counted from the workers' `pages-*.jsonl`. `INFO commandstats` before and after a run gives the
Redis commands per page (the sum of `calls` over every command, without the benchmark's own INFO and
polling; note that Redis counts the commands a Lua script runs as well as the EVALSHA that ran it) and the
EVALSHA calls per page (frontier scripts: add, claim, complete, ...).

On a 2-core machine the web server, Redis, the frontier and all the workers share those two cores, so the
speedup here is bounded by CPU, not by the design: a single worker already keeps the machine busy. The point
of running it on a small box is to show that the Redis work per page stays small and flat and that
throughput does not collapse as workers are added. On a machine with more cores (or workers on other
machines) the same script shows the real scaling.

    python scripts/bench_cluster.py [--hosts 300] [--pages 20] [--workers 1,2,4] [--concurrency 32]

Exits non-zero with the tail of the failing process's log if a process dies or a run exceeds --timeout.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import redis

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(ROOT))

import bench_crawl  # noqa: E402  (the test web: serve / make_page)

from tests.redis_server import RedisServer, redis_available  # noqa: E402

POLL = 0.1  # seconds between checks of the job's state


class BenchFailure(Exception):
    """A process died, a command failed or a run timed out; the message carries the log tail."""


@dataclass
class RunResult:
    """One run of the cluster with a given number of workers."""

    workers: int
    pages: int
    per_worker: dict[str, int]
    seconds: float
    commands: int
    evalsha: int
    by_command: Counter[str]
    done: int
    dead_letters: int
    log_problems: list[str]


def tail(path: Path, chars: int = 3000) -> str:
    """The end of a log file (empty if it does not exist)."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def command_calls(client: redis.Redis) -> Counter[str]:
    """`INFO commandstats` as {command: calls}."""
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


class Cluster:
    """The frontier and workers of one job, each a `python -m crawler` process logging to its own file."""

    def __init__(self, redis_url: str, job: str, run_dir: Path, config: Path) -> None:
        self.redis_url = redis_url
        self.job = job
        self.run_dir = run_dir
        self.config = config
        self.out = run_dir / "out"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def _cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "crawler", *args, "--redis", self.redis_url, "--job", self.job]

    def log(self, name: str) -> Path:
        """The log file of a process."""
        return self.run_dir / f"{name}.log"

    def submit(self, seed_file: Path) -> None:
        """`crawler submit` with the job's config; raises BenchFailure if it fails."""
        proc = subprocess.run(
            [*self._cmd("submit", str(seed_file)), "-c", str(self.config)],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BenchFailure(f"submit exited with {proc.returncode}:\n{proc.stderr[-3000:]}")

    def start(self, name: str, *args: str) -> None:
        """Start one process (`frontier` or `worker ...`) with output to `NAME.log`."""
        with self.log(name).open("wb") as log:
            self.procs[name] = subprocess.Popen(
                self._cmd(*args), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def check_alive(self) -> None:
        """Raise BenchFailure naming the first process that has exited."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                raise BenchFailure(f"{name} exited early with {code}; end of {self.log(name)}:\n{tail(self.log(name))}")

    def stop(self) -> None:
        """SIGTERM every process, wait, SIGKILL what is left after 20 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def pages(self) -> dict[str, int]:
        """Records written by each worker."""
        return {
            p.stem.removeprefix("pages-"): p.read_bytes().count(b"\n") for p in sorted(self.out.glob("pages-*.jsonl"))
        }

    def log_problems(self) -> list[str]:
        """Lines of the process logs that look like errors or warnings (first few of each log)."""
        found = []
        for name in self.procs:
            lines = [
                line
                for line in tail(self.log(name), 1_000_000).splitlines()
                if any(w in line for w in ("Traceback", "ERROR", "WARNING", "Error", "error:"))
            ]
            found += [f"{name}: {line.strip()}" for line in lines[:5]]
            if len(lines) > 5:
                found.append(f"{name}: ... {len(lines) - 5} more")
        return found


def write_config(path: Path, concurrency: int) -> None:
    """The job's TOML: no delay, `concurrency` fetches per worker, deep enough for the whole test web."""
    path.write_text(
        "[crawl]\n"
        f"concurrency = {concurrency}\n"
        "max_depth = 1000\n"
        "[politeness]\n"
        "delay = 0.0\n"
        "[network]\n"
        'resolve = {"*.bench" = "127.0.0.1"}\n'
    )


def run_once(
    client: redis.Redis, redis_url: str, workdir: Path, seeds: list[str], workers: int, args: argparse.Namespace
) -> RunResult:
    """Submit, start the frontier and `workers` workers, wait for done, stop; measure pages and Redis calls."""
    job = f"bench{workers}w-{uuid.uuid4().hex[:6]}"
    run_dir = workdir / job
    run_dir.mkdir()
    config = run_dir / "job.toml"
    write_config(config, args.concurrency)
    seed_file = run_dir / "seeds.txt"
    seed_file.write_text("\n".join(seeds) + "\n")
    cluster = Cluster(redis_url, job, run_dir, config)
    state_key = f"crawl:{{{job}}}:state"
    polls = 0
    before = command_calls(client)
    try:
        cluster.submit(seed_file)
        cluster.start("frontier", "frontier", "-c", str(config))
        started = time.perf_counter()
        for i in range(workers):
            wid = f"w{i}"
            cluster.start(wid, "worker", "--id", wid, "-o", str(cluster.out), "-c", str(config))
        deadline = started + args.timeout
        while True:
            polls += 1
            if client.hget(state_key, "done") == b"1":
                break
            cluster.check_alive()
            if time.perf_counter() > deadline:
                logs = "\n".join(f"--- {n}:\n{tail(cluster.log(n), 1500)}" for n in cluster.procs)
                raise BenchFailure(f"{workers} workers: job not done after {args.timeout:.0f}s\n{logs}")
            time.sleep(POLL)
        seconds = time.perf_counter() - started
    finally:
        cluster.stop()
    after = command_calls(client)
    delta = after - before
    delta.pop("info", None)  # the benchmark's own snapshots
    delta["hget"] -= polls  # the benchmark's own polling
    delta = +delta
    counters = {k.decode(): v.decode() for k, v in client.hgetall(f"crawl:{{{job}}}:counters").items()}
    per_worker = cluster.pages()
    return RunResult(
        workers=workers,
        pages=sum(per_worker.values()),
        per_worker=per_worker,
        seconds=seconds,
        commands=sum(delta.values()),
        evalsha=delta.get("evalsha", 0),
        by_command=delta,
        done=int(counters.get("done", 0)),
        dead_letters=int(counters.get("dead", 0)),
        log_problems=cluster.log_problems(),
    )


def print_table(results: list[RunResult]) -> None:
    """workers | pages | seconds | pages/s | speedup | Redis commands/page | evalsha/page."""
    base = results[0].pages / results[0].seconds
    cols = [("workers", 7), ("pages", 7), ("seconds", 8), ("pages/s", 8), ("speedup", 8), ("cmds/page", 10)]
    head = " ".join(f"{name:>{width}}" for name, width in [*cols, ("evalsha/page", 13)])
    print(head)
    print("-" * len(head))
    for r in results:
        rate = r.pages / r.seconds
        print(
            f"{r.workers:>7} {r.pages:>7} {r.seconds:>8.2f} {rate:>8.0f} {rate / base:>7.2f}x "
            f"{r.commands / max(r.pages, 1):>10.1f} {r.evalsha / max(r.pages, 1):>13.2f}"
        )
    print(f"(speedup vs {results[0].workers} worker(s); Redis commands include those run inside Lua scripts)")


def main() -> int:
    """Parse flags, start the web and Redis, run every worker count, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=300)
    ap.add_argument("--pages", type=int, default=20, help="pages per host")
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts (default 1,2,4)")
    ap.add_argument("--concurrency", type=int, default=32, help="fetches in flight per worker")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds one run may take")
    ap.add_argument("--top", type=int, default=6, help="show the N most frequent Redis commands of each run")
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    if not counts or min(counts) < 1:
        ap.error("--workers: expected positive integers, e.g. 1,2,4")
    if not redis_available():
        print("bench_cluster: redis-server is not installed", file=sys.stderr)
        return 2

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    server = multiprocessing.get_context("fork").Process(
        target=bench_crawl.serve, args=(sock, args.hosts, args.pages), daemon=True
    )
    server.start()
    sock.close()  # the server process has its own copy
    seeds = [f"http://h{i}.bench:{port}/" for i in range(args.hosts)]
    print(
        f"test web: {args.hosts} hosts x {args.pages} pages (~23 KB each) on 127.0.0.1:{port}; "
        f"{args.concurrency} fetches in flight per worker; {os.cpu_count()} CPUs"
    )
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        workdir = Path(tmp)
        redis_server = RedisServer(workdir / "redis", appendonly=False)
        try:
            redis_server.start()
            client = redis.Redis.from_url(redis_server.url, socket_timeout=10)
            try:
                for n in counts:
                    r = run_once(client, redis_server.url, workdir, seeds, n, args)
                    results.append(r)
                    top = ", ".join(f"{c} {k / max(r.pages, 1):.2f}" for c, k in r.by_command.most_common(args.top))
                    print(
                        f"  {n} worker(s): {r.pages} pages in {r.seconds:.2f}s "
                        f"({r.done} done, {r.dead_letters} dead in Redis; by worker "
                        f"{' '.join(f'{w}={k}' for w, k in r.per_worker.items())}); per page: {top}",
                        flush=True,
                    )
                    for line in r.log_problems:
                        print(f"    log: {line}")
            finally:
                client.close()
        except BenchFailure as exc:
            print(f"bench_cluster: {exc}", file=sys.stderr)
            return 1
        finally:
            redis_server.kill()
            server.terminate()
            server.join()
    print()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
