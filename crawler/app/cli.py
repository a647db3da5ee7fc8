"""The `crawler` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from crawler.core.config import Config, load_config
from crawler.core.errors import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _number(kind: type, *, minimum: float = 0) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
        return value

    return parse


def _resolve_entry(text: str) -> tuple[str, str]:
    import ipaddress

    host, sep, addr = text.partition("=")
    if not sep or not host or not addr:
        raise argparse.ArgumentTypeError(f"expected HOST=ADDRESS (e.g. '*.test=127.0.0.1'), got {text!r}")
    try:
        ipaddress.ip_address(addr.strip("[]"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{addr!r} is not an IP address") from None
    return host.strip().lower(), addr.strip("[]")


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


def config_flags(p: argparse.ArgumentParser) -> None:
    """The configuration flags every crawling command takes (they override -c files)."""
    p.add_argument(
        "-c",
        "--config",
        action="append",
        type=Path,
        default=[],
        metavar="CONFIG.toml",
        help="TOML configuration; repeatable, later files win",
    )
    p.add_argument("--max-pages", type=_number(int), help="stop after N recorded pages")
    p.add_argument("--max-depth", type=_number(int), help="maximum link depth from a seed")
    p.add_argument("--delay", type=_number(float), help="seconds between requests to one host")
    p.add_argument("--concurrency", type=_number(int, minimum=1), help="fetches in flight over all hosts")
    p.add_argument("--user-agent", help="User-Agent header (its first word is the robots.txt token)")
    p.add_argument(
        "--resolve",
        action="append",
        type=_resolve_entry,
        default=[],
        metavar="HOST=ADDR",
        help="map a host or wildcard (*.test) to an address, like curl --resolve; repeatable",
    )
    p.add_argument("--allow-private", action="store_true", help="allow hosts on private/loopback addresses")


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    crawl: dict[str, Any] = {}
    if args.max_pages is not None:
        crawl["max_pages"] = args.max_pages
    if args.max_depth is not None:
        crawl["max_depth"] = args.max_depth
    if args.concurrency is not None:
        crawl["concurrency"] = args.concurrency
    if args.user_agent is not None:
        crawl["user_agent"] = args.user_agent
    out: dict[str, Any] = {"crawl": crawl} if crawl else {}
    if args.delay is not None:
        out["politeness"] = {"delay": args.delay}
    network: dict[str, Any] = {}
    if args.resolve:
        network["resolve"] = dict(args.resolve)
    if args.allow_private:
        network["allow_private"] = True
    if network:
        out["network"] = network
    return out


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
    return EXIT_OK if final.get("finished") or cfg.crawl.max_pages else EXIT_FAILED


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
    p.add_argument("--limit", type=_number(int, minimum=1), default=1000, help="list at most N (default 1000)")


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
        return 130


if __name__ == "__main__":
    sys.exit(main())
