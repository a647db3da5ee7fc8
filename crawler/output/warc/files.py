"""The .warc.gz files of one writer: names, rotation by size, and repair after a crash.

Every record is one gzip member, and members reach a file only in whole batches, each with one
`os.write` loop. While a file is being written a hidden marker `.{name}.open` exists, locked (flock)
by its writer; a clean close removes it. A marker nobody holds was left by a writer that died
(`kill -9`, a full disk): its file may end in a torn member, so it is cut back to the end of its last
complete one, which standard tools then read to the end.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("crawler.output.warc")

WARC_DIR = "warc"  # the subfolder of the output folder the files go to
SUFFIX = ".warc.gz"
_MARKER = re.compile(r"^\.(.+\.warc\.gz)\.open$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]+")


def marker_path(path: Path) -> Path:
    """The hidden marker that exists (locked by the writer) while `path` is written."""
    return path.with_name(f".{path.name}.open")


def warc_name(prefix: str, when: float, serial: int, writer: str) -> str:
    """`{prefix}-{YYYYmmddHHMMSSfff}-{serial:05d}-{writer}.warc.gz`, the naming Heritrix made common."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(when)) + f"{int(when * 1000) % 1000:03d}"
    return f"{prefix}-{stamp}-{serial:05d}-{_UNSAFE.sub('_', writer) or 'writer'}{SUFFIX}"


def next_serial(folder: Path, prefix: str) -> int:
    """One more than the highest serial of `prefix` files in `folder`, so numbering goes on across runs."""
    pattern = re.compile(rf"^{re.escape(prefix)}-\d{{17}}-(\d{{5,}})-.*\.warc\.gz$")
    serials = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return max(serials, default=-1) + 1


def complete_end(path: Path, chunk: int = 1 << 20) -> int:
    """The offset just past the last complete gzip member of `path` (0 when none is complete).

    Costs one decompression of the file, run only for a file whose writer died.
    """
    good = 0
    pos = 0
    d = zlib.decompressobj(31)
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            while data:
                try:
                    d.decompress(data, 1 << 22)  # the output is not wanted: bounded, then dropped
                except zlib.error:
                    return good  # not a gzip member here: the rest is a torn write
                if d.eof:
                    rest = d.unused_data
                    pos += len(data) - len(rest)
                    good = pos
                    data = rest
                    d = zlib.decompressobj(31)
                else:
                    tail = d.unconsumed_tail
                    pos += len(data) - len(tail)
                    data = tail
    return good


def repair_orphans(folder: Path) -> list[tuple[str, int]]:
    """Cut every file whose writer died back to its last complete member; returns (name, bytes cut) per file."""
    repaired: list[tuple[str, int]] = []
    if not folder.is_dir():
        return repaired
    for marker in sorted(folder.iterdir()):
        m = _MARKER.match(marker.name)
        if m is None:
            continue
        try:
            fd = os.open(marker, os.O_RDWR)
        except FileNotFoundError:
            continue  # closed cleanly (or repaired by another process) since the listing
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            if os.fstat(fd).st_nlink == 0:
                continue  # removed while we waited: nothing left to repair
            path = folder / m.group(1)
            cut = 0
            if path.exists():
                size = path.stat().st_size
                end = complete_end(path)
                if end == 0:
                    path.unlink()  # not even its warcinfo record was complete
                    cut = size
                elif end < size:
                    os.truncate(path, end)
                    cut = size - end
            repaired.append((path.name, cut))
            marker.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return repaired


def remove_all(folder: Path) -> int:
    """Delete the WARC files (and markers) in `folder`, for a crawl that starts over; returns how many files."""
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.name.endswith(SUFFIX) or _MARKER.match(path.name):
            path.unlink(missing_ok=True)
            removed += path.name.endswith(SUFFIX)
    return removed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class WarcFiles:
    """Appends units of gzip members to `{folder}/{prefix}-…-{writer}.warc.gz`, starting a new file when full.

    `header(name)` makes the member that begins each file (its warcinfo record). Not thread-safe: the
    archive calls it from one thread at a time.
    """

    def __init__(
        self, folder: Path, *, prefix: str, writer: str, max_bytes: int, header: Callable[[str], bytes]
    ) -> None:
        self.folder = folder
        self.prefix = prefix
        self.writer = writer
        self.max_bytes = max_bytes
        self.header = header
        self._serial: int | None = None
        self._fd: int | None = None
        self._marker_fd: int | None = None
        self._path: Path | None = None
        self._size = 0  # bytes in the file, pending ones included
        self._written = 0  # bytes known to be in the file: a failed write is cut back to here
        self._records = 0  # units in the current file (its warcinfo excluded)
        self._pending: list[bytes] = []
        self.files: list[str] = []  # names of every file this writer started

    def append(self, units: list[list[bytes]]) -> list[tuple[str, int]]:
        """Append each unit's members, a unit never split across files; returns (file name, offset) per unit."""
        placed: list[tuple[str, int]] = []
        for members in units:
            size = sum(len(m) for m in members)
            if self._fd is not None and self._records and self._size + size > self.max_bytes:
                self._close()
            if self._fd is None:
                self._open()
            assert self._path is not None
            placed.append((self._path.name, self._size))
            self._pending.extend(members)
            self._size += size
            self._records += 1
        self._flush()
        return placed

    def close(self) -> None:
        """Write what is pending and close the current file (its marker goes: it is complete)."""
        if self._fd is not None:
            self._close()

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._serial is None:
            self._serial = next_serial(self.folder, self.prefix)
        while True:
            path = self.folder / warc_name(self.prefix, time.time(), self._serial, self.writer)
            self._serial += 1
            marker = marker_path(path)
            try:
                # The marker first: a crash between the two leaves a marker without a file, never a
                # file that might be torn without one.
                mfd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            fcntl.flock(mfd, fcntl.LOCK_EX)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except BaseException:
                marker.unlink(missing_ok=True)
                os.close(mfd)
                raise
            break
        self._fd, self._marker_fd, self._path = fd, mfd, path
        self._size = self._written = self._records = 0
        self.files.append(path.name)
        first = self.header(path.name)
        self._pending.append(first)
        self._size += len(first)

    def _flush(self) -> None:
        if not self._pending or self._fd is None:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        try:
            _write_all(self._fd, data)
        except OSError:
            self._abandon()
            raise
        self._written = self._size

    def _abandon(self) -> None:
        """After a failed write: cut the file back to its last whole batch, or leave it for the next repair."""
        assert self._fd is not None and self._path is not None
        try:
            os.ftruncate(self._fd, self._written)
            whole = True
        except OSError:
            whole = False  # its end is unknown: the marker stays, so the next start repairs it
        os.close(self._fd)
        self._fd = None
        if whole:
            if not self._written:
                self._path.unlink(missing_ok=True)
            marker_path(self._path).unlink(missing_ok=True)
        self._release_marker()

    def _close(self) -> None:
        try:
            self._flush()
            if self._fd is not None:
                os.fsync(self._fd)
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                if self._path is not None:
                    marker_path(self._path).unlink(missing_ok=True)  # every batch landed whole
            self._release_marker()

    def _release_marker(self) -> None:
        if self._marker_fd is not None:
            os.close(self._marker_fd)
            self._marker_fd = None
