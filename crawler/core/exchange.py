"""One HTTP request and response as they crossed the wire: what the fetch layer hands the archive (WARC)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Exchange:
    """A request as sent and its response as received, payload still content-encoded.

    Built by the HTTP fetcher only when an archive listens, so a crawl without WARC output keeps no
    second copy of any body. `archived` is filled in by the archive once the response is written.
    """

    url: str
    started: float  # wall clock when the request went out
    ip: str | None
    method: str
    target: str  # the request-target as sent: path and query
    request_headers: tuple[tuple[str, str], ...]
    http_version: str  # of the response, e.g. "1.1"
    status: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...]  # response fields as received: order, case and repeats kept
    payload: bytes  # the body before content decoding (any transfer coding removed)
    cut: bool = False  # the payload is incomplete: it reached the body cap
    archived: tuple[str, str, int, int] | None = None  # (record id, file, offset, length) once written
