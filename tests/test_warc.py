"""The WARC writer on real files, read back with warcio: wire bytes, record links, revisits, rotation, crashes.

The fetcher tests use real loopback servers; crashes are real process deaths (SIGKILL, a file-size
limit), never simulated inside the writer.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

from aiohttp import web

from crawler.core.exchange import Exchange
from crawler.core.record import Record
from crawler.fetch.http import HttpFetcher
from crawler.fetch.net import AddressPolicy
from crawler.output.warc import WarcArchive, repair_orphans
from crawler.output.warc.files import complete_end, marker_path
from tests.conftest import ROOT
from tests.testweb import Page, Site, TestWeb
from tests.warc_files import read_warc, warcio_check

NAME = re.compile(r"^crawl-\d{17}-(\d{5})-(.+)\.warc\.gz$")


def exchange(url: str, payload: bytes, *, status: int = 200, headers: tuple = ()) -> Exchange:
    return Exchange(
        url=url,
        started=time.time(),
        ip="127.0.0.1",
        method="GET",
        target="/" + url.split("/", 3)[-1],
        request_headers=(("Host", "a.test"), ("User-Agent", "T/1")),
        http_version="1.1",
        status=status,
        reason="OK",
        headers=((b"Content-Type", b"text/html"), *headers),
        payload=payload,
    )


def _chunked(pieces: list[bytes], **headers: str):
    async def handler(request: web.Request) -> web.StreamResponse:
        extra = {k.replace("_", "-"): v for k, v in headers.items()}
        resp = web.StreamResponse(headers={"Content-Type": "text/html", **extra})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for piece in pieces:
            await resp.write(piece)
        await resp.write_eof()
        return resp

    return handler


async def test_fetcher_keeps_wire_bytes_only_for_a_listener() -> None:
    html = b"<html><body>" + b"gzipped words " * 50 + b"</body></html>"
    gz = gzip.compress(html, mtime=0)
    pieces = [b"<html>first ", b"second ", b"third</html>"]
    site = Site(
        {
            "/gz": Page(gz, headers={"Content-Encoding": "gzip", "Content-Type": "text/html", "X-Odd": "caf\xe9"}),
            "/chunked": _chunked(pieces),
            # Without Content-Length (which the cap would refuse up front): trailing bytes stream in.
            "/garbage": _chunked([gzip.compress(b"<html>x</html>"), os.urandom(4096)], Content_Encoding="gzip"),
        }
    )
    seen: list[Exchange] = []
    with TestWeb({"a.test": site}) as tw:
        policy = AddressPolicy(resolve=tw.resolve_map())
        async with HttpFetcher(policy, user_agent="T/1", on_exchange=seen.append, max_body_bytes=2048) as http:
            gz_resp = await http.fetch(tw.url("a.test", "/gz?q=1"))
            ch_resp = await http.fetch(tw.url("a.test", "/chunked"))
            junk = await http.fetch(tw.url("a.test", "/garbage"))
        async with HttpFetcher(policy, user_agent="T/1") as plain:
            quiet = await plain.fetch(tw.url("a.test", "/gz"))
    assert quiet.exchange is None  # no listener: no wire copy kept
    assert [e.url for e in seen] == [gz_resp.url, ch_resp.url, junk.url]
    ex = gz_resp.exchange
    assert ex is seen[0] and gz_resp.body == html and ex.payload == gz  # archived as sent: still gzipped
    assert ex.target == "/gz?q=1" and ex.method == "GET" and ex.ip == "127.0.0.1" and not ex.cut
    assert (b"Content-Encoding", b"gzip") in ex.headers and (b"X-Odd", "caf\xe9".encode()) in ex.headers
    sent = dict(ex.request_headers)
    assert sent["User-Agent"] == "T/1" and sent["Host"].startswith("a.test:")
    ch = ch_resp.exchange
    assert ch is not None and ch.payload == b"".join(pieces) and ch.payload is ch_resp.body  # no second copy
    assert (b"Transfer-Encoding", b"chunked") in ch.headers
    # Bytes after the compressed stream are read, not decoded: the archived copy stops at the body cap.
    assert junk.body == b"<html>x</html>" and junk.exchange is not None
    assert junk.exchange.cut and len(junk.exchange.payload) <= 2048


async def test_records_link_up_and_heads_stay_byte_exact(tmp_path: Path) -> None:
    body = b"<html>" + b"same payload " * 40 + b"</html>"
    gz = gzip.compress(b"<html>zipped</html>", mtime=0)
    odd = (b"X-Odd", b"caf\xe9"), (b"set-cookie", b"a=1"), (b"Set-Cookie", b"b=2")
    first, second = exchange("http://a.test/1", body, headers=odd), exchange("http://a.test/2", body)
    framing = (b"Content-Encoding", b"gzip"), (b"Transfer-Encoding", b"chunked")
    chunked = exchange("http://a.test/c", gz, headers=framing)
    async with WarcArchive(tmp_path, writer="w/1 x", user_agent="T/1") as archive:
        for ex in (first, second, chunked):
            archive.add_exchange(ex)
        rec1, rec2 = Record(url=first.url, final_url=first.url), Record(url=second.url, final_url=second.url)
        archive.add_page(rec1, first, "<html>rendered ü</html>")
        archive.add_page(rec2, second)
        await archive.flush()
        files = [tmp_path / "warc" / name for name in archive.files]
    assert len(files) == 1 and NAME.match(files[0].name).group(2) == "w_1_x"  # unsafe characters replaced
    assert not marker_path(files[0]).exists()
    assert warcio_check(files).returncode == 0
    recs = read_warc(files[0])
    assert [r["type"] for r in recs] == [
        "warcinfo", "response", "request", "revisit", "request", "response", "request", "conversion"
    ]  # fmt: skip
    info, resp1, req1, rev2, req2, resp_c, _req_c, dom = recs
    assert b"http-header-user-agent: T/1" in info["payload"]
    assert resp1["payload"] == body and resp1["warc"]["WARC-IP-Address"] == "127.0.0.1"
    raw_head = resp1["http"].headers
    assert ("X-Odd", "caf\xe9") in raw_head and [v for k, v in raw_head if k.lower() == "set-cookie"] == ["a=1", "b=2"]
    assert req1["warc"]["WARC-Concurrent-To"] == resp1["warc"]["WARC-Record-ID"]
    assert req1["http"].protocol == "GET" and ("User-Agent", "T/1") in req1["http"].headers
    # The second copy of the payload is a revisit pointing at the first.
    assert rev2["warc"]["WARC-Refers-To"] == resp1["warc"]["WARC-Record-ID"]
    assert rev2["warc"]["WARC-Refers-To-Target-URI"] == first.url
    assert rev2["warc"]["WARC-Payload-Digest"] == resp1["warc"]["WARC-Payload-Digest"]
    assert "identical-payload-digest" in rev2["warc"]["WARC-Profile"] and rev2["payload"] == b""
    assert req2["warc"]["WARC-Concurrent-To"] == rev2["warc"]["WARC-Record-ID"]
    # De-chunked payload, so the framing header is renamed; the content coding stays.
    assert resp_c["payload"] == gz
    assert resp_c["http"].get_header("X-Crawler-Transfer-Encoding") == "chunked"
    assert resp_c["http"].get_header("Transfer-Encoding") is None
    assert dom["warc"]["WARC-Refers-To"] == resp1["warc"]["WARC-Record-ID"]
    assert dom["payload"] == "<html>rendered ü</html>".encode()
    # Each page record points at its response (or revisit) member.
    member = req1["offset"] - resp1["offset"]
    assert rec1.warc == {"file": f"warc/{files[0].name}", "offset": resp1["offset"], "length": member}
    assert rec2.warc is not None and rec2.warc["offset"] == rev2["offset"]
    assert first.payload == b""  # written: the archive kept no copy


async def test_revisit_memory_is_bounded(tmp_path: Path) -> None:
    a, b, c = (bytes([65 + i]) * 300 for i in range(3))
    async with WarcArchive(tmp_path, writer="w", user_agent="T/1", digest_memory=2) as archive:
        for i, payload in enumerate([a, b, c, a, c, b"x" * 100, b"x" * 100]):
            archive.add_exchange(exchange(f"http://a.test/{i}", payload))
        archive.add_exchange(exchange("http://a.test/404", c, status=404))
        await archive.flush()
        files = [tmp_path / "warc" / n for n in archive.files]
    kinds = [r["type"] for r in read_warc(files[0]) if r["type"] not in ("warcinfo", "request")]
    # `a` fell out of the two remembered digests; `c` did not. Small payloads and errors are never revisits.
    assert kinds == ["response"] * 4 + ["revisit", "response", "response", "response"]


async def test_files_rotate_by_size_without_splitting_an_exchange(tmp_path: Path) -> None:
    max_bytes = 4096
    async with WarcArchive(tmp_path, writer="w", user_agent="T/1", max_bytes=max_bytes) as archive:
        for i in range(12):
            archive.add_exchange(exchange(f"http://a.test/{i}", os.urandom(700)))
            if i % 5 == 4:
                await archive.flush()
    names = archive.files  # the last two exchanges were written by the close
    files = [tmp_path / "warc" / n for n in names]
    assert len(files) >= 3 and warcio_check(files).returncode == 0
    assert [int(NAME.match(n).group(1)) for n in names] == list(range(len(names)))
    uris = []
    for f in files:
        recs = read_warc(f)
        assert recs[0]["type"] == "warcinfo" and recs[0]["warc"]["WARC-Filename"] == f.name
        assert f.stat().st_size <= max_bytes
        pairs = recs[1:]
        assert [r["type"] for r in pairs] == ["response", "request"] * (len(pairs) // 2)
        for resp, req in zip(pairs[::2], pairs[1::2], strict=True):
            assert req["warc"]["WARC-Concurrent-To"] == resp["warc"]["WARC-Record-ID"]
        uris += [r["warc"]["WARC-Target-URI"] for r in pairs[::2]]
    assert uris == [f"http://a.test/{i}" for i in range(12)]
    # A new archive in the same folder goes on counting.
    async with WarcArchive(tmp_path, writer="w", user_agent="T/1") as again:
        again.add_exchange(exchange("http://a.test/x", b"x"))
        await again.flush()
        assert int(NAME.match(again.files[0]).group(1)) == len(names)


_WRITER = """
import asyncio, os, signal, sys, time
from pathlib import Path
from crawler.core.exchange import Exchange
from crawler.output.warc import WarcArchive

def ex(i, size):
    return Exchange(url=f"http://a.test/{i}", started=time.time(), ip=None, method="GET", target=f"/{i}",
        request_headers=(("Host", "a.test"),), http_version="1.1", status=200, reason="OK",
        headers=((b"Content-Type", b"text/html"),), payload=os.urandom(size))

async def main(out, mode):
    archive = WarcArchive(Path(out), writer="dies", user_agent="T/1")
    await archive.__aenter__()
    for batch in range(50):
        for i in range(3):
            archive.add_exchange(ex(batch * 3 + i, 1500))
        try:
            await archive.flush()
        except OSError as exc:
            print("failed", batch, exc.errno, flush=True)
            try:
                await archive.flush()
            except OSError:
                print("still failing", flush=True)
            try:
                await archive.aclose()  # closes the file, and says again that a batch was lost
            except OSError:
                print("closed", flush=True)
            return
        print("flushed", batch, flush=True)
        if mode == "kill" and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[2] == "fsize":
    import resource
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000))
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _run_writer(out: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", _WRITER, str(out), mode]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_writer_killed_mid_file_is_cut_back_to_its_last_complete_record(tmp_path: Path) -> None:
    proc = _run_writer(tmp_path, "kill")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (path,) = (tmp_path / "warc").glob("*.warc.gz")
    assert marker_path(path).exists()  # the writer died holding its file
    whole = path.stat().st_size
    assert complete_end(path) == whole and warcio_check([path]).returncode == 0
    # A kill inside a write leaves a torn member: append one (half of a real member) to the dead file.
    torn = zlib.compress(b"WARC/1.0\r\nWARC-Type: response\r\n" + os.urandom(4000), 6, wbits=31)
    with open(path, "ab") as fh:
        fh.write(torn[: len(torn) // 2])
    assert warcio_check([path]).returncode != 0
    assert repair_orphans(tmp_path / "warc") == [(path.name, len(torn) // 2)]
    assert path.stat().st_size == whole and not marker_path(path).exists()
    check = warcio_check([path])
    assert check.returncode == 0, check.stdout
    assert sum(1 for r in read_warc(path) if r["type"] == "response") == 9  # three whole batches of three
    assert repair_orphans(tmp_path / "warc") == []  # nothing left to repair


async def test_a_live_writer_s_file_is_left_alone(tmp_path: Path) -> None:
    async with WarcArchive(tmp_path, writer="alive", user_agent="T/1") as archive:
        archive.add_exchange(exchange("http://a.test/", b"x" * 10))
        await archive.flush()
        (path,) = (tmp_path / "warc").glob("*.warc.gz")
        size = path.stat().st_size
        with open(path, "ab") as fh:
            fh.write(b"\x1f\x8b\x08")  # what a reader may see while a batch is being written
        # Another process starting in the same folder must not touch a file whose writer holds its lock.
        code = "import sys; from pathlib import Path; from crawler.output.warc import repair_orphans;"
        code += "print(repair_orphans(Path(sys.argv[1])))"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        other = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", code, str(path.parent)], env=env, capture_output=True, text=True
        )
        assert other.stdout.strip() == "[]", other.stderr
        assert path.stat().st_size == size + 3
        os.truncate(path, size)


def test_a_failed_write_leaves_only_whole_records(tmp_path: Path) -> None:
    proc = _run_writer(tmp_path, "fsize")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-3].startswith("failed") and lines[-2:] == ["still failing", "closed"], lines  # no going on
    (path,) = (tmp_path / "warc").glob("*.warc.gz")
    assert not marker_path(path).exists() and 0 < path.stat().st_size <= 30000
    check = warcio_check([path])
    assert check.returncode == 0, check.stdout
    batches = sum(1 for line in lines if line.startswith("flushed"))
    assert sum(1 for r in read_warc(path) if r["type"] == "response") == 3 * batches


def test_complete_end_finds_member_boundaries(tmp_path: Path) -> None:
    members = [zlib.compress(os.urandom(n), 6, wbits=31) for n in (10, 70000, 5)]
    path = tmp_path / "f.gz"
    path.write_bytes(b"".join(members))
    assert complete_end(path, chunk=1000) == sum(map(len, members))
    path.write_bytes(b"".join(members) + members[0][:-1])
    assert complete_end(path, chunk=1000) == sum(map(len, members))
    path.write_bytes(members[0] + b"garbage" + members[1])
    assert complete_end(path) == len(members[0])
    path.write_bytes(b"")
    assert complete_end(path) == 0


async def test_gzip_level_is_used(tmp_path: Path) -> None:
    text = Path(__file__).read_bytes() * 3
    sizes = {}
    for level in (1, 9):
        async with WarcArchive(tmp_path / str(level), writer="w", user_agent="T/1", gzip_level=level) as archive:
            archive.add_exchange(exchange("http://a.test/", text))
            await archive.flush()
        (path,) = (tmp_path / str(level) / "warc").glob("*.warc.gz")
        assert read_warc(path)[1]["payload"] == text
        sizes[level] = path.stat().st_size
    assert sizes[9] < sizes[1] < len(text) / 2
