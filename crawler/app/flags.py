"""Flags shared by the crawling commands, and the overrides they make to the configuration."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def number(kind: type, *, minimum: float = 0) -> Callable[[str], Any]:
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
    p.add_argument("--max-pages", type=number(int), help="stop after N recorded pages")
    p.add_argument("--max-depth", type=number(int), help="maximum link depth from a seed")
    p.add_argument("--delay", type=number(float), help="seconds between requests to one host")
    p.add_argument("--concurrency", type=number(int, minimum=1), help="fetches in flight over all hosts")
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
    p.add_argument("--no-sitemaps", action="store_true", help="read no robots.txt Sitemap lines and no /sitemap.xml")
    p.add_argument("--warc", action="store_true", help="also write WARC files to OUT/warc (output.warc = true)")
    p.add_argument(
        "--seen-ttl",
        type=number(float, minimum=1),
        metavar="SECONDS",
        help="a fetched URL is fetched again (a recrawl) once this old (crawl.seen_ttl, default 7 days)",
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 1..65535 (0: off), got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1..65535 (0: off), got {text!r}")
    return value


def metrics_flags(p: argparse.ArgumentParser) -> None:
    """The Prometheus endpoint flags of `crawl`, `frontier` and `worker` (they override `[metrics]`)."""
    p.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (default: metrics.port, 0 = off)",
    )
    p.add_argument("--metrics-host", metavar="HOST", help="address the metrics endpoint listens on (default 127.0.0.1)")


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
    if getattr(args, "no_sitemaps", False):
        crawl["sitemaps"] = False
    if getattr(args, "seen_ttl", None) is not None:
        crawl["seen_ttl"] = args.seen_ttl
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
    metrics: dict[str, Any] = {}
    if getattr(args, "metrics_port", None) is not None:
        metrics["port"] = args.metrics_port
    if getattr(args, "metrics_host", None) is not None:
        metrics["host"] = args.metrics_host
    if metrics:
        out["metrics"] = metrics
    if getattr(args, "warc", False):
        out["output"] = {"warc": True}
    return out
