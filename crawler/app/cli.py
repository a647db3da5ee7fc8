"""The `crawler` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from crawler.app.exits import EXIT_OK, EXIT_USAGE, interrupted, job_exit
from crawler.app.flags import config_flags, metrics_flags, number, overrides_from
from crawler.core.config import Config, load_config
from crawler.core.errors import ConfigError


def _crawl_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("crawl", help="crawl seed URLs on this machine (embedded store, resumable)")
    p.add_argument("urls", nargs="*", metavar="URL", help="seed URLs")
    p.add_argument(
        "--seeds",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="file with one seed URL per line (# comments allowed); repeatable",
    )
    p.add_argument("-o", "--out", type=Path, default=Path("crawl-out"), help="output folder (default ./crawl-out)")
    config_flags(p)
    p.add_argument("--fresh", action="store_true", help="discard earlier state in OUT and start over")
    p.add_argument("--redis", metavar="URL", help="run frontier and worker in this process on a Redis job instead")
    p.add_argument("--job", default="default", help="job name with --redis (default: default)")
    p.add_argument("--no-progress", action="store_true", help="no live progress display")
    metrics_flags(p)


def _config(args: argparse.Namespace) -> Config:
    return load_config(list(args.config), overrides_from(args))


def _cmd_crawl(args: argparse.Namespace) -> int:
    from crawler.app.embedded import CrawlJob, has_state, run_crawl
    from crawler.ingest.seeds import Seeds, read_seeds

    if args.redis:
        from crawler.app.cli_cluster import crawl_on_redis

        return crawl_on_redis(args)
    cfg = _config(args)
    if not args.urls and not args.seeds and has_state(args.out) and not args.fresh:
        seeds = Seeds([], [])  # resuming: the frontier already holds the seeds and scope
    else:
        seeds = read_seeds(args.urls, args.seeds)
    for problem in seeds.problems:
        print(f"crawler: skipping invalid seed: {problem}", file=sys.stderr)
    job = CrawlJob(out=args.out, seeds=seeds.urls, config=cfg, fresh=args.fresh, progress=not args.no_progress)
    final = asyncio.run(run_crawl(job))
    print(
        f"crawler: {final['pages']} pages recorded ({final['failed']} with errors) in "
        f"{final['elapsed_s']:.1f}s; output in {args.out / 'pages.jsonl'}",
        file=sys.stderr,
    )
    dead = int(final.get("dead") or 0)
    if dead:
        # An unreachable site ends here: say why its URLs failed, so the run is not mistaken for a crawl.
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(final.get("errors_by_type", {}).items()))
        print(
            f"crawler: {dead} URLs used up their attempts and are in the dead letters (errors: {kinds}); "
            f"see `crawler dead-letters list {args.out}`",
            file=sys.stderr,
        )
    if final.get("stopped") and not final.get("finished"):
        print(f"crawler: interrupted ({final['stopped']}); run the same command again to resume", file=sys.stderr)
    return job_exit(final)


def _dead_letters_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dead-letters", help="list or requeue URLs that used up their attempts")
    p.add_argument("action", choices=["list", "requeue"])
    p.add_argument(
        "out",
        type=Path,
        nargs="?",
        default=Path("crawl-out"),
        metavar="OUT",
        help="output folder of an embedded crawl (default ./crawl-out)",
    )
    p.add_argument("--redis", metavar="URL", help="the dead letters of a Redis job instead of OUT")
    p.add_argument("--job", default="default", help="job name with --redis (default: default)")
    p.add_argument("--type", dest="error_type", metavar="T", help="only dead letters with this error type")
    p.add_argument("--limit", type=number(int, minimum=1), default=1000, help="list at most N (default 1000)")


def _cmd_dead_letters(args: argparse.Namespace) -> int:
    import orjson

    from crawler.app.deadletters import with_embedded_store

    if args.redis:
        from crawler.app.cli_cluster import dead_letters_on_redis

        result = dead_letters_on_redis(args)
    else:
        result = asyncio.run(with_embedded_store(args.out, args.action, args.error_type, args.limit))
    if args.action == "list":
        for row in result:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        print(f"crawler: {len(result)} dead letters", file=sys.stderr)
    else:
        print(
            f"crawler: requeued {result} URLs; run `crawler crawl -o {args.out}` to fetch them",
            file=sys.stderr,
        )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="crawler", description="A polite, resumable web crawler.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _crawl_parser(sub)
    _dead_letters_parser(sub)
    from crawler.app.cli_cluster import add_cluster_commands

    add_cluster_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `crawler` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handlers = {"crawl": _cmd_crawl, "dead-letters": _cmd_dead_letters}
    try:
        if hasattr(args, "handler"):
            return int(args.handler(args))
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"crawler: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return interrupted("SIGINT")


if __name__ == "__main__":
    sys.exit(main())
