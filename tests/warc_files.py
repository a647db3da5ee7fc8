"""Reading WARC files in tests: warcio's ArchiveIterator and its `warcio check` CLI, nothing of ours."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from warcio.archiveiterator import ArchiveIterator


def warcio_check(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    """`warcio check -v` (the installed package's CLI) on `paths`: exit 0 when every digest verifies."""
    cli = Path(sys.executable).with_name("warcio")
    assert cli.exists(), f"warcio CLI not found beside {sys.executable}"
    assert paths, "no WARC files to check"
    return subprocess.run([str(cli), "check", "-v", *map(str, paths)], capture_output=True, text=True, check=False)


def read_warc(path: Path) -> list[dict[str, Any]]:
    """Every record of one file: type, WARC fields, HTTP head, raw payload (content coding kept), offset."""
    out = []
    with open(path, "rb") as fh:
        it = ArchiveIterator(fh)
        for rec in it:
            out.append(
                {
                    "type": rec.rec_type,
                    "warc": dict(rec.rec_headers.headers),
                    "http": rec.http_headers,
                    "payload": rec.raw_stream.read(),
                    "offset": it.get_record_offset(),
                    "file": path.name,
                }
            )
    return out


def record_at(path: Path, offset: int) -> dict[str, Any]:
    """The one record starting at `offset` (what a `pages.jsonl` pointer names)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        rec = next(iter(ArchiveIterator(fh)))
        return {"type": rec.rec_type, "warc": dict(rec.rec_headers.headers), "payload": rec.raw_stream.read()}
