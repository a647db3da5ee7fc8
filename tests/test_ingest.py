"""Ingest: normalized duplicates are rejected by the Bloom/recent layer and by the store's seen-set."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.core.config import Config, config_from_dict
from crawler.core.errors import ConfigError
from crawler.core.stats import Stats
from crawler.ingest.admit import Ingest
from crawler.ingest.scope import Scope
from frontier.sqlite.store import SqliteStore
from frontier.store import HostLimits

VARIANTS = [
    "http://A.test/x/../page?id=1#top",
    "HTTP://a.test:80/page?id=1",
    "http://a.test/%70age?id=1&utm_source=news",
    "http://a.test/page?id=1&jsessionid=abc",
    "/page?id=1",
]


def _ingest(clock: list[float]) -> tuple[Ingest, Stats]:
    cfg = Config()
    stats = Stats()
    scope = Scope(["a.test"], max_depth=None, max_url_length=2048, max_repeated_segments=3)
    return Ingest(cfg, scope, stats, clock=lambda: clock[0]), stats


def test_normalized_variants_collapse_to_one_url() -> None:
    ingest, stats = _ingest([1000.0])
    urls = ingest.normalize_links(VARIANTS, "http://a.test/dir/")
    assert urls == ["http://a.test/page?id=1"]
    items = ingest.admit(urls + urls, depth=1)
    assert [i.url for i in items] == ["http://a.test/page?id=1"]
    assert stats.c["duplicate_urls"] == 1


def test_page_links_cap_counts_distinct_normalized_urls() -> None:
    """The cap applies after normalization and dedup: variants and fragments of one URL take one place."""
    ingest, stats = _ingest([1000.0])
    hrefs = [*VARIANTS * 100, *(f"/p/{i}#f{j}" for i in range(6) for j in range(50)), "javascript:void(0)"]
    links, cut = ingest.page_links(hrefs, "http://a.test/dir/", 3)
    assert links == ["http://a.test/page?id=1", "http://a.test/p/0", "http://a.test/p/1"]
    assert cut == 4  # /p/2 .. /p/5, each counted once however often it was linked
    assert stats.skipped["invalid_url"] == 1


def test_out_of_scope_and_depth_are_counted_by_reason() -> None:
    ingest, stats = _ingest([1000.0])
    assert ingest.admit(["http://b.test/", "http://sub.a.test/ok"], depth=1)[0].url == "http://sub.a.test/ok"
    assert ingest.admit(["http://a.test/deep"], depth=11) == []
    assert ingest.admit(["http://a.test/" + "x" * 3000], depth=1) == []
    assert ingest.admit(["http://a.test/a/b/a/b/a/b/a/b/"], depth=1) == []
    assert dict(stats.skipped) == {
        "out_of_scope": 1,
        "max_depth": 1,
        "url_too_long": 1,
        "repeated_segments": 1,
    }


async def test_store_seen_set_rejects_what_a_fresh_process_offers_again(tmp_path: Path) -> None:
    """A second process has an empty Bloom filter: the store's exact seen-set still rejects the URL."""
    clock = [1000.0]
    async with await SqliteStore.open(tmp_path, host_limits=lambda h: HostLimits(), seen_ttl=50) as store:
        first, _ = _ingest(clock)
        added = await store.add(first.admit(first.normalize_links(VARIANTS[:1], "http://a.test/"), 1), clock[0])
        assert added.queued == 1
        second, _ = _ingest(clock)  # new process: nothing in its Bloom filter or recent cache
        again = second.admit(second.normalize_links(VARIANTS[1:2], "http://a.test/"), 1)
        assert len(again) == 1  # the in-process layers cannot know...
        result = await store.add(again, clock[0])
        assert (result.queued, result.duplicates) == (0, 1)  # ...the store's seen-set does
        clock[0] += 100  # past the seen TTL: the URL may be crawled again
        third, _ = _ingest(clock)
        result = await store.add(third.admit(["http://a.test/page?id=1"], 1), clock[0])
        assert result.queued == 1


def test_per_domain_trap_limits_apply_in_ingest() -> None:
    from crawler.core.config import config_from_dict

    cfg = config_from_dict({"domains": {"strict.test": {"max_url_length": 40, "max_repeated_segments": 1}}})
    stats = Stats()
    scope = Scope(["strict.test", "lax.test"], max_depth=None, max_url_length=2048, max_repeated_segments=3)
    ingest = Ingest(cfg, scope, stats)
    long_path = "/" + "y" * 40
    assert ingest.admit([f"http://strict.test{long_path}", "http://strict.test/a/x/a"], 1) == []
    assert len(ingest.admit([f"http://lax.test{long_path}", "http://lax.test/a/x/a"], 1)) == 2
    assert dict(stats.skipped) == {"url_too_long": 1, "repeated_segments": 1}


def test_links_to_blocked_ports_are_refused_and_counted() -> None:
    """Ports browsers refuse (25, 6000, …) are dropped as `bad_port` unless a domain entry allows them."""
    cfg = config_from_dict({"domains": {"mail.a.test": {"allow_ports": [25]}}})
    stats = Stats()
    scope = Scope(["a.test"], max_depth=None, max_url_length=2048, max_repeated_segments=3)
    ingest = Ingest(cfg, scope, stats)
    links = [
        "http://a.test:25/x",
        "http://a.test:6000/x",
        "http://[::1]:110/x",
        "http://a.test:8080/ok",
        "http://mail.a.test:25/allowed",
        "http://mail.a.test:110/still-refused",
        "http://a.test:80/default",
    ]
    kept = [i.url for i in ingest.admit(ingest.normalize_links(links, "http://a.test/"), depth=1)]
    assert kept == ["http://a.test:8080/ok", "http://mail.a.test:25/allowed", "http://a.test/default"]
    assert dict(stats.skipped) == {"bad_port": 4}  # the port is judged first, even out of scope ([::1])


def test_allow_ports_is_validated() -> None:
    with pytest.raises(ConfigError, match=r'domains\."a\.test"\.allow_ports\[1\]: must be a port'):
        config_from_dict({"domains": {"a.test": {"allow_ports": [25, 70000]}}})
    with pytest.raises(ConfigError, match=r'domains\."a\.test"\.allow_ports\[0\]: expected an integer'):
        config_from_dict({"domains": {"a.test": {"allow_ports": ["25"]}}})
