"""Typed crawl errors: every failed fetch ends as one of these, carried into the record's `error`."""

from __future__ import annotations

from enum import StrEnum


class ErrorType(StrEnum):
    """The closed set of `error.type` values a record can carry."""

    TIMEOUT = "timeout"
    CONNECTION = "connection_error"
    DNS = "dns_error"
    TLS = "tls_error"
    TOO_LARGE = "too_large"
    TRUNCATED = "truncated_body"
    BAD_ENCODING = "bad_content_encoding"
    HTTP_ERROR = "http_error"
    ROBOTS_DISALLOWED = "robots_disallowed"
    PRIVATE_ADDRESS = "private_address"
    BAD_PORT = "bad_port"
    REDIRECT_LOOP = "redirect_loop"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    REDIRECT_REFUSED = "redirect_refused"
    INVALID_URL = "invalid_url"
    PARSE_ERROR = "parse_error"
    BROWSER_ERROR = "browser_error"
    SITEMAP_ERROR = "sitemap_error"  # a sitemap that is malformed, not a sitemap, or over its URL cap


#: Errors worth another attempt later (network trouble, server overload).
RETRYABLE: frozenset[ErrorType] = frozenset(
    {ErrorType.TIMEOUT, ErrorType.CONNECTION, ErrorType.DNS, ErrorType.TRUNCATED, ErrorType.BROWSER_ERROR}
)


class CrawlError(Exception):
    """An expected failure with a type from `ErrorType`; the message is for humans."""

    def __init__(self, type_: ErrorType, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The record's `error` value."""
        return {"type": self.type.value, "message": self.message}

    def __repr__(self) -> str:
        return f"CrawlError({self.type.value!r}, {self.message!r})"


class ConfigError(Exception):
    """A configuration, flag or seed-file problem; the CLI prints it and exits 2."""


class LeasesLost(Exception):
    """This worker's leases may belong to another worker now (its heartbeat could have expired): it must
    start no request and write no record for them."""
