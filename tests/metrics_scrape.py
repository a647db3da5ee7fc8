"""Scraping a crawler's Prometheus endpoint in tests: GET /metrics and parse it with prometheus_client."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float:
        """The sample `name{labels}`; KeyError when it is not there."""
        return self.samples[(name, frozenset(labels.items()))]

    def total(self, name: str) -> float:
        """The sum of `name` over all its label sets (0 when absent)."""
        return sum(v for (n, _), v in self.samples.items() if n == name)

    def labels(self, name: str, label: str) -> dict[str, float]:
        """`name`'s samples keyed by one label's value."""
        return {dict(ls)[label]: v for (n, ls), v in self.samples.items() if n == name and label in dict(ls)}


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> Scrape:
    """GET http://host:port/metrics and parse it."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as resp:
        assert resp.status == 200
        return Scrape(resp.read().decode())


def scrape_until(
    port: int, ready: Callable[[Scrape], bool], timeout: float = 60.0, alive: Callable[[], bool] = lambda: True
) -> Scrape:
    """Scrape every 0.1 s until `ready(scrape)` (the endpoint may not be up yet); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Scrape | None = None
    while time.monotonic() < deadline:
        assert alive(), "the process serving the metrics exited"
        try:
            last = scrape(port)
        except (urllib.error.URLError, ConnectionError):
            last = None
        if last is not None and ready(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"metrics on port {port} never got ready; last scrape:\n{last.text if last else None}")
