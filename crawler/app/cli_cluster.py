"""The distributed commands of the `crawler` CLI: frontier, worker, submit, status, domain."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from crawler.app.exits import EXIT_FAILED, EXIT_OK, job_exit, service_exit
from crawler.app.flags import config_flags, metrics_flags, number, overrides_from
from crawler.core.errors import ConfigError
from crawler.ingest.seeds import read_seeds

# The Redis stack is imported by the handlers, not here: `crawler --help` and the embedded crawl
# should not pay for it.


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _cluster_flags(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--redis", required=required, metavar="URL", help="redis:// or rediss:// URL (password allowed)")
    p.add_argument("--job", default="default", help="job name: all keys live under it (default: default)")
    p.add_argument(
        "--heartbeat-ttl",
        type=_positive,
        default=10.0,
        metavar="S",
        help="a worker silent this long is taken over (default 10)",
    )
    p.add_argument(
        "--redis-deadline",
        type=_positive,
        default=60.0,
        metavar="S",
        help="give up with an error after Redis is unreachable this long (default 60)",
    )
    p.add_argument(
        "--lease-ttl",
        type=_positive,
        default=300.0,
        metavar="S",
        help="a lease left unanswered this long is handed out again (default 300)",
    )


def options(args: argparse.Namespace) -> Any:
    """ClusterOptions from parsed flags."""
    from crawler.app.distributed import ClusterOptions

    return ClusterOptions(
        redis_url=args.redis,
        job=args.job,
        config_paths=list(getattr(args, "config", []) or []),
        overrides=overrides_from(args) if hasattr(args, "resolve") else {},
        heartbeat_ttl=getattr(args, "heartbeat_ttl", 10.0),
        redis_deadline=getattr(args, "redis_deadline", 60.0),
        lease_ttl=getattr(args, "lease_ttl", 300.0),
    )


def _run(coro: Any) -> Any:
    from crawler.cluster.remote import REDIS_ERRORS, RedisUnavailable

    try:
        return asyncio.run(coro)
    except RedisUnavailable as exc:
        print(f"crawler: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    except REDIS_ERRORS as exc:  # a step not covered by the retry deadline: still a message, not a traceback
        print(f"crawler: error: Redis: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None


def _cmd_frontier(args: argparse.Namespace) -> int:
    from crawler.app.distributed import run_frontier

    _run(run_frontier(options(args)))
    return EXIT_OK


def _cmd_worker(args: argparse.Namespace) -> int:
    from crawler.app.distributed import run_worker

    final = _run(run_worker(options(args), worker_id=args.id, out=args.out, exit_when_done=args.exit_when_done))
    print(f"crawler: worker {final['worker']} recorded {final['pages']} pages", file=sys.stderr)
    return service_exit(final)


def _report_seed_problems(seeds: Any) -> None:
    for problem in seeds.problems:
        print(f"crawler: skipping invalid seed: {problem}", file=sys.stderr)


def _cmd_submit(args: argparse.Namespace) -> int:
    from crawler.app.distributed import submit

    urls = [s for s in args.seeds if "://" in s or not Path(s).exists()]
    files = [Path(s) for s in args.seeds if s not in urls]
    seeds = read_seeds(urls, files)
    _report_seed_problems(seeds)
    opts = options(args)
    result, recrawled = _run(submit(opts, seeds.urls, store_config=bool(opts.config_paths or opts.overrides)))
    print(f"crawler: {result.queued} URLs queued, {result.duplicates} already known (job {args.job})", file=sys.stderr)
    if recrawled.queued:
        print(
            f"crawler: recrawl: {recrawled.queued} pages fetched more than crawl.seen_ttl ago queued again "
            f"({recrawled.conditional} with validators)",
            file=sys.stderr,
        )
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from crawler.app.distributed import status

    info = _run(status(options(args)))
    if args.json:
        print(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    print(
        f"job {info['job']}: {'done' if info['done'] else 'running'}; queued {info['queued']}, "
        f"in flight {info['in_flight']}, recorded {info['recorded']}, dead letters {info['dead_letters']}, "
        f"hosts {info['hosts']}; frontier leader {info['frontier_leader'] or '-'}"
    )
    if info["skipped"] or info["duplicate_urls"]:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(info["skipped"].items())) or "none"
        print(f"  links: {info['duplicate_urls']} duplicates; skipped: {skipped}")
    for wid, w in sorted(info["workers"].items()):
        print(
            f"  worker {wid}: {'alive' if w['alive'] else 'gone'}, {w['pages']} pages, "
            f"{w['pages_per_s']:.1f} pages/s, {w['in_flight']} in flight, {w['hosts_owned']} hosts owned"
        )
    return EXIT_OK


def _cmd_domain(args: argparse.Namespace) -> int:
    from crawler.app.distributed import domain_command

    values = {
        "delay": args.delay,
        "concurrency": args.concurrency,
        "max_pages": args.max_pages,
        "max_depth": args.max_depth,
    }
    if args.action == "set" and all(v is None for v in values.values()):
        raise ConfigError("crawler domain set: give at least one of --delay, --concurrency, --max-pages, --max-depth")
    result = _run(domain_command(options(args), args.action, args.host, values))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return EXIT_OK


def crawl_on_redis(args: argparse.Namespace) -> int:
    """`crawler crawl --redis URL`: submit the seeds, then frontier and worker in this process."""
    from crawler.app.distributed import run_combined

    seeds = read_seeds(args.urls, args.seeds) if (args.urls or args.seeds) else None
    if seeds is not None:
        _report_seed_problems(seeds)
    final = _run(run_combined(options(args), seeds.urls if seeds else [], out=args.out))
    print(f"crawler: {final['pages']} pages recorded by this process; output in {args.out}", file=sys.stderr)
    return job_exit(final)


def add_cluster_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register frontier, worker, submit, status and domain."""
    p = sub.add_parser("frontier", help="run the frontier service of a Redis job")
    _cluster_flags(p)
    config_flags(p)
    metrics_flags(p)
    p.set_defaults(handler=_cmd_frontier)

    p = sub.add_parser("worker", help="run a worker of a Redis job (as many as you like, on any machine)")
    _cluster_flags(p)
    config_flags(p)
    p.add_argument("--id", help="worker id (default: host-pid-random)")
    p.add_argument("-o", "--out", type=Path, default=Path("crawl-out"), help="output folder (pages-ID.jsonl)")
    p.add_argument("--exit-when-done", action="store_true", help="exit once the job has nothing queued or in flight")
    metrics_flags(p)
    p.set_defaults(handler=_cmd_worker)

    p = sub.add_parser("submit", help="queue seed URLs (and the job's config) on a Redis job; idempotent")
    p.add_argument("seeds", nargs="+", metavar="SEEDS_FILE|URL")
    _cluster_flags(p)
    config_flags(p)
    p.add_argument(
        "--priority", type=number(int), default=0, help="accepted for compatibility; queues are per host, oldest first"
    )
    p.set_defaults(handler=_cmd_submit)

    p = sub.add_parser("status", help="show a Redis job: queued, in flight, done, errors, workers")
    _cluster_flags(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser("domain", help="show or change per-domain politeness of a running Redis job")
    p.add_argument("action", choices=["set", "show", "list"])
    p.add_argument("host", nargs="?", help="a host or domain (applies to its subdomains too)")
    _cluster_flags(p)
    p.add_argument("--delay", type=number(float), help="seconds between requests to one host")
    p.add_argument("--concurrency", type=number(int, minimum=1), help="requests in flight per host")
    p.add_argument("--max-pages", type=number(int), help="page budget per host")
    p.add_argument("--max-depth", type=number(int), help="maximum depth")
    p.set_defaults(handler=_cmd_domain)


def dead_letters_on_redis(args: argparse.Namespace) -> Any:
    """`crawler dead-letters list|requeue --redis URL --job NAME`."""
    from contextlib import AsyncExitStack

    from crawler.app.deadletters import list_dead, requeue
    from crawler.app.distributed import _open

    async def act() -> Any:
        async with AsyncExitStack() as stack:
            _redis, _cfg, store = await _open(stack, options(args))
            if args.action == "list":
                return await list_dead(store, args.limit, args.error_type)
            return await requeue(store, args.error_type)

    return _run(act())
