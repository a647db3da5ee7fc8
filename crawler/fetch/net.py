"""Address policy applied where connections are made: refuse non-public addresses, honour --resolve maps."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection, Mapping
from functools import lru_cache

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from crawler.core.errors import ConfigError, CrawlError, ErrorType
from crawler.core.ports import port_refusal

__all__ = ["AddressPolicy", "AddressRefusedError", "GuardedResolver", "refusal_reason"]

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# IETF protocol assignments: only the PCP and TURN anycast addresses are globally reachable.
_IETF_PROTOCOL = ipaddress.IPv4Network("192.0.0.0/24")
_IETF_GLOBAL = frozenset({ipaddress.IPv4Address("192.0.0.9"), ipaddress.IPv4Address("192.0.0.10")})
_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_V4_COMPAT = ipaddress.IPv6Network("::/96")

_NUMERIC_FLAGS = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
# Bound the per-host override cache: a long crawl sees millions of hosts.
_OVERRIDE_CACHE_MAX = 65536


def _v4_reason(a: ipaddress.IPv4Address) -> str | None:
    # `is_global` alone is not enough: Python reports multicast as global, and its tables moved
    # between patch releases, so the special ranges are tested explicitly too.
    if a.is_loopback:
        return "loopback"
    if a.is_unspecified:
        return "unspecified"
    if a.is_link_local:
        return "link-local"
    if a.is_multicast:
        return "multicast"
    if a in _CGNAT:
        return "shared address space (CGNAT)"
    if a.is_reserved:
        return "reserved"
    if a.is_private or not a.is_global or (a in _IETF_PROTOCOL and a not in _IETF_GLOBAL):
        return "private or special-purpose"
    return None


def _v6_reason(a: ipaddress.IPv6Address) -> str | None:
    # Translated forms reach an IPv4 host, so the embedded IPv4 address decides.
    mapped = a.ipv4_mapped
    if mapped is not None:
        r = _v4_reason(mapped)
        return f"IPv4-mapped {r}" if r else None
    sixtofour = a.sixtofour
    if sixtofour is not None:
        r = _v4_reason(sixtofour)
        return f"6to4 {r}" if r else None
    if a in _NAT64_WKP:
        r = _v4_reason(ipaddress.IPv4Address(int(a) & 0xFFFFFFFF))
        return f"NAT64 {r}" if r else None
    if a in _NAT64_LOCAL:
        return "local-use NAT64"
    if a in _TEREDO:
        return "Teredo"
    if a.is_loopback:
        return "loopback"
    if a.is_unspecified:
        return "unspecified"
    if a in _V4_COMPAT:
        return "IPv4-compatible (deprecated)"
    if a.is_link_local or a.is_site_local:
        return "link-local"
    if a.is_multicast:
        return "multicast"
    if a.is_reserved:
        return "reserved"
    if a.is_private or not a.is_global:
        return "private or special-purpose"
    return None


@lru_cache(maxsize=16384)
def refusal_reason(ip: str) -> str | None:
    """Why `ip` is not a public unicast address (None when it is fine); unparsable → a reason too."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "not an IP address"
    if isinstance(addr, ipaddress.IPv4Address):
        return _v4_reason(addr)
    return _v6_reason(addr)


def _norm_host(host: str) -> str:
    return host.rstrip(".").lower()


class AddressPolicy:
    """Which addresses a fetch may connect to, plus curl-style `--resolve` overrides.

    `resolve` maps a hostname, or a wildcard `*.suffix` (matching any subdomain, not the bare
    suffix), to an IP address; mapped hosts never touch DNS and may use any address.
    """

    __slots__ = ("_cache", "_exact", "_wild", "allow_private", "allowed_ports")

    def __init__(
        self,
        resolve: Mapping[str, str] | None = None,
        allow_private: bool = False,
        allowed_ports: Callable[[str], Collection[int]] | None = None,
    ) -> None:
        self.allow_private = allow_private
        #: host key -> the blocked ports its domain entry allows (`allow_ports`); none by default.
        self.allowed_ports = allowed_ports
        self._exact: dict[str, str] = {}
        self._wild: list[tuple[str, str]] = []
        for pattern, ip in (resolve or {}).items():
            try:
                ip = str(ipaddress.ip_address(ip.strip().strip("[]")))
            except ValueError:
                raise ConfigError(f"--resolve {pattern}: {ip!r} is not an IP address") from None
            p = _norm_host(pattern.strip())
            if p.startswith("*."):
                if len(p) < 3:
                    raise ConfigError(f"--resolve {pattern!r}: empty wildcard suffix")
                self._wild.append((p[1:], ip))  # keep the dot: ".test"
            elif not p or "*" in p:
                raise ConfigError(f"--resolve {pattern!r}: bad host pattern")
            else:
                self._exact[p] = ip
        # Longest suffix first so `*.a.test` beats `*.test`.
        self._wild.sort(key=lambda t: len(t[0]), reverse=True)
        self._cache: dict[str, str | None] = {}

    def override(self, host: str) -> str | None:
        """The mapped address for `host`, or None when it is not mapped."""
        if not self._exact and not self._wild:
            return None
        try:
            return self._cache[host]
        except KeyError:
            pass
        h = _norm_host(host)
        ip = self._exact.get(h)
        if ip is None:
            for suffix, wip in self._wild:
                if h.endswith(suffix) and len(h) > len(suffix):
                    ip = wip
                    break
        if len(self._cache) >= _OVERRIDE_CACHE_MAX:
            self._cache.clear()
        self._cache[host] = ip
        return ip

    def check_port(self, host: str) -> None:
        """Raise CrawlError(BAD_PORT) when host key `host` names a browser-blocked port not allowed for it."""
        if ":" not in host:  # the common case: a default port
            return
        allowed = self.allowed_ports(host) if self.allowed_ports is not None else ()
        reason = port_refusal(host, allowed)
        if reason is not None:
            raise CrawlError(ErrorType.BAD_PORT, f"{host}: {reason}; refused before connecting")

    def check_address(self, ip: str, host: str) -> None:
        """Raise CrawlError(PRIVATE_ADDRESS) unless `ip` is public, `host` is mapped or private is allowed."""
        if self.allow_private:
            return
        reason = refusal_reason(ip)
        if reason is None or self.override(host) is not None:
            return
        where = f"address {ip}" if ip == host else f"{host} resolves to {ip}"
        raise CrawlError(ErrorType.PRIVATE_ADDRESS, f"{where} ({reason}); refused")


class AddressRefusedError(OSError):
    """Raised by GuardedResolver when no acceptable address remains; `.error` is the CrawlError.

    It is an OSError so aiohttp wraps it in ClientConnectorDNSError (`.os_error`) instead of
    letting it escape unwrapped; the fetcher unwraps it back into the CrawlError.
    """

    def __init__(self, error: CrawlError) -> None:
        super().__init__(error.message)
        self.error = error


class GuardedResolver(AbstractResolver):
    """A resolver that applies an AddressPolicy to what it returns, so the checked address is the one used."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self._inner: ThreadedResolver | None = None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Mapped address for mapped hosts; otherwise getaddrinfo results minus refused addresses."""
        mapped = self.policy.override(host)
        if mapped is not None:
            fam = socket.AF_INET6 if ":" in mapped else socket.AF_INET
            return [ResolveResult(hostname=host, host=mapped, port=port, family=fam, proto=0, flags=_NUMERIC_FLAGS)]
        if self._inner is None:
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        if self.policy.allow_private:
            return results
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: no addresses")
        kept = [r for r in results if refusal_reason(r["host"]) is None]
        if not kept:
            # Name the first refused address: it is what a connection would have used.
            first = results[0]["host"]
            reason = refusal_reason(first)
            raise AddressRefusedError(
                CrawlError(ErrorType.PRIVATE_ADDRESS, f"{host} resolves to {first} ({reason}); refused")
            )
        return kept

    async def close(self) -> None:
        """Release the inner resolver."""
        if self._inner is not None:
            await self._inner.close()
