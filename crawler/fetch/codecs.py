"""Bounded content decoders: gzip, deflate and brotli bodies decoded chunk by chunk, never far past a cap.

A decompression bomb expands a few KiB into gigabytes; each `feed` is told how much room is left and
stops producing soon after it, so memory stays bounded by the body cap whatever the ratio.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli

from crawler.core.errors import CrawlError, ErrorType

__all__ = ["ACCEPT_ENCODING", "BROTLI_BOUNDED", "DECODE_ERRORS", "Decoder", "make_decoder"]

# brotli < 1.2 cannot bound output per call, so a tiny input could expand without limit:
# without that API we neither advertise nor accept br.
BROTLI_BOUNDED = hasattr(brotli.Decompressor, "can_accept_more_data")
ACCEPT_ENCODING = "gzip, deflate, br" if BROTLI_BOUNDED else "gzip, deflate"
#: What a decoder's library raises on a corrupt stream (the fetcher reports it as BAD_ENCODING).
DECODE_ERRORS: tuple[type[Exception], ...] = (zlib.error, brotli.error)


class Decoder(Protocol):
    """Decodes one content-coding incrementally, producing at most a given number of bytes per call."""

    def feed(self, data: bytes, out: list[bytes], room: int) -> int: ...

    def finish(self) -> None: ...


class _ZlibDecoder:
    """gzip (multi-member) or deflate (zlib-wrapped or raw, sniffed from the first two bytes)."""

    __slots__ = ("_d", "_done", "_gzip", "_head")

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._d = zlib.decompressobj(31) if gzip else None
        self._head = b""
        self._done = False

    def feed(self, data: bytes, out: list[bytes], room: int) -> int:
        """Decode `data` into `out`, producing at most `room + 1` bytes; returns bytes produced."""
        if self._done:
            return 0
        d = self._d
        if d is None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return 0
            b0, b1 = data[0], data[1]
            # RFC 1950 header: CM=8, CINFO<=7, FCHECK makes the 16-bit value a multiple of 31.
            wrapped = (b0 & 0x0F) == 8 and (b0 >> 4) <= 7 and ((b0 << 8) | b1) % 31 == 0
            d = self._d = zlib.decompressobj(15 if wrapped else -15)
        produced = 0
        limit = room + 1
        while True:
            chunk = d.decompress(data, limit - produced)
            if chunk:
                out.append(chunk)
                produced += len(chunk)
                if produced > room:
                    return produced
            if d.unconsumed_tail:
                data = d.unconsumed_tail
                continue
            if d.eof:
                rest = d.unused_data
                if self._gzip and rest[:1] == b"\x1f":
                    d = self._d = zlib.decompressobj(31)
                    data = rest
                    continue
                # Trailing garbage after the stream is ignored, as browsers do.
                self._done = True
            return produced

    def finish(self) -> None:
        """Raise TRUNCATED unless the compressed stream ended properly."""
        if not self._done and (self._d is None or not self._d.eof):
            raise CrawlError(ErrorType.TRUNCATED, "compressed body ended mid-stream")


class _BrotliDecoder:
    __slots__ = ("_d", "_done")

    def __init__(self) -> None:
        self._d = brotli.Decompressor()
        self._done = False

    def feed(self, data: bytes, out: list[bytes], room: int) -> int:
        """Decode `data` into `out`, stopping soon after `room` bytes; returns bytes produced."""
        if self._done:
            return 0
        d = self._d
        produced = 0
        limit = room + 1
        pending: bytes | None = data
        while True:
            if d.can_accept_more_data():
                if pending is None:
                    break
                chunk = d.process(pending, output_buffer_limit=limit - produced)
                pending = None
            else:
                # Output was capped last call: drain with empty input, as the API requires.
                chunk = d.process(b"", output_buffer_limit=limit - produced)
            if chunk:
                out.append(chunk)
                produced += len(chunk)
                if produced > room:
                    return produced
            if d.is_finished():
                self._done = True
                break
        return produced

    def finish(self) -> None:
        """Raise TRUNCATED unless the brotli stream ended properly."""
        if not self._done and not self._d.is_finished():
            raise CrawlError(ErrorType.TRUNCATED, "brotli body ended mid-stream")


def make_decoder(encoding: str) -> Decoder:
    """A bounded decoder for a Content-Encoding value; raises BAD_ENCODING for unsupported or stacked ones."""
    enc = encoding.strip().lower()
    if enc in ("gzip", "x-gzip"):
        return _ZlibDecoder(gzip=True)
    if enc == "deflate":
        return _ZlibDecoder(gzip=False)
    if enc == "br" and BROTLI_BOUNDED:
        return _BrotliDecoder()
    if "," in enc:
        raise CrawlError(ErrorType.BAD_ENCODING, f"stacked content-encoding {encoding!r} refused")
    raise CrawlError(ErrorType.BAD_ENCODING, f"unsupported content-encoding {encoding!r}")
