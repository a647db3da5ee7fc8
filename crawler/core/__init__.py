"""Layer 0: what every layer shares: URLs, errors, configuration, limits, counters."""
