"""The ports browsers refuse to connect to (WHATWG Fetch, "bad port"), refused here too unless allowed.

Defence in depth: a link to `http://host:25/` makes a crawler talk HTTP to a mail server (cross-protocol
attacks), which is why browsers block these ports. One rule, used by ingest (links are dropped and counted
as `bad_port`) and by the fetcher (every connection: seeds, robots.txt, redirects, subresources).
"""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["BAD_PORTS", "port_of", "port_refusal"]

#: https://fetch.spec.whatwg.org/#port-blocking (0 and 4190/6679/6697 were added after the original list).
BAD_PORTS: frozenset[int] = frozenset(
    {
        0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102,
        103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512,
        513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719,
        1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679,
        6697, 10080,
    }
)  # fmt: skip


def port_of(host: str) -> int | None:
    """The explicit port of a host key (`a.test:25` -> 25, `[::1]:25` -> 25), None without one."""
    colon = host.rfind(":")
    if colon < 0 or host.endswith("]"):
        return None
    digits = host[colon + 1 :]
    return int(digits) if digits.isdigit() else None


def port_refusal(host: str, allowed: Collection[int] = ()) -> str | None:
    """Why a connection to host key `host` is refused (a bad port not in `allowed`), or None.

    Normalized URLs drop default ports, so the common case is one `rfind`: microseconds per URL.
    """
    port = port_of(host)
    if port is None or port not in BAD_PORTS or port in allowed:
        return None
    return f'port {port} is on the browsers\' blocked-port list; allow it with [domains."…"] allow_ports'
