"""Typed configuration: TOML files plus flag overrides, validated once at start.

Every section is a frozen dataclass; `load_config` merges the default file, the user's files and the
flag overrides (in that order), rejects unknown keys and wrong types with a message that names the key,
and returns one immutable `Config`. Nothing reads a global settings object.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from crawler.core.errors import ConfigError, CrawlError
from crawler.core.limits import HostLimits
from crawler.core.urlnorm import normalize_host

#: The documented defaults; the dataclass defaults below are the same values (a test holds them equal),
#: so an installed package needs no file to run.
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent.parent / "configs" / "default.toml"


RENDER_MODES = ("never", "auto", "always")
_TOKEN = re.compile(r"[A-Za-z_-]+")
_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a WARC file name prefix: safe in any file system


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"lo": lo, "hi": hi}


@dataclass(frozen=True, slots=True)
class CrawlSettings:
    """The `[crawl]` section: scope, limits and dedup."""

    user_agent: str = "PoliteCrawler/0.1 (+https://github.com/polite-crawler)"
    max_pages: int = field(default=0, metadata=_range(0))
    max_depth: int = field(default=10, metadata=_range(0))
    allow_domains: tuple[str, ...] = ()
    max_url_length: int = field(default=2048, metadata=_range(16))
    max_repeated_segments: int = field(default=3, metadata=_range(1))
    max_path_segments: int = field(default=64, metadata=_range(1))
    max_outlinks: int = field(default=1000, metadata=_range(0))
    strip_params: tuple[str, ...] = (
        "utm_*",
        "gclid",
        "fbclid",
        "msclkid",
        "sessionid",
        "jsessionid",
        "phpsessid",
        "sid",
    )
    seen_ttl: float = field(default=604800.0, metadata=_range(1))
    concurrency: int = field(default=64, metadata=_range(1, 10000))
    near_duplicate_distance: int = field(default=3, metadata=_range(0, 16))
    follow_near_duplicates: bool = True
    sitemaps: bool = True
    sitemap_max_files: int = field(default=500, metadata=_range(1))
    sitemap_max_depth: int = field(default=2, metadata=_range(0, 10))
    sitemap_max_urls: int = field(default=50_000, metadata=_range(1))
    sitemap_max_bytes: int = field(default=50 * 2**20, metadata=_range(1024))

    @property
    def product_token(self) -> str:
        """The robots.txt product token (RFC 9309 `[A-Za-z_-]+`): the user agent's leading letters."""
        match = _TOKEN.match(self.user_agent.strip())
        return match.group(0) if match else ""


@dataclass(frozen=True, slots=True)
class PolitenessSettings:
    """The `[politeness]` section: the defaults every host gets."""

    delay: float = field(default=1.0, metadata=_range(0))
    concurrency: int = field(default=1, metadata=_range(1, 64))
    max_crawl_delay: float = field(default=30.0, metadata=_range(0))
    robots_ttl: float = field(default=86400.0, metadata=_range(1, 86400))
    robots_error_ttl: float = field(default=300.0, metadata=_range(1, 86400))
    robots_retry_first: float = field(default=2.0, metadata=_range(0.1, 86400))
    robots_give_up: float = field(default=120.0, metadata=_range(0, 86400))
    retry_after_max: float = field(default=3600.0, metadata=_range(0))
    max_backoff_delay: float = field(default=60.0, metadata=_range(0))
    breaker_failures: int = field(default=5, metadata=_range(1))
    breaker_cooldown: float = field(default=60.0, metadata=_range(0))
    breaker_max_cooldown: float = field(default=1800.0, metadata=_range(0))


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """The `[fetch]` section: timeouts, caps, redirects and retries."""

    connect_timeout: float = field(default=10.0, metadata=_range(0.01))
    read_timeout: float = field(default=30.0, metadata=_range(0.01))
    total_timeout: float = field(default=60.0, metadata=_range(0.01))
    max_body_bytes: int = field(default=10 * 2**20, metadata=_range(1024))
    max_redirects: int = field(default=5, metadata=_range(0, 20))
    max_attempts: int = field(default=3, metadata=_range(1, 100))
    retry_backoff: tuple[float, ...] = (60.0, 300.0, 1800.0)
    server_error_interval: float = field(default=300.0, metadata=_range(0, 86400))
    render: str = "auto"
    browser_path: str = ""
    browser_pool_size: int = field(default=0, metadata=_range(0, 64))
    render_timeout: float = field(default=20.0, metadata=_range(0.5))


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """The `[network]` section: resolve overrides and private-address protection."""

    resolve: dict[str, str] = field(default_factory=dict)
    allow_private: bool = False


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """The `[metrics]` section: this process's Prometheus endpoint (never stored with a Redis job)."""

    port: int = field(default=0, metadata=_range(0, 65535))  # 0: no endpoint
    host: str = "127.0.0.1"
    top_hosts: int = field(default=10, metadata=_range(0, 1000))


@dataclass(frozen=True, slots=True)
class OutputSettings:
    """The `[output]` section: what is written besides the record log."""

    warc: bool = False
    warc_max_bytes: int = field(default=1_000_000_000, metadata=_range(1024))
    warc_prefix: str = "crawl"
    warc_gzip_level: int = field(default=6, metadata=_range(1, 9))


@dataclass(frozen=True, slots=True)
class DomainSettings:
    """One `[domains."…"]` entry; None means "inherit the default"."""

    delay: float | None = field(default=None, metadata=_range(0))
    concurrency: int | None = field(default=None, metadata=_range(1, 64))
    max_pages: int | None = field(default=None, metadata=_range(0))
    max_depth: int | None = field(default=None, metadata=_range(0))
    render: str | None = None
    max_outlinks: int | None = field(default=None, metadata=_range(0))
    max_url_length: int | None = field(default=None, metadata=_range(16))
    max_repeated_segments: int | None = field(default=None, metadata=_range(1))
    max_path_segments: int | None = field(default=None, metadata=_range(1))
    follow_near_duplicates: bool | None = None
    sitemaps: bool | None = None
    #: Ports of the browsers' blocked list (crawler.core.ports) this domain may be fetched on, e.g. [25].
    allow_ports: tuple[int, ...] | None = None

    def overrides(self) -> dict[str, Any]:
        """The keys this entry sets."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True, slots=True)
class HostSettings:
    """The effective settings of one host after domain overrides."""

    delay: float
    concurrency: int
    max_pages: int | None
    max_depth: int
    render: str = "auto"
    max_outlinks: int = 1000
    max_url_length: int = 2048
    max_repeated_segments: int = 3
    max_path_segments: int = 64
    follow_near_duplicates: bool = True
    allow_ports: tuple[int, ...] = ()
    sitemaps: bool = True

    def limits(self, crawl_delay: float | None = None) -> HostLimits:
        """What the frontier store enforces for this host: concurrency, start spacing and page budget."""
        return HostLimits(self.concurrency, max(self.delay, crawl_delay or 0.0), self.max_pages)


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    crawl: CrawlSettings = CrawlSettings()
    politeness: PolitenessSettings = PolitenessSettings()
    fetch: FetchSettings = FetchSettings()
    network: NetworkSettings = NetworkSettings()
    metrics: MetricsSettings = MetricsSettings()
    output: OutputSettings = OutputSettings()
    domains: dict[str, DomainSettings] = field(default_factory=dict)

    def for_host(self, host: str) -> HostSettings:
        """Effective settings for a host key (`name[:port]`); the most specific domain entry wins."""
        return _for_host(self, host.rsplit(":", 1)[0] if host.count(":") == 1 else host)

    def host_limits(self, host: str) -> HostLimits:
        """What a frontier store enforces for `host` (its `host_limits` callable), from the config alone."""
        return self.for_host(host).limits()

    def __hash__(self) -> int:
        return id(self)


@lru_cache(maxsize=65536)
def _for_host(cfg: Config, name: str) -> HostSettings:
    override = DomainSettings()
    labels = name.split(".")
    for i in range(len(labels)):
        hit = cfg.domains.get(".".join(labels[i:]))
        if hit is not None:
            override = hit
            break
    p, c = cfg.politeness, cfg.crawl
    base = HostSettings(
        delay=p.delay,
        concurrency=p.concurrency,
        max_pages=None,
        max_depth=c.max_depth,
        render=cfg.fetch.render,
        max_outlinks=c.max_outlinks,
        max_url_length=c.max_url_length,
        max_repeated_segments=c.max_repeated_segments,
        max_path_segments=c.max_path_segments,
        follow_near_duplicates=c.follow_near_duplicates,
        sitemaps=c.sitemaps,
    )
    return replace(base, **override.overrides())


_SECTIONS: dict[str, type] = {
    "crawl": CrawlSettings,
    "politeness": PolitenessSettings,
    "fetch": FetchSettings,
    "network": NetworkSettings,
    "metrics": MetricsSettings,
    "output": OutputSettings,
}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is type(None) or hint is type(None):
        return value
    if args and type(None) in args:  # Optional[X]
        inner = next(a for a in args if a is not type(None))
        return None if value is None else _coerce(value, inner, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(f"{where}: unsupported setting type {hint!r}")  # pragma: no cover - a bug here


def _build(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table, got {table!r}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown key {where}.{key} (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for key, raw in table.items():
        name = f"{where}.{key}"
        value = _coerce(raw, hints[key], name)
        meta = known[key].metadata
        if value is not None and meta and isinstance(value, int | float):
            lo, hi = meta.get("lo"), meta.get("hi")
            if lo is not None and value < lo:
                raise ConfigError(f"{name}: must be >= {lo}, got {value!r}")
            if hi is not None and value > hi:
                raise ConfigError(f"{name}: must be <= {hi}, got {value!r}")
        values[key] = value
    return cls(**values)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file, turning read and syntax errors into a ConfigError naming the file."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def config_from_dict(data: dict[str, Any]) -> Config:
    """Validate a merged mapping (file contents plus overrides) into a Config."""
    for key in data:
        if key not in _SECTIONS and key != "domains":
            raise ConfigError(f"unknown section [{key}] (known: {', '.join([*_SECTIONS, 'domains'])})")
    sections = {name: _build(cls, data.get(name, {}), name) for name, cls in _SECTIONS.items()}
    domains_raw = data.get("domains", {})
    if not isinstance(domains_raw, dict):
        raise ConfigError("[domains] must be a table of tables")
    domains = {
        str(name).lower().strip("."): _build(DomainSettings, table, f'domains."{name}"')
        for name, table in domains_raw.items()
    }
    cfg = Config(domains=domains, **sections)
    for where, mode in [("fetch.render", cfg.fetch.render)] + [
        (f'domains."{n}".render', d.render) for n, d in domains.items() if d.render is not None
    ]:
        if mode not in RENDER_MODES:
            raise ConfigError(f"{where}: must be one of {', '.join(RENDER_MODES)}, got {mode!r}")
    if not cfg.crawl.product_token:
        raise ConfigError(
            f"crawl.user_agent: must start with a product token of letters, '-' or '_' "
            f"(RFC 9309), got {cfg.crawl.user_agent!r}"
        )
    _check_allow_domains(cfg.crawl.allow_domains)
    for name, d in domains.items():
        for i, port in enumerate(d.allow_ports or ()):
            if not 0 <= port <= 65535:
                raise ConfigError(f'domains."{name}".allow_ports[{i}]: must be a port 0..65535, got {port!r}')
    if not _PREFIX.fullmatch(cfg.output.warc_prefix):
        raise ConfigError(f"output.warc_prefix: letters, digits, '.', '_' or '-' only, got {cfg.output.warc_prefix!r}")
    if cfg.fetch.total_timeout < cfg.fetch.connect_timeout:
        raise ConfigError("fetch.total_timeout: must be >= fetch.connect_timeout")
    return cfg


def _check_allow_domains(domains: tuple[str, ...]) -> None:
    """Each entry must be a host the scope can normalize, so a typo ends with a message, not a traceback."""
    for i, entry in enumerate(domains):
        host = entry.strip()
        # The scope ignores a port (`a.test:8080`); an IPv6 literal keeps its colons inside brackets.
        if not host.endswith("]") and ":" in host:
            host = host.rpartition(":")[0]
        try:
            normalize_host(host)
        except CrawlError as exc:
            raise ConfigError(f"crawl.allow_domains[{i}]: {exc.message}") from None


def config_data(cfg: Config) -> dict[str, Any]:
    """The mapping `config_from_dict` turns back into `cfg` (a crawl stores it, so its config can be read back)."""
    data: dict[str, Any] = {name: asdict(getattr(cfg, name)) for name in _SECTIONS}
    data["domains"] = {name: d.overrides() for name, d in cfg.domains.items()}
    return data


def load_config_data(
    paths: list[Path] | None = None, overrides: dict[str, Any] | None = None, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The merged, not yet validated mapping: `base`, then `paths` in order, then `overrides`."""
    data: dict[str, Any] = dict(base or {})
    for path in paths or []:
        data = _merge(data, read_toml(path))
    if overrides:
        data = _merge(data, overrides)
    return data


def load_config(
    paths: list[Path] | None = None, overrides: dict[str, Any] | None = None, base: dict[str, Any] | None = None
) -> Config:
    """Load `paths` in order over `base` (or the built-in defaults), then `overrides` (from flags)."""
    return config_from_dict(load_config_data(paths, overrides, base))
