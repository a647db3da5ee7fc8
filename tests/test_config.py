"""Configuration: defaults documented in configs/default.toml, validation errors that name the key."""

from pathlib import Path

import pytest

from crawler.core.config import DEFAULT_CONFIG, Config, config_from_dict, load_config, read_toml
from crawler.core.errors import ConfigError


def test_default_file_matches_builtin_defaults() -> None:
    assert load_config([DEFAULT_CONFIG]) == Config()


def test_every_builtin_key_is_documented_in_default_file() -> None:
    data = read_toml(DEFAULT_CONFIG)
    for section in ("crawl", "politeness", "fetch", "network", "output"):
        documented = set(data[section])
        actual = set(getattr(Config(), section).__dataclass_fields__)
        assert documented == actual, section


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"crawl": {"max_pagez": 3}}, "unknown key crawl.max_pagez"),
        ({"crawler": {}}, "unknown section [crawler]"),
        ({"politeness": {"delay": "fast"}}, "politeness.delay: expected a number"),
        ({"politeness": {"delay": -1}}, "politeness.delay: must be >= 0"),
        ({"fetch": {"max_redirects": 1.5}}, "fetch.max_redirects: expected an integer"),
        ({"network": {"allow_private": "yes"}}, "network.allow_private: expected true or false"),
        ({"domains": {"a.test": {"delai": 2}}}, 'unknown key domains."a.test".delai'),
        ({"crawl": {"allow_domains": "a.test"}}, "crawl.allow_domains: expected a list"),
        ({"crawl": {"allow_domains": ["a.test", "xn--zz"]}}, "crawl.allow_domains[1]: invalid punycode"),
        ({"crawl": {"allow_domains": [".a.test"]}}, "crawl.allow_domains[0]: empty label"),
        ({"crawl": {"allow_domains": ["a.test:8080", "[::1]", ""]}}, "crawl.allow_domains[2]: empty host"),
        ({"politeness": {"robots_retry_first": 0}}, "politeness.robots_retry_first: must be >= 0.1"),
        ({"output": {"warc": "yes"}}, "output.warc: expected true or false"),
        ({"output": {"warc_prefix": "a/b"}}, "output.warc_prefix: letters, digits"),
        ({"output": {"warc_gzip_level": 0}}, "output.warc_gzip_level: must be >= 1"),
    ],
)
def test_bad_values_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert message in str(info.value)


def test_most_specific_domain_wins(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[politeness]\ndelay = 2.0\n[domains."example.com"]\ndelay = 5.0\nmax_pages = 10\n'
        '[domains."shop.example.com"]\ndelay = 0.5\n'
    )
    cfg = load_config([path])
    assert cfg.for_host("other.org").delay == 2.0
    assert cfg.for_host("example.com").delay == 5.0
    assert cfg.for_host("www.example.com:8080").delay == 5.0
    assert cfg.for_host("www.example.com").max_pages == 10
    assert cfg.for_host("shop.example.com").delay == 0.5
    assert cfg.for_host("a.shop.example.com").delay == 0.5
    assert cfg.for_host("notexample.com").delay == 2.0


def test_overrides_beat_files_and_resolve_maps_merge(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[politeness]\ndelay = 2.0\n[network]\nresolve = {"a.test" = "127.0.0.1"}\n')
    cfg = load_config([path], {"politeness": {"delay": 0.1}, "network": {"resolve": {"*.x": "127.0.0.2"}}})
    assert cfg.politeness.delay == 0.1
    assert cfg.network.resolve == {"a.test": "127.0.0.1", "*.x": "127.0.0.2"}


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[crawl\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: invalid TOML"):
        load_config([path])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config([tmp_path / "missing.toml"])


def test_product_token() -> None:
    assert Config().crawl.product_token == "PoliteCrawler"


def test_user_agent_needs_a_product_token() -> None:
    assert config_from_dict({"crawl": {"user_agent": "MyBot2 (+http://x)"}}).crawl.product_token == "MyBot"
    with pytest.raises(ConfigError, match=r"crawl\.user_agent"):
        config_from_dict({"crawl": {"user_agent": "2fast/1.0"}})


def test_trap_limits_can_be_set_per_domain() -> None:
    cfg = config_from_dict(
        {"crawl": {"max_outlinks": 50}, "domains": {"wiki.test": {"max_outlinks": 5, "max_url_length": 100}}}
    )
    assert cfg.for_host("a.wiki.test").max_outlinks == 5 and cfg.for_host("a.wiki.test").max_url_length == 100
    assert cfg.for_host("other.test").max_outlinks == 50 and cfg.for_host("other.test").max_url_length == 2048
