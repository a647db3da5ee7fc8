"""End to end: `crawler crawl --warc` (and workers with `[output] warc = true`) against loopback servers.

Every WARC file is read back with warcio's ArchiveIterator and checked with the `warcio check` CLI;
payloads are compared with the bytes the test server sent.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import socket
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from crawler.output.warc.files import complete_end, marker_path
from crawler.render.find import find_browser
from tests.conftest import page_key, read_records, run_crawler, start_crawler
from tests.judges import pages_only
from tests.redis_server import RedisServer
from tests.test_e2e_distributed import Cluster
from tests.testweb import Page, Site, TestWeb, make_link_web, redirect
from tests.warc_files import read_warc, record_at, warcio_check

pytest_plugins = ["redis_server"]

UA = "PoliteCrawler/0.1 (+https://github.com/polite-crawler)"
WORDS = " ".join(f"river{i} lantern copper" for i in range(40))
ROBOTS = "User-agent: *\nDisallow: /private/\n"
PIECES = [b"<html><head><title>chunked</title></head><body><p>", WORDS.encode(), b"</p></body></html>"]


def _html(title: str, links: list[str] = ()) -> bytes:  # type: ignore[assignment]
    anchors = "".join(f'<a href="{h}">{h}</a> ' for h in links)
    return f"<html><head><title>{title}</title></head><body><p>{title}: {WORDS}</p>{anchors}</body></html>".encode()


async def _chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/html"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for piece in PIECES:
        await resp.write(piece)
    await resp.write_eof()
    return resp


PLAIN = _html("plain")
GZ = gzip.compress(_html("gzipped"), mtime=0)
LINKS = ["/plain", "/dup", "/gz", "/chunked", "/moved", "/missing", *(f"/p{i}" for i in range(8))]
SENT: dict[str, bytes] = {  # what the server sends for each path, byte for byte
    "/": _html("home", LINKS),
    "/plain": PLAIN,
    "/dup": PLAIN,
    "/gz": GZ,
    "/chunked": b"".join(PIECES),
    "/moved": b"",
    "/target": _html("target"),
    "/missing": b"not found",
    "/robots.txt": ROBOTS.encode(),
    **{f"/p{i}": _html(f"page {i}") for i in range(8)},
}


def _site() -> Site:
    pages: dict[str, Any] = {path: Page(body) for path, body in SENT.items() if path.startswith(("/p", "/t"))}
    pages.update(
        {
            "/": Page(SENT["/"]),
            "/plain": Page(PLAIN),
            "/dup": Page(PLAIN),
            "/gz": Page(GZ, headers={"Content-Encoding": "gzip", "Content-Type": "text/html; charset=utf-8"}),
            "/chunked": _chunked,
            "/moved": redirect("/target", 301),
        }
    )
    return Site(pages, robots=ROBOTS)


def _by_path(records: list[dict[str, Any]], kinds: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["type"] in kinds:
            out["/" + r["warc"]["WARC-Target-URI"].split("/", 3)[3]].append(r)
    return out


def _assert_pointers(out: Path, records: list[dict[str, Any]]) -> None:
    """Every record with a response points at that response's (or revisit's) WARC record."""
    for rec in records:
        if rec["status"] is None:
            assert rec["warc"] is None, rec
            continue
        ptr = rec["warc"]
        assert ptr is not None and ptr["file"].startswith("warc/"), rec
        found = record_at(out / ptr["file"], ptr["offset"])
        assert found["type"] in ("response", "revisit") and found["warc"]["WARC-Target-URI"] == rec["final_url"]
        with open(out / ptr["file"], "rb") as fh:  # `length` is the whole gzip member
            fh.seek(ptr["offset"])
            member = zlib.decompressobj(31)
            member.decompress(fh.read(ptr["length"]))
            assert member.eof and not member.unused_data


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("warc")
    out = tmp / "out"
    cfg = tmp / "c.toml"
    cfg.write_text('[output]\nwarc_max_bytes = 4096\nwarc_prefix = "test"\n')
    with TestWeb({"a.test": _site()}) as tw:
        # Sitemaps off: these tests hold the archive to exactly the requests of SENT.
        proc = run_crawler(
            "crawl", tw.url("a.test"), "-o", str(out), "-c", str(cfg), "--warc", "--delay", "0",
            "--resolve", "*.test=127.0.0.1", "--no-progress", "--no-sitemaps",
        )  # fmt: skip
        log = tw.log
    assert proc.returncode == 0, proc.stderr
    files = sorted((out / "warc").glob("*.warc.gz"))
    warc = [r for f in files for r in read_warc(f)]
    return {"out": out, "files": files, "warc": warc, "log": log, "pages": read_records(out / "pages.jsonl")}


def test_warcio_check_passes_on_every_file(crawl: dict[str, Any]) -> None:
    check = warcio_check(crawl["files"])
    assert check.returncode == 0, check.stdout
    assert "digest pass" in check.stdout and "fail" not in check.stdout.lower()


def test_one_response_per_request_with_the_bytes_the_server_sent(crawl: dict[str, Any]) -> None:
    answers = _by_path(crawl["warc"], ("response", "revisit"))
    served = Counter(r.path for r in crawl["log"])
    assert set(answers) == set(served) == set(SENT)  # robots.txt, the redirect hop and the 404 included
    for path, recs in answers.items():
        assert len(recs) == served[path] == 1, path
        (rec,) = recs
        assert rec["warc"]["WARC-IP-Address"] == "127.0.0.1"
        if rec["type"] == "response":
            assert rec["payload"] == SENT[path], path
    gz = answers["/gz"][0]
    assert gz["http"].get_header("Content-Encoding") == "gzip"  # archived as sent, content coding kept
    chunked = answers["/chunked"][0]
    assert chunked["http"].get_header("X-Crawler-Transfer-Encoding") == "chunked"
    assert chunked["http"].get_header("Transfer-Encoding") is None
    assert answers["/moved"][0]["http"].get_header("Location") == "/target"
    assert answers["/missing"][0]["http"].statusline.startswith("404")


def test_requests_match_their_responses_and_what_the_server_received(crawl: dict[str, Any]) -> None:
    answers = {r["warc"]["WARC-Record-ID"]: r for r in crawl["warc"] if r["type"] in ("response", "revisit")}
    requests = [r for r in crawl["warc"] if r["type"] == "request"]
    assert len(requests) == len(answers)
    received = {r.path: r.headers for r in crawl["log"]}
    for req in requests:
        answer = answers[req["warc"]["WARC-Concurrent-To"]]
        assert req["warc"]["WARC-Target-URI"] == answer["warc"]["WARC-Target-URI"]
        assert req["warc"]["WARC-Date"] == answer["warc"]["WARC-Date"]
        path = "/" + req["warc"]["WARC-Target-URI"].split("/", 3)[3]
        assert req["http"].protocol == "GET" and req["http"].statusline == f"{path} HTTP/1.1"
        assert dict(req["http"].headers) == received[path]  # the head as it was sent
        assert req["http"].get_header("User-Agent") == UA


def test_an_exact_duplicate_is_a_revisit_of_the_first_copy(crawl: dict[str, Any]) -> None:
    answers = _by_path(crawl["warc"], ("response", "revisit"))
    pair = sorted((answers["/plain"][0], answers["/dup"][0]), key=lambda r: r["type"])
    first, revisit = pair
    assert (first["type"], revisit["type"]) == ("response", "revisit")
    assert revisit["warc"]["WARC-Refers-To"] == first["warc"]["WARC-Record-ID"]
    assert revisit["warc"]["WARC-Refers-To-Target-URI"] == first["warc"]["WARC-Target-URI"]
    assert revisit["warc"]["WARC-Refers-To-Date"] == first["warc"]["WARC-Date"]
    assert revisit["warc"]["WARC-Payload-Digest"] == first["warc"]["WARC-Payload-Digest"]
    assert revisit["warc"]["WARC-Profile"].endswith("/revisit/identical-payload-digest")
    assert sum(1 for r in crawl["warc"] if r["type"] == "revisit") == 1


def test_page_records_point_at_their_warc_records(crawl: dict[str, Any]) -> None:
    pages = {page_key(r["url"]): r for r in crawl["pages"]}
    assert {k.split("/", 1)[1] for k in pages} == {p.lstrip("/") for p in SENT if p not in ("/robots.txt", "/target")}
    assert pages["a.test/moved"]["final_url"].endswith("/target")  # a same-host redirect: the hop's target
    assert pages["a.test/missing"]["error"]["type"] == "http_error"
    _assert_pointers(crawl["out"], crawl["pages"])


def test_files_rotate_by_size_and_follow_the_naming_convention(crawl: dict[str, Any]) -> None:
    files: list[Path] = crawl["files"]
    assert len(files) >= 3
    name = re.compile(rf"^test-\d{{17}}-(\d{{5}})-{re.escape(socket.gethostname())}-\d+\.warc\.gz$")
    assert [int(name.match(f.name).group(1)) for f in files] == list(range(len(files)))
    by_file = defaultdict(list)
    for r in crawl["warc"]:
        by_file[r["file"]].append(r)
    for f in files:
        recs = by_file[f.name]
        assert recs[0]["type"] == "warcinfo" and recs[0]["warc"]["WARC-Filename"] == f.name
        assert f.stat().st_size <= 4096 or len(recs) <= 3  # only a single oversized exchange may exceed it
        assert not marker_path(f).exists()
    assert not [p for p in (crawl["out"] / "warc").iterdir() if p.name.startswith(".")]


@pytest.mark.skipif(find_browser() is None and os.environ.get("CI") != "true", reason="no Chromium installed")
def test_a_rendered_page_s_dom_is_a_conversion_of_its_response(tmp_path: Path) -> None:
    pages = {
        "/": Page(_html("home", ["/spa"])),
        "/spa": Page(
            '<html><head><title>spa</title></head><body><div id="root"></div>'
            '<script src="/app.js"></script></body></html>'
        ),
        "/app.js": Page(
            "const a = document.createElement('a'); a.href = '/from-script'; a.textContent = 'built by script';"
            " document.getElementById('root').appendChild(a);",
            headers={"Content-Type": "application/javascript"},
        ),
        "/from-script": Page(_html("from script")),
    }
    out = tmp_path / "out"
    with TestWeb({"js.test": Site(pages, robots=ROBOTS)}) as tw:
        proc = run_crawler(
            "crawl", tw.url("js.test"), "-o", str(out), "--warc", "--delay", "0",
            "--resolve", "*.test=127.0.0.1", "--no-progress", timeout=240,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    files = sorted((out / "warc").glob("*.warc.gz"))
    assert warcio_check(files).returncode == 0
    warc = [r for f in files for r in read_warc(f)]
    recs = {page_key(r["url"]): r for r in read_records(out / "pages.jsonl")}
    assert recs["js.test/spa"]["rendered"] is True and recs["js.test/from-script"]["status"] == 200
    answers = _by_path(warc, ("response",))
    spa = answers["/spa"][0]
    (dom,) = [r for r in warc if r["type"] == "conversion"]
    assert dom["warc"]["WARC-Refers-To"] == spa["warc"]["WARC-Record-ID"]
    assert dom["warc"]["WARC-Target-URI"] == spa["warc"]["WARC-Target-URI"]
    assert dom["warc"]["Content-Type"] == "text/html; charset=utf-8"
    assert b'<a href="/from-script">built by script</a>' in dom["payload"]  # the DOM, not the HTML fetched
    assert b"built by script" not in spa["payload"]
    assert "/app.js" in answers  # the browser's subrequest went through the crawler's client: archived too
    _assert_pointers(out, list(recs.values()))


def test_kill_9_then_resume_leaves_every_file_readable(tmp_path: Path) -> None:
    sites, reachable, _ = make_link_web(n_hosts=6, pages_per_host=40, seed=7)
    out = tmp_path / "out"
    with TestWeb(sites) as tw:
        args = [
            "crawl", *(tw.url(h) for h in sorted(sites)), "-o", str(out), "--warc", "--delay", "0.02",
            "--max-depth", "100", "--resolve", "*.test=127.0.0.1", "--no-progress",
        ]  # fmt: skip
        proc = start_crawler(*args, log=tmp_path / "first.log")
        pages = out / "pages.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(read_records(pages)) < len(reachable) // 3:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = read_records(pages)
        assert 0 < len(before) < len(reachable), "the kill must land mid-crawl"
        (dead,) = [f for f in (out / "warc").glob("*.warc.gz") if marker_path(f).exists()]
        # Killed, not closed: the log never points past what reached the WARC file.
        _assert_pointers(out, [r for r in before if r["warc"] is not None])
        whole = complete_end(dead)
        # The kill may or may not have landed inside a write; make sure the file ends in a torn member.
        torn = zlib.compress(b"WARC/1.0\r\nWARC-Type: response\r\n" + os.urandom(3000), 6, wbits=31)
        with open(dead, "ab") as fh:
            fh.write(torn[: len(torn) // 2])
        assert warcio_check([dead]).returncode != 0
        second = run_crawler(*args)
    assert second.returncode == 0, second.stderr
    assert "left open by a crawler that stopped abruptly" in second.stderr
    assert dead.stat().st_size == whole  # cut back to its last complete record
    files = sorted((out / "warc").glob("*.warc.gz"))
    assert len({f.name.rsplit("-", 1)[1] for f in files}) == 2  # two processes, two pids in the names
    assert not [p for p in (out / "warc").iterdir() if p.name.startswith(".")]
    check = warcio_check(files)
    assert check.returncode == 0, check.stdout
    records = read_records(pages)
    keys = Counter(page_key(r["url"]) for r in pages_only(records) if r["error"] is None)
    assert set(keys) == reachable and max(keys.values()) == 1
    _assert_pointers(out, records)  # replayed records included (each host's /sitemap.xml too): their WARC data survived
    archived = {page_key(r["warc"]["WARC-Target-URI"]) for f in files for r in read_warc(f) if r["type"] == "response"}
    assert reachable <= archived


def test_distributed_workers_write_their_own_files(
    tmp_path: Path, make_redis_server: Callable[..., RedisServer], redis_job: str
) -> None:
    hosts = 12
    sites, reachable, _ = make_link_web(n_hosts=hosts, pages_per_host=6, seed=3)
    server = make_redis_server()
    with TestWeb(sites) as tw:
        c = Cluster(server, tw, tmp_path, redis_job)
        c.cfg.write_text(c.cfg.read_text() + "[output]\nwarc = true\n")  # the job's config: every worker archives
        try:
            c.submit([tw.url(f"h{i}.test") for i in range(hosts)])
            c.start_frontier()
            for wid in ("w0", "w1"):
                c.start_worker(wid)
            c.wait(c.done, 120, "the job to finish")
        finally:
            c.stop()
    files = sorted((c.out / "warc").glob("*.warc.gz"))
    check = warcio_check(files)
    assert check.returncode == 0, check.stdout
    owners = {f.name.rsplit("-", 1)[1].removesuffix(".warc.gz") for f in files}
    assert owners == {"w0", "w1"}
    assert not [p for p in (c.out / "warc").iterdir() if p.name.startswith(".")]
    for wid in ("w0", "w1"):
        records = read_records(c.out / f"pages-{wid}.jsonl")
        assert records, wid
        assert all(r["warc"]["file"].endswith(f"-{wid}.warc.gz") for r in records if r["warc"] is not None)
        _assert_pointers(c.out, records)
    archived = {page_key(r["warc"]["WARC-Target-URI"]) for f in files for r in read_warc(f) if r["type"] == "response"}
    assert reachable <= archived
