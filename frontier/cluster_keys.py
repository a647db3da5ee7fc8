"""Redis keys of the distributed crawl's coordination (the store's own keys are in `redis_keys`).

All under the job prefix `crawl:{job}:`, like the store's, so several crawls share one Redis.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClusterKeys:
    """Key names for one job; each documented with its type, content and TTL."""

    job: str

    @property
    def prefix(self) -> str:
        """`crawl:{job}:` — the braces make it a Redis Cluster hash tag, should one be used."""
        return f"crawl:{{{self.job}}}:"

    @property
    def leader(self) -> str:
        """STRING, PX ~10 s: id of the frontier service that acts; others stand by (renewed every 2 s)."""
        return self.prefix + "frontier:leader"

    @property
    def workers(self) -> str:
        """HASH worker id → JSON heartbeat (time, pages, rate, concurrency); entries of dead workers removed."""
        return self.prefix + "workers"

    def alive(self, worker: str) -> str:
        """STRING, PX = heartbeat TTL: exists while the worker lives."""
        return f"{self.prefix}worker:{worker}:alive"

    def inbox(self, worker: str) -> str:
        """LIST of lease messages dispatched to the worker, not yet taken; no TTL."""
        return f"{self.prefix}worker:{worker}:inbox"

    def assigned(self, worker: str) -> str:
        """HASH token → lease message: leases dispatched to the worker and not yet answered; no TTL."""
        return f"{self.prefix}worker:{worker}:assigned"

    @property
    def outcomes(self) -> str:
        """LIST of outcome messages from workers, applied by the frontier; no TTL."""
        return self.prefix + "outcomes"

    @property
    def domains(self) -> str:
        """HASH domain → JSON politeness override (`crawler domain set`); no TTL."""
        return self.prefix + "domains"

    @property
    def scope(self) -> str:
        """SET of allowed domains (the submitted seeds' hosts, or the job config's list); no TTL."""
        return self.prefix + "scope"

    @property
    def config(self) -> str:
        """STRING: the job's configuration as JSON (from `crawler submit -c`); no TTL."""
        return self.prefix + "config"

    @property
    def state(self) -> str:
        """HASH: `done` = "1" once nothing is queued or in flight, `updated` = time; no TTL."""
        return self.prefix + "state"

    def robots(self, url_hash: str) -> str:
        """STRING, EX = robots TTL: one robots.txt response (status, location, body) shared by all workers."""
        return f"{self.prefix}robots:{url_hash}"

    def simhash_block(self, block: int, value: int) -> str:
        """SET of "fingerprint-hex url" members sharing one SimHash block value (near-dup lookup); no TTL."""
        return f"{self.prefix}sim:{block}:{value:x}"
