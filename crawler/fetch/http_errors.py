"""Translation of aiohttp and OS exceptions into the crawler's typed `CrawlError`s."""

from __future__ import annotations

import ssl

import aiohttp
from aiohttp.http_exceptions import ContentLengthError, TransferEncodingError

from crawler.core.errors import CrawlError, ErrorType
from crawler.fetch.net import AddressRefusedError

__all__ = ["map_error"]


def _is_tls_error(exc: BaseException) -> bool:
    return isinstance(
        exc,
        ssl.SSLError | ssl.CertificateError | aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch,
    )


_BROKEN_FRAMING = (TransferEncodingError, ContentLengthError)


def _caused_by(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:  # bounded: chains are short, and may loop
        if isinstance(cur, types):
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False


def map_error(exc: Exception, url: str, phase: str, deadline_hit: bool) -> CrawlError:
    """Translate an aiohttp/OS exception raised during `phase` ("connect" or "body") into a CrawlError."""
    if deadline_hit:
        return CrawlError(ErrorType.TIMEOUT, f"{url}: whole-fetch deadline exceeded during {phase}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = exc.os_error
        if isinstance(os_err, AddressRefusedError):
            return os_err.error
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return CrawlError(ErrorType.DNS, f"{url}: DNS lookup failed: {os_err}")
        if _is_tls_error(exc) or _is_tls_error(os_err):
            return CrawlError(ErrorType.TLS, f"{url}: TLS error: {os_err}")
        if isinstance(os_err, TimeoutError):
            return CrawlError(ErrorType.TIMEOUT, f"{url}: connect timed out")
        return CrawlError(ErrorType.CONNECTION, f"{url}: cannot connect: {os_err}")
    if isinstance(exc, TimeoutError):
        what = "connect" if phase == "connect" and isinstance(exc, aiohttp.ConnectionTimeoutError) else "read"
        return CrawlError(ErrorType.TIMEOUT, f"{url}: {what} timed out during {phase}")
    if _is_tls_error(exc):
        return CrawlError(ErrorType.TLS, f"{url}: TLS error: {exc}")
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError | ValueError):
        return CrawlError(ErrorType.INVALID_URL, f"{url}: invalid URL: {exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, TimeoutError):
            return CrawlError(ErrorType.TIMEOUT, f"{url}: read timed out during body")
        return CrawlError(ErrorType.TRUNCATED, f"{url}: body incomplete: {exc}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionError | aiohttp.ClientOSError):
        if phase == "body":
            return CrawlError(ErrorType.TRUNCATED, f"{url}: connection lost mid-body: {exc!r}")
        return CrawlError(ErrorType.CONNECTION, f"{url}: connection failed: {exc!r}")
    if isinstance(exc, aiohttp.ClientResponseError):
        # Raised for parse errors; a broken chunked framing counts as a cut body, the rest as garbage.
        # The C parser (llhttp) reports chunk errors as a plain BadHttpMessage, hence the text check.
        if _caused_by(exc, _BROKEN_FRAMING) or "chunk" in str(exc.message).lower():
            return CrawlError(ErrorType.TRUNCATED, f"{url}: broken body framing: {exc.message}")
        return CrawlError(ErrorType.CONNECTION, f"{url}: malformed response: {exc.message}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return CrawlError(ErrorType.CONNECTION, f"{url}: {type(exc).__name__}: {exc}")
    return CrawlError(ErrorType.CONNECTION, f"{url}: unexpected {type(exc).__name__}: {exc}")
