"""Per-host limits the frontier enforces, resolved from configuration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class HostLimits:
    """Per-host knobs the store enforces: leases in flight, start spacing, and a page budget."""

    concurrency: int = 1
    spacing: float = 0.0
    budget: int | None = None  # max URLs ever queued for this host; None = unlimited

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"host concurrency must be >= 1, got {self.concurrency}")
