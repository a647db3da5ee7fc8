"""WARC records built with warcio, each compressed into its own gzip member.

HTTP heads are written as they crossed the wire (field order, case, repeats and bytes kept), which
warcio would otherwise re-serialize; the one change is `Transfer-Encoding`, renamed
`X-Crawler-Transfer-Encoding` (as Common Crawl does) because the payload is stored with the chunked
framing already removed. Content coding is kept: a gzip page is archived gzipped.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
import zlib
from io import BytesIO
from typing import Any

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from crawler.core.exchange import Exchange

_TRANSFER_ENCODING = b"transfer-encoding"
_RENAMED_TE = b"X-Crawler-Transfer-Encoding"


class _WireHead(StatusAndHeaders):
    """An HTTP head kept byte for byte (warcio's own would re-serialize and %-encode non-ASCII values)."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw.split(b"\r\n", 1)[0].decode("latin-1"), [])
        self.headers_buff = raw

    def compute_headers_buffer(self, header_filter: Any = None) -> None:
        """Keep the wire bytes."""


def warc_date(ts: float) -> str:
    """WARC-Date (WARC/1.0: seconds, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def new_id() -> str:
    """A fresh WARC-Record-ID."""
    return f"<urn:uuid:{uuid.uuid4()}>"


def payload_digest(payload: bytes) -> str:
    """`sha1:BASE32`, the form WARC-Payload-Digest and the revisit map use."""
    return _digest(hashlib.sha1(payload))


def _digest(h: hashlib._Hash) -> str:
    return "sha1:" + base64.b32encode(h.digest()).decode("ascii")


def _block_digest(head: bytes, payload: bytes = b"") -> str:
    # Given to warcio with the payload digest, so it does not read the payload twice more to compute them.
    h = hashlib.sha1(head)
    h.update(payload)
    return _digest(h)


_EMPTY_DIGEST = payload_digest(b"")


def response_head(ex: Exchange) -> bytes:
    """Status line and header fields as received, Transfer-Encoding renamed (the payload is de-chunked)."""
    lines = [f"HTTP/{ex.http_version} {ex.status} {ex.reason}".rstrip().encode("utf-8", "replace")]
    for name, value in ex.headers:
        if name.lower() == _TRANSFER_ENCODING:
            name = _RENAMED_TE
        lines.append(name + b": " + value)
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def request_head(ex: Exchange) -> bytes:
    """Request line and header fields as the client wrote them."""
    lines = [f"{ex.method} {ex.target} HTTP/1.1", *(f"{k}: {v}" for k, v in ex.request_headers), "\r\n"]
    return "\r\n".join(lines).encode("utf-8", "replace")


class RecordMaker:
    """Serializes records with warcio into one gzip member each. One per writing thread."""

    def __init__(self, level: int) -> None:
        self.level = level
        self._out = BytesIO()
        self._writer = WARCWriter(self._out, gzip=False)  # WARC/1.0: what most tools read

    def _member(self, record: Any) -> bytes:
        out = self._out
        out.seek(0)
        out.truncate()
        self._writer.write_record(record)
        return zlib.compress(out.getvalue(), self.level, wbits=31)

    def warcinfo(self, filename: str, info: dict[str, str]) -> bytes:
        """The record that begins each file: who wrote it and how."""
        return self._member(self._writer.create_warcinfo_record(filename, info))

    def response(self, ex: Exchange, rec_id: str, digest: str) -> bytes:
        """A `response` record: the HTTP head and the payload as received."""
        head = response_head(ex)
        fields = self._fields("response", ex, rec_id)
        fields["WARC-Payload-Digest"] = digest
        fields["WARC-Block-Digest"] = _block_digest(head, ex.payload)
        if ex.cut:
            fields["WARC-Truncated"] = "length"
        record = self._writer.create_warc_record(
            ex.url,
            "response",
            payload=BytesIO(ex.payload),
            length=len(ex.payload),
            warc_headers_dict=fields,
            http_headers=_WireHead(head),
        )
        return self._member(record)

    def revisit(self, ex: Exchange, rec_id: str, digest: str, original: tuple[str, str, str]) -> bytes:
        """A `revisit` (identical-payload-digest): the HTTP head only, pointing at the record holding the payload."""
        ref_id, ref_uri, ref_date = original
        head = response_head(ex)
        fields = self._fields("revisit", ex, rec_id)
        fields["WARC-Refers-To"] = ref_id
        fields["WARC-Block-Digest"] = _block_digest(head)
        record = self._writer.create_revisit_record(
            ex.url, digest, ref_uri, ref_date, http_headers=_WireHead(head), warc_headers_dict=fields
        )
        return self._member(record)

    def request(self, ex: Exchange, rec_id: str, concurrent_to: str) -> bytes:
        """A `request` record, linked to its response (or revisit) by WARC-Concurrent-To."""
        head = request_head(ex)
        fields = self._fields("request", ex, rec_id)
        fields["WARC-Concurrent-To"] = concurrent_to
        fields["WARC-Payload-Digest"] = _EMPTY_DIGEST
        fields["WARC-Block-Digest"] = _block_digest(head)
        record = self._writer.create_warc_record(
            ex.url,
            "request",
            payload=BytesIO(b""),
            length=0,
            warc_headers_dict=fields,
            http_headers=_WireHead(head),
        )
        return self._member(record)

    def conversion(self, url: str, dom: bytes, rec_id: str, refers_to: str | None, when: float) -> bytes:
        """A `conversion` record: the DOM a browser rendered from the response `refers_to`."""
        fields = {"WARC-Type": "conversion", "WARC-Target-URI": url, "WARC-Date": warc_date(when)}
        fields["WARC-Record-ID"] = rec_id
        if refers_to is not None:
            fields["WARC-Refers-To"] = refers_to
        record = self._writer.create_warc_record(
            url,
            "conversion",
            payload=BytesIO(dom),
            length=len(dom),
            warc_content_type="text/html; charset=utf-8",
            warc_headers_dict=fields,
        )
        return self._member(record)

    @staticmethod
    def _fields(kind: str, ex: Exchange, rec_id: str) -> dict[str, str]:
        # WARC-Target-URI here only for its place among the fields (warcio would append it last).
        fields = {"WARC-Type": kind, "WARC-Target-URI": ex.url, "WARC-Date": warc_date(ex.started)}
        fields["WARC-Record-ID"] = rec_id
        if ex.ip:
            fields["WARC-IP-Address"] = ex.ip
        return fields
