"""Cache validators: which are kept from a response, what a recrawl sends, and the test web's 304 rule."""

from __future__ import annotations

import pytest

from crawler.core.urlitem import UrlItem
from crawler.core.validators import MAX_VALIDATOR_CHARS, Validators
from crawler.fetch.http import Response
from crawler.fetch.pages import PageFetch
from crawler.worker.lease import page_validators
from frontier.store import Lease
from tests.testweb import not_modified

LM = "Wed, 21 Oct 2015 07:28:00 GMT"


def test_validators_from_response_headers() -> None:
    assert Validators.from_headers({}) is None
    assert Validators.from_headers({"etag": ' "x" '}) == Validators(etag='"x"')
    assert Validators.from_headers({"last-modified": LM}) == Validators(last_modified=LM)
    assert Validators.from_headers({"etag": 'W/"x"', "last-modified": LM}) == Validators('W/"x"', LM)
    assert Validators('W/"x"', LM).headers() == {"If-None-Match": 'W/"x"', "If-Modified-Since": LM}
    assert Validators(etag='"x"').headers() == {"If-None-Match": '"x"'}


@pytest.mark.parametrize(
    "bad",
    ["", "   ", '"' + "x" * MAX_VALIDATOR_CHARS + '"', '"caf\u00e9"', '"a\x00b"', '"a\tb"'],
)
def test_hostile_or_useless_validators_are_not_kept(bad: str) -> None:
    """Overlong, non-ASCII or control-character values cost storage and could not be sent back: dropped."""
    assert Validators.from_headers({"etag": bad}) is None
    assert Validators.from_headers({"etag": bad, "last-modified": LM}) == Validators(last_modified=LM)


def _resp(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response("http://a.test/", status, headers or {}, b"", None, None, None, None, 1.0, 0, None)


def _lease(validators: Validators | None = None) -> Lease:
    return Lease(UrlItem("http://a.test/", "a.test"), 1, 99.0, validators)


def test_page_validators_kept_for_a_recrawl() -> None:
    sent = Validators('"v1"', LM)
    ok = PageFetch("http://a.test/", "http://a.test/", response=_resp(200, {"etag": '"v2"'}))
    assert page_validators(_lease(), ok) == Validators(etag='"v2"')
    assert page_validators(_lease(), PageFetch("u", "u", response=_resp(200))) is None
    # A 304 keeps what we sent, updated by whatever the 304 itself carries.
    same = PageFetch("u", "u", response=_resp(304), conditional=True)
    assert page_validators(_lease(sent), same) == sent
    newer = PageFetch("u", "u", response=_resp(304, {"etag": '"v1b"'}), conditional=True)
    assert page_validators(_lease(sent), newer) == Validators('"v1b"', LM)
    # Nothing for a 304 nobody asked for, an error, a redirected fetch or a failed fetch.
    assert page_validators(_lease(), PageFetch("u", "u", response=_resp(304))) is None
    assert page_validators(_lease(), PageFetch("u", "u", response=_resp(404, {"etag": '"e"'}))) is None
    hops = [{"url": "http://a.test/", "status": 301, "location": "http://a.test/b"}]
    moved = PageFetch("u", "b", response=_resp(200, {"etag": '"e"'}), hops=hops)
    assert page_validators(_lease(sent), moved) is None
    assert page_validators(_lease(sent), PageFetch("u", "u")) is None


@pytest.mark.parametrize(
    ("request_headers", "expected"),
    [
        ({"If-None-Match": '"v1"'}, True),
        ({"If-None-Match": 'W/"v1"'}, True),  # weak comparison for GET
        ({"If-None-Match": '"v0", "v1"'}, True),
        ({"If-None-Match": "v1"}, False),  # an unquoted v1 is not the tag "v1"
        ({"If-None-Match": "*"}, True),
        ({"If-None-Match": '"v2"', "If-Modified-Since": LM}, False),  # If-None-Match decides when sent
        ({"If-Modified-Since": LM}, True),
        ({"If-Modified-Since": "Tue, 20 Oct 2015 07:28:00 GMT"}, False),
        ({"If-Modified-Since": "not a date"}, False),
        ({}, False),
    ],
)
def test_test_web_answers_304_like_a_server(request_headers: dict[str, str], expected: bool) -> None:
    assert not_modified(request_headers, {"ETag": '"v1"', "Last-Modified": LM}) is expected


def test_test_web_without_validators_never_answers_304() -> None:
    assert not not_modified({"If-None-Match": '"v1"'}, {"Last-Modified": LM})
    assert not not_modified({"If-Modified-Since": LM}, {"ETag": '"v1"'})
