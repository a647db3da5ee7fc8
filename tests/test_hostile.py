"""Issue 3 acceptance: one crawl of a hostile multi-host web, then many assertions on its output.

The crawler runs as a real subprocess under a socket audit hook (`run_guarded`) that logs every
`connect` and `getaddrinfo` and *blocks* any connection outside loopback, so a refused address is
proven unreached twice: decoy servers listening on the address stay silent, and the audit log holds
nothing but connections to the main test web.
"""

from __future__ import annotations

import gzip
import itertools
import os
import random
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp import web

from crawler.core.urlnorm import host_key, normalize
from tests.conftest import ROOT, page_key, read_records
from tests.testweb import (
    PORT_TOKEN,
    LoggedRequest,
    Page,
    Site,
    TestWeb,
    abort_connection,
    brotli_bomb,
    deflate_bomb,
    drip,
    gzip_bomb,
    make_link_web,
    raw_response,
    redirect,
    sequence,
    silence_after_headers,
)

P = PORT_TOKEN

# Runs `python -m crawler` after installing an audit hook: every connect/getaddrinfo is logged to the
# file named by argv[1], a connect outside loopback or a name lookup other than `localhost` is refused.
GUARD = textwrap.dedent(
    """
    import ipaddress, runpy, sys
    log = open(sys.argv.pop(1), "a", buffering=1)
    def hook(event, args):
        if event == "socket.connect" and isinstance(args[1], tuple):
            host = str(args[1][0]).split("%")[0]
            log.write(f"connect {host} {args[1][1]}\\n")
            if not ipaddress.ip_address(host).is_loopback:
                raise PermissionError(f"test guard: connect to {host} blocked")
        elif event == "socket.getaddrinfo":
            host = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            log.write(f"getaddrinfo {host}\\n")
            try:
                ipaddress.ip_address(host)
            except ValueError:
                if host != "localhost":
                    raise PermissionError(f"test guard: DNS lookup of {host} blocked") from None
    sys.addaudithook(hook)
    runpy.run_module("crawler", run_name="__main__", alter_sys=True)
    """
)


def run_guarded(*args: str, audit: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `crawler ARGS...` under the connect/DNS audit hook, logging to `audit`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", GUARD, str(audit), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def html(title: str, links: list[str] = (), text: str = "") -> str:  # type: ignore[assignment]
    """A small HTML page with a title, some text and links."""
    anchors = "".join(f'<a href="{h}">{i}</a> ' for i, h in enumerate(links))
    return f"<!doctype html><html><head><title>{title}</title></head><body><p>{text}</p>{anchors}</body></html>"


def trap(make_links: Callable[[str], list[str]]) -> Callable[[web.Request], Any]:
    """A fallback handler serving an endless family of pages: `make_links(path)` gives each one's links."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text=html(request.path, make_links(request.path)), content_type="text/html")

    return handler


# ---------------------------------------------------------------------------------------------------
# The hostile web

HDR = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
BOMB = 20 * 2**20  # decoded bytes: 20 times the crawl's 1 MiB body cap
DEEP = 60_000  # nesting depth of the deep page (lexbor alone would take seconds)
ARTICLE = " ".join(
    f"Paragraph {i}: the harbor lantern signal drifted past copper meadows while the falcon circled "
    f"the quartz ridge and the orbit of velvet thistles kept its slow rhythm number {i}."
    for i in range(12)
)

#: Links to addresses the crawler must refuse, by the decoy that listens there ("" = nothing listens;
#: the audit hook would block and log such a connection).
REFUSED: dict[str, list[str]] = {
    "lo": [  # a second server on 127.0.0.1, reached by every spelling of that address
        "http://2130706433:{lo}/decimal",
        "http://0x7f.1:{lo}/hex",
        "http://127.1:{lo}/short",
        "http://0177.0.0.1:{lo}/octal",
        "http://[::ffff:127.0.0.1]:{lo}/mapped",
        "http://localhost:{lo}/name",
        "http://0.0.0.0:{lo}/unspecified",
        "http://127.0.0.1:{lo}/plain",
    ],
    "lo2": ["http://127.0.0.2:{lo2}/loopback-2"],
    "v6": ["http://[::1]:{v6}/v6", "http://[::]:{v6}/v6-unspecified"],
    "": [
        "http://10.0.0.1/private-10",
        "http://172.16.5.4/private-172",
        "http://192.168.1.1/private-192",
        "http://100.64.0.1/cgnat",
        "http://169.254.169.254/latest/meta-data/",
        "http://224.0.0.1/multicast",
        "http://240.0.0.1/reserved",
        "http://255.255.255.255/broadcast",
        "http://[fe80::1]/link-local",
        "http://[fc00::1]/unique-local",
        "http://[ff02::1]/multicast6",
        "http://[64:ff9b::a9fe:a9fe]/nat64-metadata",
        "http://[2002:7f00:1::]/6to4-loopback",
    ],
}
BAD_SCHEMES = [
    "ftp://links.test/file",
    "file:///etc/passwd",
    "mailto:someone@links.test",
    "data:text/html,<a href=x>",
    "gopher://links.test/1",
    "ws://links.test/socket",
    "tel:+15550100",
]
INVALID = [
    "http://links.test:99999/big-port",
    "http://links.test:12ab/alpha-port",
    "http://links.test:-1/negative-port",
    "http://ex%zz.test/bad-escape-in-host",
    "http://links.test/ctl\x01char",
    "http://[::1/unterminated",
    "http://a b.test/space-in-host",
    "http://xn--zz.test/bad-punycode",
    "http://" + "a" * 64 + ".test/long-label",
]


def _redir_site(ports: dict[str, int]) -> Site:
    chain = {f"/c{i}": redirect(f"/c{i + 1}") for i in range(1, 7)}  # 6 hops: one too many
    ok_chain = {f"/ok{i}": redirect(f"/ok{i + 1}", 301) for i in range(1, 6)}  # 5 hops: allowed
    targets = {
        "/to-ftp": "ftp://redir.test/x",
        "/to-file": "file:///etc/passwd",
        "/to-js": "javascript:alert(1)",
        "/to-private": "/private/secret",
        "/to-outside": "http://outside.example/",
        "/to-localhost": f"http://localhost:{ports['lo']}/from-redirect",
        "/to-loopback-2": f"http://127.0.0.2:{ports['lo2']}/from-redirect",
        "/to-metadata": "http://169.254.169.254/latest/meta-data/iam",
        "/to-decimal": f"http://2130706433:{ports['lo']}/from-redirect-decimal",
    }
    pages: dict[str, Any] = {
        "/": Page(html("redirects", ["/loop-a", "/self", "/c1", "/ok1", *targets])),
        "/loop-a": redirect("/loop-b"),
        "/loop-b": redirect("/loop-a"),
        "/self": redirect("/self", 301),
        **chain,
        "/c7": Page(html("never reached")),
        **ok_chain,
        "/ok6": Page(html("chain end")),
        "/private/secret": Page(html("secret")),
    }
    pages.update({path: redirect(target) for path, target in targets.items()})
    return Site(pages=pages, robots="User-agent: *\nDisallow: /private/\n")


def _links_site(ports: dict[str, int]) -> Site:
    addrs = [u.format(**ports) for urls in REFUSED.values() for u in urls]
    half = len(addrs) // 2
    return Site(
        pages={
            "/": Page(html("links", ["/addr1", "/addr2", "/schemes", "/invalid", "/misc"])),
            "/addr1": Page(html("refused 1", addrs[:half])),
            "/addr2": Page(html("refused 2", addrs[half:])),
            "/schemes": Page(html("schemes", [*BAD_SCHEMES, "javascript:alert(1)", "/after-schemes"])),
            "/invalid": Page(html("invalid", [*INVALID, "/after-invalid"])),
            "/misc": Page(
                html(
                    "misc",
                    [
                        f"http://user:s3cr3t-pw@links.test:{P}/cred",
                        f"http://bücher.test:{P}/",
                        f"http://BÜCHER.test:{P}/upper",
                        f"http://cookie.test:{P}/",
                    ],
                )
            ),
            "/cred": Page(html("cred")),
            "/after-schemes": Page(html("after schemes")),
            "/after-invalid": Page(html("after invalid")),
        }
    )


def _content_site() -> Site:
    cs = "text/html; charset="
    nested = "<div>" * DEEP + '<a href="/deep-child">deep</a>' + "</div>" * DEEP
    return Site(
        pages={
            "/": Page(
                html(
                    "content",
                    [
                        "/pdf",
                        "/binary",
                        "/latin1-labelled-utf8",
                        "/utf8-labelled-latin1",
                        "/bogus-charset",
                        "/ascii-labelled-utf16",
                        "/meta-utf16",
                        "/deep",
                        "/plain",
                    ],
                )
            ),
            "/pdf": Page(b"%PDF-1.4\n<a href='/from-pdf'>x</a>", headers={"Content-Type": "application/pdf"}),
            "/binary": Page(
                b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"<html><a href='/from-binary'>x</a>",
                headers={"Content-Type": "text/html"},
            ),
            "/plain": Page(b"just text; <a href='/from-plain'>x</a>", headers={"Content-Type": "text/plain"}),
            "/latin1-labelled-utf8": Page(
                b"<title>Caf\xe9</title><a href='/cs1'>x</a>", headers={"Content-Type": cs + "utf-8"}
            ),
            "/utf8-labelled-latin1": Page(
                "<title>Café</title><a href='/cs2'>x</a>".encode(), headers={"Content-Type": cs + "iso-8859-1"}
            ),
            "/bogus-charset": Page(
                "<title>Café</title><a href='/cs3'>x</a>".encode(), headers={"Content-Type": cs + "x-no-such"}
            ),
            "/ascii-labelled-utf16": Page(
                b"<title>Plain</title><a href='/cs4'>x</a>", headers={"Content-Type": cs + "utf-16"}
            ),
            "/meta-utf16": Page(
                b'<meta charset="utf-16"><title>Meta</title><a href="/cs5">x</a>',
                headers={"Content-Type": "text/html"},
            ),
            "/deep": Page(nested),
            **{f"/cs{i}": Page(html(f"cs{i}")) for i in range(1, 6)},
            "/deep-child": Page(html("deep child")),
        }
    )


def _traps_site() -> Site:
    long_query = "/long?q=" + "a" * 2100
    many = "/seg/" + "/".join(str(i) for i in range(70))
    return Site(
        pages={
            "/": Page(
                html(
                    "traps",
                    [
                        long_query,
                        "/r/",
                        many,
                        "/s?sessionid=abc123&x=1",
                        "/s2;jsessionid=XYZ789?y=2",
                        "/s3?utm_source=mail&PHPSESSID=9f9f&id=2",
                        "/fan",
                        "/nd-a",
                        "/nd-b",
                    ],
                )
            ),
            "/s": Page(html("s")),
            "/s2": Page(html("s2")),
            "/s3": Page(html("s3")),
            "/fan": Page(html("fan", [f"/f/{i}" for i in range(50)])),
            "/nd-a": Page(html("a", ["/nd-child-a"], f"Generated at 2026-11-28 02:13:37. {ARTICLE}")),
            "/nd-b": Page(html("b", ["/nd-child-b"], f"Generated at 2026-11-28 03:14:15. {ARTICLE}")),
            "/nd-child-a": Page(html("child a")),
            "/nd-child-b": Page(html("child b")),
        },
        fallback=trap(lambda path: ["r/"] if path.startswith("/r/") else []),
    )


def _robots_sites() -> dict[str, Site]:
    rng = random.Random(3)
    huge = "User-agent: *\nDisallow: /blocked\n" + "".join(f"Disallow: /x{i}/y\n" for i in range(300_000))
    wild = "User-agent: *\nDisallow: /nope\n" + "".join(
        "Disallow: /" + "*".join(rng.choice("abcdefgh") for _ in range(20)) + "$\n" for _ in range(20_000)
    )
    pages = {"/": Page(html("robots", ["/open", "/blocked", "/nope"])), "/open": Page(html("open"))}
    return {
        "bigrobots.test": Site(pages=dict(pages), robots=huge),
        "wildrobots.test": Site(pages=dict(pages), robots=wild),
        "binrobots.test": Site(
            pages={**pages, "/robots.txt": Page(rng.randbytes(300_000), headers={"Content-Type": "text/plain"})}
        ),
    }


def build_web(ports: dict[str, int]) -> tuple[dict[str, Site], list[str], set[str]]:
    """The hostile sites, the seed paths (`host/path`), and the healthy host's reachable keys."""
    healthy, reachable, _ = make_link_web(n_hosts=1, pages_per_host=20, seed=11)
    ok = Page(html("fine"))
    sites: dict[str, Site] = {
        **healthy,
        "bomb.test": Site(
            pages={
                "/": Page(html("bombs", ["/gzip", "/deflate", "/br", "/stacked", "/stacked-headers", "/ok"])),
                "/gzip": gzip_bomb(BOMB),
                "/deflate": deflate_bomb(BOMB),
                "/br": brotli_bomb(BOMB),
                "/stacked": Page(
                    gzip.compress(gzip.compress(html("twice").encode())),
                    headers={"Content-Type": "text/html", "Content-Encoding": "gzip, gzip"},
                ),
                "/stacked-headers": raw_response(
                    HDR + b"Content-Encoding: gzip\r\nContent-Encoding: br\r\nContent-Length: 20\r\n\r\n" + b"\x1f" * 20
                ),
                "/ok": ok,
            }
        ),
        "drip.test": Site(pages={"/": drip(b"<html>" + b"x" * 200, interval=0.25)}),
        "silent.test": Site(pages={"/": silence_after_headers(30)}),
        "slowhead.test": Site(pages={"/": Page(html("late"), delay=30)}),
        "short.test": Site(pages={"/": raw_response(HDR + b"Content-Length: 1000\r\n\r\n" + b"x" * 100)}),
        "chunkcut.test": Site(
            pages={"/": raw_response(HDR + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwor")}
        ),
        "long.test": Site(pages={"/": raw_response(HDR + b"Content-Length: 10\r\n\r\n<a href=x>" + b"B" * 90)}),
        "smuggle.test": Site(
            pages={
                "/": raw_response(
                    HDR + b"Content-Length: 10\r\n\r\n<a href=x>HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
                    hold=0.5,
                )
            }
        ),
        "redir.test": _redir_site(ports),
        "status.test": Site(
            pages={
                "/": Page(html("statuses", ["/404", "/410", "/403"])),
                "/404": Page("gone", status=404),
                "/410": Page("gone", status=410),
                "/403": Page("no", status=403),
            }
        ),
        "r408.test": Site(pages={"/": sequence(Page("slow", status=408), then=Page(html("after 408")))}),
        "e500.test": Site(pages={"/": Page("broken", status=500)}),
        "abort.test": Site(pages={"/": abort_connection()}),
        "ra-secs.test": Site(
            pages={"/": sequence(Page("busy", 429, {"Retry-After": "1"}), then=Page(html("after seconds")))}
        ),
        "ra-date.test": Site(
            pages={"/": sequence(Page("busy", 503, {"Retry-After": "@IN:2@"}), then=Page(html("after date")))}
        ),
        "ra-clamp.test": Site(
            pages={"/": sequence(Page("busy", 429, {"Retry-After": "86400"}), then=Page(html("after clamp")))}
        ),
        "ra-none.test": Site(pages={"/": sequence(Page("busy", 429), then=Page(html("after doubling")))}),
        "storm.test": Site(pages={"/s1": Page("down", status=503), "/s2": Page(html("after the storm"))}),
        "deep.test": Site(pages={}, fallback=trap(lambda path: [f"/d/{int(path.rsplit('/', 1)[1]) + 1}"])),
        "budget.test": Site(
            pages={},
            fallback=trap(lambda path: [f"/cal/{int(path.rsplit('/', 1)[1]) + k}" for k in (1, 2, 3)]),
        ),
        "traps.test": _traps_site(),
        "links.test": _links_site(ports),
        "xn--bcher-kva.test": Site(pages={"/": ok, "/upper": ok}),
        "cookie.test": Site(
            pages={
                "/": Page(html("cookie", ["/next", f"http://healthy-cookie.test:{P}/"]), headers={"Set-Cookie": "t=1"}),
                "/next": ok,
            }
        ),
        "healthy-cookie.test": Site(pages={"/": ok}),
        "creds.test": Site(pages={"/": ok}),
        "content.test": _content_site(),
        **_robots_sites(),
    }
    seeds = [
        "h0.test/",
        *(f"{h}/" for h in sorted(sites) if h not in ("h0.test", "storm.test", "deep.test", "budget.test")),
        "storm.test/s1",
        "storm.test/s2",
        "deep.test/d/0",
        "budget.test/cal/0",
    ]
    seeds = [s for s in seeds if not s.startswith(("xn--", "healthy-cookie", "creds.test"))]
    return sites, seeds, reachable


CONFIG = """
[crawl]
max_outlinks = 20
sitemaps = false        # hostile pages here (hostile sitemaps: tests/test_e2e_sitemaps.py): exact request logs
allow_domains = {allow}

[politeness]
delay = 0.05
retry_after_max = 1.5
max_backoff_delay = 0.4
breaker_failures = 3
breaker_cooldown = 1.5
breaker_max_cooldown = 1.5

[fetch]
connect_timeout = 1
read_timeout = 1
total_timeout = 2
max_body_bytes = 1048576
retry_backoff = [0.05, 0.05]
server_error_interval = 0.05    # 5xx: linear, 0.05 s then 0.1 s (the failure matrix's server_error row)

[domains."h0.test"]
delay = 0.15
max_depth = 50

[domains."deep.test"]
max_depth = 3

[domains."budget.test"]
max_pages = 3

[domains."traps.test"]
follow_near_duplicates = false
"""


@dataclass
class Crawl:
    """Everything one hostile crawl left behind."""

    proc: subprocess.CompletedProcess[str]
    elapsed: float
    port: int
    log: list[LoggedRequest]
    decoys: dict[str, list[LoggedRequest]]
    records: list[dict[str, Any]]
    stats: dict[str, Any]
    audit: list[str]
    reachable: set[str]
    raw: dict[str, bytes] = field(default_factory=dict)

    def rec(self, key: str) -> dict[str, Any]:
        """The one record of `host/path`."""
        found = [r for r in self.records if page_key(r["url"]) == key]
        assert len(found) == 1, (key, found)
        return found[0]

    def requests(self, host: str, path: str | None = None) -> list[LoggedRequest]:
        """Page requests (robots.txt excluded) to `host`, optionally one path, in arrival order."""
        return sorted(
            (r for r in self.log if r.host == host and r.path != "/robots.txt" and path in (None, r.path)),
            key=lambda r: r.started,
        )


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crawl]:
    """Run the crawler once over the whole hostile web (decoys listening on refused addresses)."""
    tmp = tmp_path_factory.mktemp("hostile")
    with TestWeb({}) as lo, TestWeb({}, address="127.0.0.2") as lo2, TestWeb({}, address="::1") as v6:
        ports = {"lo": lo.port, "lo2": lo2.port, "v6": v6.port}
        sites, seeds, reachable = build_web(ports)
        refused_hosts = {host_key(normalize(u.format(**ports))) for urls in REFUSED.values() for u in urls}
        allow = ["test", *sorted(refused_hosts | {"localhost", "127.0.0.2", "169.254.169.254"})]
        cfg = tmp / "hostile.toml"
        cfg.write_text(CONFIG.format(allow=orjson.dumps(allow).decode()))
        with TestWeb(sites) as main:
            urls = [main.url(host, "/" + path) for host, path in (s.split("/", 1) for s in seeds)]
            urls += ["ftp://h0.test/seed", f"http://admin:hunter2@creds.test:{main.port}/"]
            audit = tmp / "audit.log"
            started = time.monotonic()
            proc = run_guarded(
                "crawl",
                *urls,
                "-o",
                str(tmp / "out"),
                "-c",
                str(cfg),
                "--resolve",
                "*.test=127.0.0.1",
                "--no-progress",
                audit=audit,
            )
            elapsed = time.monotonic() - started
        # Read after stop: handlers still sleeping (silence, late headers) log when they are cancelled.
        log = main.log
        decoys = {"lo": lo.log, "lo2": lo2.log, "v6": v6.log}
    out = tmp / "out"
    yield Crawl(
        proc=proc,
        elapsed=elapsed,
        port=main.port,
        log=log,
        decoys=decoys,
        records=read_records(out / "pages.jsonl"),
        stats=orjson.loads((out / "stats.json").read_bytes()),
        audit=audit.read_text().splitlines() if audit.exists() else [],
        reachable=reachable,
        raw={"pages": (out / "pages.jsonl").read_bytes(), "stats": (out / "stats.json").read_bytes()},
    )


# ---------------------------------------------------------------------------------------------------
# The crawl as a whole


def test_crawl_finishes_and_the_healthy_host_is_fully_crawled(crawl: Crawl) -> None:
    assert crawl.proc.returncode == 0, crawl.proc.stderr
    assert crawl.stats["finished"] is True and crawl.stats["queued"] == 0
    assert crawl.elapsed < 30, crawl.elapsed  # the slowest case is 3 deadline-bound attempts of 2 s
    healthy = {
        page_key(r["url"]) for r in crawl.records if r["url"].startswith("http://h0.test") and r["status"] == 200
    }
    assert healthy == crawl.reachable
    keys = Counter(page_key(r["url"]) for r in crawl.records)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]


def test_no_connection_was_made_anywhere_but_the_test_web(crawl: Crawl) -> None:
    connects = {line for line in crawl.audit if line.startswith("connect ")}
    assert connects == {f"connect 127.0.0.1 {crawl.port}"}, connects
    lookups = {line for line in crawl.audit if line.startswith("getaddrinfo ")}
    assert lookups <= {"getaddrinfo localhost"}, lookups  # `outside.example` was refused before any lookup
    assert crawl.decoys == {"lo": [], "lo2": [], "v6": []}


# ---------------------------------------------------------------------------------------------------
# Typed outcomes, case by case: (key, status, error type, server requests for the path, attempts, dead)

OUTCOMES: list[tuple[str, int | None, str | None, int, int, bool]] = [
    ("bomb.test/gzip", None, "too_large", 1, 1, False),
    ("bomb.test/deflate", None, "too_large", 1, 1, False),
    ("bomb.test/br", None, "too_large", 1, 1, False),
    ("bomb.test/stacked", None, "bad_content_encoding", 1, 1, False),
    ("bomb.test/stacked-headers", None, "bad_content_encoding", 1, 1, False),
    ("bomb.test/ok", 200, None, 1, 1, False),
    ("drip.test/", None, "timeout", 3, 3, True),
    ("silent.test/", None, "timeout", 3, 3, True),
    ("slowhead.test/", None, "timeout", 3, 3, True),
    ("short.test/", None, "truncated_body", 3, 3, True),
    ("chunkcut.test/", None, "truncated_body", 3, 3, True),
    ("long.test/", None, "connection_error", 3, 3, True),
    ("smuggle.test/", None, "connection_error", 3, 3, True),
    ("abort.test/", None, "connection_error", 3, 3, True),
    ("status.test/404", 404, "http_error", 1, 1, False),
    ("status.test/410", 410, "http_error", 1, 1, False),
    ("status.test/403", 403, "http_error", 3, 3, True),  # other 4xx: retried (the client_error row)
    ("r408.test/", 200, None, 2, 2, False),
    ("e500.test/", 500, "http_error", 3, 3, True),
    ("ra-secs.test/", 200, None, 2, 2, False),
    ("ra-date.test/", 200, None, 2, 2, False),
    ("ra-clamp.test/", 200, None, 2, 2, False),
    ("ra-none.test/", 200, None, 2, 2, False),
    ("storm.test/s1", 503, "http_error", 3, 3, True),
    ("storm.test/s2", 200, None, 1, 1, False),
    ("redir.test/loop-a", 302, "redirect_loop", 1, 1, False),
    ("redir.test/self", 301, "redirect_loop", 1, 1, False),
    ("redir.test/c1", 302, "too_many_redirects", 1, 1, False),
    ("redir.test/ok1", 200, None, 1, 1, False),
    ("redir.test/to-ftp", 302, "redirect_refused", 1, 1, False),
    ("redir.test/to-file", 302, "redirect_refused", 1, 1, False),
    ("redir.test/to-js", 302, "redirect_refused", 1, 1, False),
    ("redir.test/to-outside", 302, "redirect_refused", 1, 1, False),
    ("redir.test/to-private", 302, "robots_disallowed", 1, 1, False),
    ("redir.test/to-localhost", 302, None, 1, 1, False),
    ("bigrobots.test/open", 200, None, 1, 1, False),
    ("bigrobots.test/blocked", None, "robots_disallowed", 0, 1, False),
    ("wildrobots.test/open", 200, None, 1, 1, False),
    ("wildrobots.test/nope", None, "robots_disallowed", 0, 1, False),
    ("binrobots.test/open", 200, None, 1, 1, False),
    ("links.test/after-schemes", 200, None, 1, 1, False),
    ("links.test/after-invalid", 200, None, 1, 1, False),
    ("links.test/cred", 200, None, 1, 1, False),
    ("creds.test/", 200, None, 1, 1, False),
    ("xn--bcher-kva.test/", 200, None, 1, 1, False),
    ("xn--bcher-kva.test/upper", 200, None, 1, 1, False),
    ("content.test/pdf", 200, None, 1, 1, False),
    ("content.test/binary", 200, None, 1, 1, False),
    ("content.test/plain", 200, None, 1, 1, False),
    ("content.test/deep", 200, None, 1, 1, False),
    ("traps.test/s?x=1", 200, None, 1, 1, False),
    ("traps.test/s2?y=2", 200, None, 1, 1, False),
    ("traps.test/s3?id=2", 200, None, 1, 1, False),
]


@pytest.mark.parametrize(
    ("key", "status", "error", "requests", "attempts", "dead"), OUTCOMES, ids=[c[0] for c in OUTCOMES]
)
def test_outcome(
    crawl: Crawl, key: str, status: int | None, error: str | None, requests: int, attempts: int, dead: bool
) -> None:
    rec = crawl.rec(key)
    assert (rec["status"], rec["error"] and rec["error"]["type"]) == (status, error), rec["error"]
    assert (rec["attempts"], rec["dead_letter"]) == (attempts, dead)
    host, _, path = key.partition("/")
    assert len(crawl.requests(host, "/" + path)) == requests
    if error is None and status == 200:
        assert rec["bytes"] > 0


REFUSED_CASES = [(decoy, url) for decoy, urls in REFUSED.items() for url in urls]


@pytest.mark.parametrize(("decoy", "url"), REFUSED_CASES, ids=[u.split("//")[1] for _, u in REFUSED_CASES])
def test_refused_address_is_recorded_and_never_contacted(crawl: Crawl, decoy: str, url: str) -> None:
    ports = {"lo": 0, "lo2": 0, "v6": 0}
    path = urlsplit(url.format(**ports)).path
    (rec,) = [r for r in crawl.records if urlsplit(r["url"]).path == path and r["error"] is not None]
    assert rec["error"]["type"] == "private_address" and rec["status"] is None, rec
    assert rec["dead_letter"] is False and rec["attempts"] == 1
    if decoy:
        assert crawl.decoys[decoy] == []


# ---------------------------------------------------------------------------------------------------
# Timing seen from the server: deadlines, backoff, Retry-After, circuit breaker


def _gaps(reqs: list[LoggedRequest]) -> list[float]:
    """Seconds from the end of each request to the start of the next."""
    return [b.started - a.finished for a, b in itertools.pairwise(reqs)]


def test_slow_responses_end_on_time(crawl: Crawl) -> None:
    # A drip never trips the 1 s read timeout; only the 2 s whole-fetch deadline ends it.
    drips = crawl.requests("drip.test")
    starts = [b.started - a.started for a, b in itertools.pairwise(drips)]
    assert all(1.95 <= s < 3.0 for s in starts), starts
    assert all(r.finished - r.started < 2.6 for r in drips), [r.finished - r.started for r in drips]
    for host in ("silent.test", "slowhead.test"):  # read timeout (1 s), long before the server's 30 s
        reqs = crawl.requests(host)
        starts = [b.started - a.started for a, b in itertools.pairwise(reqs)]
        assert all(0.95 <= s < 1.9 for s in starts), (host, starts)


def test_retries_wait_their_backoff(crawl: Crawl) -> None:
    for host in ("e500.test", "abort.test", "short.test", "long.test"):
        gaps = _gaps(crawl.requests(host))
        assert len(gaps) == 2 and min(gaps) >= 0.04, (host, gaps)  # retry_backoff 0.05 s, jitter ±20 %
    assert crawl.stats["retries"] >= 2 * 10


@pytest.mark.parametrize(
    ("host", "low", "high"),
    [
        ("ra-secs.test", 0.95, 2.0),  # Retry-After: 1
        ("ra-date.test", 0.95, 3.0),  # an HTTP date 2 s ahead (whole seconds, so 1–2 s)
        ("ra-clamp.test", 1.45, 2.6),  # Retry-After: 86400 clamped to retry_after_max = 1.5
        ("ra-none.test", 0.35, 1.2),  # no Retry-After: the host's delay doubles, capped at 0.4 s
    ],
)
def test_slow_down_statuses_pause_the_host(crawl: Crawl, host: str, low: float, high: float) -> None:
    first, second = crawl.requests(host)
    assert first.status in (429, 503) and second.status == 200
    assert low <= second.started - first.finished < high, second.started - first.finished


def test_503_storm_opens_the_circuit_while_other_hosts_go_on(crawl: Crawl) -> None:
    storm = crawl.requests("storm.test")
    assert [(r.path, r.status) for r in storm] == [("/s1", 503)] * 3 + [("/s2", 200)]
    gaps = _gaps(storm)
    assert all(0.35 <= g < 1.2 for g in gaps[:2]), gaps  # 503 without Retry-After: doubled delay
    assert gaps[2] >= 1.45, gaps  # third failure in a row: breaker_cooldown = 1.5 s
    pause = (storm[2].finished, storm[3].started)
    during = [r for r in crawl.log if r.host == "h0.test" and pause[0] < r.started < pause[1]]
    assert len(during) >= 3, "the healthy host must keep going while the stormy one is paused"


# ---------------------------------------------------------------------------------------------------
# Redirects


def test_redirects_hop_by_hop_with_limits(crawl: Crawl) -> None:
    for i in range(1, 7):
        assert len(crawl.requests("redir.test", f"/c{i}")) == 1
    assert crawl.requests("redir.test", "/c7") == []  # the sixth hop is not taken
    assert len(crawl.rec("redir.test/c1")["redirects"]) == 6
    ok = crawl.rec("redir.test/ok1")
    assert page_key(ok["final_url"]) == "redir.test/ok6" and ok["title"] == "chain end"
    assert [h["status"] for h in ok["redirects"]] == [301] * 5
    assert len(crawl.requests("redir.test", "/loop-b")) == 1
    assert crawl.requests("redir.test", "/private/secret") == []  # robots re-checked on the hop


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("/to-localhost", "localhost/from-redirect"),
        ("/to-loopback-2", "127.0.0.2/from-redirect"),
        ("/to-metadata", "169.254.169.254/latest/meta-data/iam"),
        ("/to-decimal", "127.0.0.1/from-redirect-decimal"),
    ],
)
def test_redirect_to_a_refused_address_is_not_followed(crawl: Crawl, source: str, target: str) -> None:
    rec = crawl.rec("redir.test" + source)
    assert page_key(rec["redirect_to"]) == target and rec["error"] is None
    assert crawl.rec(target)["error"]["type"] == "private_address"


# ---------------------------------------------------------------------------------------------------
# Spider traps


def test_trap_limits_hold(crawl: Crawl) -> None:
    assert [r.path for r in crawl.requests("deep.test")] == ["/d/0", "/d/1", "/d/2", "/d/3"]  # max_depth 3
    assert len(crawl.requests("budget.test")) == 3  # max_pages 3 for the host, endless calendar
    assert [r.path for r in crawl.requests("traps.test") if r.path.startswith("/r/")] == ["/r/", "/r/r/", "/r/r/r/"]
    paths = [r.path for r in crawl.requests("traps.test")]
    assert not [p for p in paths if p.startswith(("/long", "/seg"))]
    fan = crawl.rec("traps.test/fan")
    assert len(fan["links"]) == 20 and len([p for p in paths if p.startswith("/f/")]) == 20  # max_outlinks
    lowered = [r.path.lower() for r in crawl.log]
    assert not [p for p in lowered if "sessionid" in p or "phpsessid" in p or "utm_" in p]


def test_near_duplicate_is_not_expanded(crawl: Crawl) -> None:
    # traps.test turns following near-duplicates off (the default follows them; see test_e2e_pages).
    a, b = crawl.rec("traps.test/nd-a"), crawl.rec("traps.test/nd-b")
    dup, original = (b, a) if b["near_duplicate_of"] else (a, b)
    assert page_key(dup["near_duplicate_of"]) == page_key(original["url"]) and not dup["links_followed"]
    children = [r.path for r in crawl.requests("traps.test") if r.path.startswith("/nd-child")]
    assert children == [original["links"][0].replace(f"http://traps.test:{crawl.port}", "")]


def test_skipped_urls_are_counted_by_reason(crawl: Crawl) -> None:
    skipped = crawl.stats["skipped"]
    for reason in ("url_too_long", "too_many_segments", "repeated_segments", "max_depth"):
        assert skipped.get(reason, 0) >= 1, (reason, skipped)
    assert skipped.get("max_outlinks") == 30
    # Every bad scheme and every malformed URL is dropped as invalid_url (`javascript:` never gets that far).
    assert skipped.get("invalid_url", 0) >= len(BAD_SCHEMES) + len(INVALID)


def test_over_budget_urls_are_counted_in_skipped(crawl: Crawl) -> None:
    # budget.test (max_pages 3) links to an endless calendar: everything past the budget is a skipped URL.
    assert crawl.stats["skipped"].get("over_budget", 0) > 0, crawl.stats["skipped"]
    assert sum(crawl.stats["skipped"].values()) > sum(
        crawl.stats["skipped"].get(k, 0)
        for k in ("url_too_long", "too_many_segments", "repeated_segments", "max_depth", "max_outlinks", "invalid_url")
    ), crawl.stats["skipped"]


# ---------------------------------------------------------------------------------------------------
# Network safety beyond addresses


def test_only_http_urls_are_ever_fetched_or_recorded(crawl: Crawl) -> None:
    assert all(r["url"].startswith("http://") for r in crawl.records)
    assert "skipping invalid seed" in crawl.proc.stderr and "ftp" in crawl.proc.stderr


def test_credentials_are_stripped_everywhere(crawl: Crawl) -> None:
    for secret in ("s3cr3t-pw", "hunter2", "admin:", "user:"):
        assert secret.encode() not in crawl.raw["pages"] and secret.encode() not in crawl.raw["stats"], secret
        assert secret not in crawl.proc.stderr
    for host, path in (("links.test", "/cred"), ("creds.test", "/")):
        (req,) = crawl.requests(host, path)
        assert "authorization" not in {k.lower() for k in req.headers}


def test_no_cookie_or_auth_header_is_ever_sent(crawl: Crawl) -> None:
    assert crawl.requests("cookie.test", "/next") and crawl.requests("healthy-cookie.test", "/")
    sent = [(r.host, r.path, k) for r in crawl.log for k in r.headers if k.lower() in ("cookie", "authorization")]
    assert sent == []


def test_idna_host_is_fetched_by_its_a_label(crawl: Crawl) -> None:
    assert {r.path for r in crawl.requests("xn--bcher-kva.test")} == {"/", "/upper"}


# ---------------------------------------------------------------------------------------------------
# Content


def test_non_html_and_binary_are_not_parsed(crawl: Crawl) -> None:
    for key in ("content.test/pdf", "content.test/binary", "content.test/plain"):
        rec = crawl.rec(key)
        assert rec["links"] == [] and rec["title"] is None, key
    assert not [r for r in crawl.requests("content.test") if r.path.startswith("/from-")]


@pytest.mark.parametrize(
    ("path", "title", "child"),
    [
        ("/latin1-labelled-utf8", "Caf\ufffd", "/cs1"),
        ("/utf8-labelled-latin1", "Café", "/cs2"),
        ("/bogus-charset", "Café", "/cs3"),
        ("/ascii-labelled-utf16", "Plain", "/cs4"),
        ("/meta-utf16", "Meta", "/cs5"),
    ],
)
def test_lying_charsets_decode_leniently(crawl: Crawl, path: str, title: str, child: str) -> None:
    rec = crawl.rec("content.test" + path)
    assert rec["title"] == title and rec["error"] is None
    assert len(crawl.requests("content.test", child)) == 1


def test_deeply_nested_html_cannot_stall(crawl: Crawl) -> None:
    (deep,) = crawl.requests("content.test", "/deep")
    (child,) = crawl.requests("content.test", "/deep-child")
    assert child.started - deep.finished < 2.0


def test_hostile_robots_files_cannot_stall(crawl: Crawl) -> None:
    # Each robots host: a 5 MB file, 20,000 wildcard rules, 300 KB of random bytes. Their pages come
    # through within seconds, and the rules that were readable are obeyed.
    for host in ("bigrobots.test", "wildrobots.test", "binrobots.test"):
        reqs = sorted((r for r in crawl.log if r.host == host), key=lambda r: r.started)
        assert reqs[-1].finished - reqs[0].started < 3.0, host
    assert crawl.requests("bigrobots.test", "/blocked") == []
    assert crawl.requests("wildrobots.test", "/nope") == []
    assert len(crawl.requests("binrobots.test", "/blocked")) == 1  # unreadable rules: allow all


# ---------------------------------------------------------------------------------------------------
# Bounded memory: bombs at the default 10 MiB cap cost about what plain pages of that size cost


def _memory_crawl(tmp: Path, bombs: bool) -> tuple[dict[str, Any], list[dict[str, Any]], set[str]]:
    healthy, reachable, _ = make_link_web(n_hosts=1, pages_per_host=10, seed=5)
    kinds = {"gzip": gzip_bomb, "deflate": deflate_bomb, "br": brotli_bomb}
    paths = [f"/{kind}/{i}" for kind in kinds for i in range(3)]
    # The plain crawl has the same pages, 1 MiB of text each instead of a bomb.
    plain = Page(html("big", [], "word " * (2**20 // 5)))
    pages: dict[str, Any] = {p: (kinds[p.split("/")[1]](200 * 2**20) if bombs else plain) for p in paths}
    pages["/"] = Page(html("index", paths))
    sites = {**healthy, "mem.test": Site(pages=pages)}
    with TestWeb(sites) as web_:
        proc = run_guarded(
            "crawl",
            web_.url("mem.test"),
            web_.url("h0.test"),
            "-o",
            str(tmp / ("bombs" if bombs else "plain")),
            "--delay",
            "0.01",
            "--max-depth",
            "50",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
            "--no-sitemaps",
            audit=tmp / "audit.log",
        )
    assert proc.returncode == 0, proc.stderr
    out = tmp / ("bombs" if bombs else "plain")
    return orjson.loads((out / "stats.json").read_bytes()), read_records(out / "pages.jsonl"), reachable


def test_bombs_stop_at_the_cap_and_memory_stays_bounded(tmp_path: Path) -> None:
    plain_stats, plain_recs, reachable = _memory_crawl(tmp_path, bombs=False)
    bomb_stats, bomb_recs, _ = _memory_crawl(tmp_path, bombs=True)
    bombs = [r for r in bomb_recs if r["url"].startswith("http://mem.test") and urlsplit(r["url"]).path != "/"]
    assert len(bombs) == 9 and all(r["error"]["type"] == "too_large" for r in bombs)
    assert all(r["attempts"] == 1 for r in bombs)  # a bomb is not worth a second try
    for recs in (plain_recs, bomb_recs):
        healthy = {page_key(r["url"]) for r in recs if r["url"].startswith("http://h0.test") and r["error"] is None}
        assert healthy == reachable
    assert [r["error"] for r in plain_recs if r["url"].startswith("http://mem.test")] == [None] * 10
    # Nine 200 MiB bombs: had any been decoded past the 10 MiB cap, RSS would have grown by 190 MiB.
    growth = bomb_stats["peak_rss_mb"] - plain_stats["peak_rss_mb"]
    assert growth < 50, (bomb_stats["peak_rss_mb"], plain_stats["peak_rss_mb"])
