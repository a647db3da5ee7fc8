"""`crawler explain URL`: why a URL was fetched, is waiting, or was skipped (embedded or Redis, read-only).

This module opens the sources of one mode, read-only, and prints; the facts and the verdict are
`explain_facts`'s. Embedded: the output folder's store (a read-only connection, see
`frontier.sqlite.inspect`), the configuration and scope the crawl stored there, and `pages.jsonl`.
Redis: the job's keys (store, configuration, scope, the workers' heartbeats) and, with `-o`, the
workers' `pages-*.jsonl` in that folder. Works while the crawl runs and after it ended.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson

from crawler.app.exits import EXIT_FAILED, EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE
from crawler.app.explain_facts import Sources, explain_url
from crawler.app.explain_view import render
from crawler.app.folder import folder_holder
from crawler.core.config import config_from_dict, load_config_data
from crawler.core.errors import CrawlError
from frontier.sqlite.inspect import SqliteInspector

#: The embedded crawl rewrites stats.json every 0.5 s while it runs.
RUNNING_WITHIN = 5.0
#: Give up on an unreachable Redis sooner than a crawling command would: an operator is waiting.
REDIS_DEADLINE = 10.0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `crawler explain`."""
    p = sub.add_parser("explain", help="why a URL was fetched, is waiting, or was skipped")
    p.add_argument("url", metavar="URL", help="the URL as found or typed (it is normalized as the crawl would)")
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        help="output folder of the crawl (default ./crawl-out); with --redis, the workers' folder of pages-*.jsonl",
    )
    p.add_argument("--redis", metavar="URL", help="explain for a Redis job instead of an output folder")
    p.add_argument("--job", default="default", help="job name with --redis (default: default)")
    p.add_argument(
        "-c",
        "--config",
        action="append",
        type=Path,
        default=[],
        metavar="CONFIG.toml",
        help="configuration over the one the crawl stored (for a crawl that stored none, or local overrides)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (one JSON object)")
    p.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Run `crawler explain`; the exit code says whether the URL is known to the crawl."""
    try:
        result = asyncio.run(_explain(args))
    except CrawlError as exc:
        print(f"crawler: error: not a URL the crawler could fetch: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except _RedisFailure as exc:
        print(f"crawler: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except sqlite3.OperationalError as exc:  # e.g. a crawler of an older version holds the file exclusively
        print(f"crawler: error: cannot read the frontier: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(result, time.time()))
    return EXIT_OK if result["known"] else EXIT_UNKNOWN


class _RedisFailure(Exception):
    """Redis could not be read."""


async def _explain(args: argparse.Namespace) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        if not args.redis:
            src = await _embedded_sources(stack, args.out or Path("crawl-out"), list(args.config))
            return await explain_url(args.url, src)
        from crawler.cluster.remote import REDIS_ERRORS, RedisUnavailable

        try:
            return await explain_url(args.url, await _redis_sources(stack, args))
        except RedisUnavailable as exc:
            raise _RedisFailure(str(exc)) from exc
        except REDIS_ERRORS as exc:
            raise _RedisFailure(f"Redis: {exc}") from exc


async def _embedded_sources(stack: AsyncExitStack, out: Path, config_paths: list[Path]) -> Sources:
    inspector = SqliteInspector.open(out)
    stack.push_async_callback(inspector.close)
    notes: list[str] = []
    stored = await inspector.get_meta("config")
    if stored is None:
        notes.append("this crawl did not store its configuration: judged with the defaults (and any -c)")
    cfg = config_from_dict(load_config_data(config_paths, None, orjson.loads(stored) if stored else {}))
    stats = orjson.loads(await inspector.get_meta("stats") or "{}")
    holder = folder_holder(out)
    running = holder is not None
    if holder == -1:  # cannot look at the lock: a crawl rewrites stats.json every 0.5 s while it runs
        stats_file = out / "stats.json"
        running = stats_file.exists() and time.time() - stats_file.stat().st_mtime < RUNNING_WITHIN
    return Sources(
        mode="embedded",
        inspector=inspector,
        config=cfg,
        allow_domains=orjson.loads(await inspector.get_meta("allow_domains") or "[]"),
        record_paths=[out / "pages.jsonl"],
        waits=list(stats.get("hosts_waiting") or []),
        running=running,
        notes=notes,
    )


async def _redis_sources(stack: AsyncExitStack, args: argparse.Namespace) -> Sources:
    from crawler.app.distributed import ClusterOptions, connect, job_config
    from frontier.redis.inspect import RedisInspector
    from frontier.redis.keys import StoreKeys

    opts = ClusterOptions(
        redis_url=args.redis, job=args.job, config_paths=list(args.config), redis_deadline=REDIS_DEADLINE
    )
    redis = connect(opts.redis_url)
    stack.push_async_callback(redis.aclose)
    keys = opts.keys
    cfg = await job_config(redis, opts)
    domains = [m.decode() for m in await redis.smembers(keys.scope)]
    beats = {k.decode(): orjson.loads(v) for k, v in (await redis.hgetall(keys.workers)).items()}
    alive = await redis.mget([keys.alive(w) for w in beats]) if beats else []
    done = await redis.hget(keys.state, "done")
    live = [w for w, a in zip(beats, alive, strict=True) if a is not None]
    waits = [w for wid in live for w in beats[wid].get("hosts_waiting") or []]
    paths: list[Path] = []
    if args.out is not None:
        paths = [*sorted(args.out.glob("pages-*.jsonl")), args.out / "pages.jsonl"]
    return Sources(
        mode="redis",
        inspector=RedisInspector(redis, StoreKeys(args.job)),
        config=cfg,
        allow_domains=domains,
        record_paths=paths,
        waits=waits,
        running=bool(live) and done != b"1",
    )
