"""Every Redis key of the frontier store (`frontier.redis.store`), all under the job prefix `crawl:{job}:`.

Several crawls share one Redis: each job's keys live under its own prefix and nothing else is touched.
The distributed crawl's coordination keys (`ClusterKeys`, at the end of this module) share the prefix
but use other names; `RedisStore.open(fresh=True)` deletes only the store's families.

Times are the caller's Unix seconds, never the Redis clock.

P = `crawl:{job}:`. Types, contents, and TTLs (none unless given):

* `P seen:<hex16>` STRING: the `now` at which the URL (xxh3-64 of its `UrlItem.seen_key`, 16 hex digits)
  was last queued; PX = seen_ttl + 1 s.
* `P q:<host>` ZSET item id → id: the host's eligible, unleased URLs, oldest (lowest id) first.
* `P retry:<host>` ZSET item id → retry_at: the host's retries waiting for their time.
* `P host:<host>` HASH: concurrency, spacing, budget (absent = unlimited), admitted, inflight,
  polite_at (claim spacing and outcomes' host_due), queued (ZCARD of q), waiting (ZCARD of retry),
  next_at (its score in `due`; absent while not there).
* `P due` ZSET host → next_at, the exact time the host becomes claimable; holds exactly the hosts
  with queued URLs and fewer than `concurrency` leases out.
* `P items` HASH item id → JSON [url, host, depth, attempts] of every queued or leased URL;
  [url, host, depth, attempts, etag, last_modified] for a URL `recrawl` queued with validators; and
  [url, host, depth, attempts, etag or null, last_modified or null, kind, lastmod] for a sitemap or a URL
  a sitemap listed with its lastmod.
* `P fetched` ZSET "<depth> <host> <url>" → time of the URL's last `done` outcome: the pages `recrawl`
  queues again once older than seen_ttl (a member leaves when it is queued again); sitemaps are not listed.
* `P valid` HASH url hash (16 hex) → JSON [etag, last_modified] (either may be null): validators of
  fetched pages that had any; none are stored for the others. Removed when `recrawl` queues the URL.
* `P leases` ZSET token → expires_at.
* `P lease` HASH token → "<item id> <host>".
* `P dead` LIST of JSON [url, host, depth, attempts, error, died_at, error_type] (+ [kind, lastmod] as in
  `items`), oldest first.
* `P meta` HASH: `set_meta` key → value.
* `P counters` HASH: queued, leased, done, dead, hosts (active hosts), token (last lease token),
  seq (last item id), seen (seen entries written, expiry not subtracted).
* `P robots:<hex16>` STRING, EX = robots TTL: one robots.txt answer for the URL (xxh3-64 of it), as
  `[status, location, fetched_at]` JSON, a newline, then the body; shared by all workers, read by explain.

The seen entry's expiry is decided by the stored `now` against the caller's `now - seen_ttl` (so a
fake clock works); the Redis TTL only garbage-collects entries once they are certainly stale.

A host's queue position is its item id, so a retried or released URL keeps its place: it is
re-inserted with its old id. An item id is also its score, exact as a double up to 2**53.

Each store call is one Lua script (`frontier/lua/`) that builds these names from the prefix, so the
names here and in `frontier/lua/common.lua` must agree. Scripts build key names at run time rather
than declaring them in KEYS, which Redis Cluster does not allow: this design assumes a single Redis
primary (replicas are fine). The `{job}` hash tag would keep a job in one slot should that change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["STORE_FAMILIES", "STORE_SINGLETONS", "StoreKeys", "is_store_key", "job_prefix", "validate_job"]

_JOB = re.compile(r"[A-Za-z0-9_.\-]{1,100}")

#: Fixed key names (after the prefix) of the store.
STORE_SINGLETONS = frozenset({"due", "items", "leases", "lease", "dead", "meta", "counters", "fetched", "valid"})
#: Key name families (after the prefix, up to and including the colon) of the store.
STORE_FAMILIES = ("seen:", "q:", "retry:", "host:", "robots:")


def validate_job(job: str) -> str:
    """Return `job` if it is a usable job name (letters, digits, `_.-`; no glob or hash-tag characters)."""
    if not _JOB.fullmatch(job):
        raise ValueError(f"job name must match {_JOB.pattern}, got {job!r}")
    return job


def job_prefix(job: str) -> str:
    """`crawl:{job}:`, the prefix of every key of the job."""
    return f"crawl:{{{validate_job(job)}}}:"


def is_store_key(prefix: str, key: str) -> bool:
    """Whether `key` (under `prefix`) belongs to the frontier store rather than to other job state."""
    if not key.startswith(prefix):
        return False
    rest = key[len(prefix) :]
    return rest in STORE_SINGLETONS or rest.startswith(STORE_FAMILIES)


class StoreKeys:
    """Key names of one job's frontier store (see the module docstring for types and TTLs)."""

    __slots__ = ("prefix",)

    def __init__(self, job: str) -> None:
        self.prefix = job_prefix(job)

    def seen(self, url_hash: str) -> str:
        """STRING: when the URL with this 16-hex xxh3 was queued; PX = seen_ttl + 1 s."""
        return f"{self.prefix}seen:{url_hash}"

    def queue(self, host: str) -> str:
        """ZSET item id → id: the host's eligible URLs."""
        return f"{self.prefix}q:{host}"

    def retry(self, host: str) -> str:
        """ZSET item id → retry_at: the host's waiting retries."""
        return f"{self.prefix}retry:{host}"

    def host(self, host: str) -> str:
        """HASH of the host's limits and bookkeeping."""
        return f"{self.prefix}host:{host}"

    def robots(self, url_hash: str) -> str:
        """STRING, EX = robots TTL: one robots.txt answer (status, location, fetched_at; body)."""
        return f"{self.prefix}robots:{url_hash}"

    @property
    def due(self) -> str:
        """ZSET host → next_at of claimable-in-time hosts."""
        return self.prefix + "due"

    @property
    def items(self) -> str:
        """HASH item id → JSON item."""
        return self.prefix + "items"

    @property
    def leases(self) -> str:
        """ZSET token → expires_at."""
        return self.prefix + "leases"

    @property
    def lease(self) -> str:
        """HASH token → "<item id> <host>"."""
        return self.prefix + "lease"

    @property
    def dead(self) -> str:
        """LIST of dead-letter JSON arrays, oldest first."""
        return self.prefix + "dead"

    @property
    def fetched(self) -> str:
        """ZSET "<depth> <host> <url>" → time of its last done outcome (recrawl)."""
        return self.prefix + "fetched"

    @property
    def valid(self) -> str:
        """HASH url hash → JSON [etag, last_modified] of fetched pages that had validators."""
        return self.prefix + "valid"

    @property
    def meta(self) -> str:
        """HASH of `set_meta` values."""
        return self.prefix + "meta"

    @property
    def counters(self) -> str:
        """HASH of totals: queued, leased, done, dead, hosts, token, seq, seen."""
        return self.prefix + "counters"


@dataclass(frozen=True, slots=True)
class ClusterKeys:
    """Key names for one job; each documented with its type, content and TTL."""

    job: str

    @property
    def prefix(self) -> str:
        """`crawl:{job}:`, the same prefix as the store's keys."""
        return job_prefix(self.job)

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
    def scope_version(self) -> str:
        """STRING counter, bumped (in one transaction with SADD `scope`) whenever a submission adds domains."""
        return self.prefix + "scope_version"

    @property
    def config(self) -> str:
        """STRING: the job's configuration as JSON (from `crawler submit -c`); no TTL."""
        return self.prefix + "config"

    @property
    def state(self) -> str:
        """HASH: `done` = "1" once nothing is queued or in flight, `updated` = time; no TTL."""
        return self.prefix + "state"

    def simhash_block(self, block: int, value: int) -> str:
        """SET of "fingerprint-hex url" members sharing one SimHash block value (near-dup lookup); no TTL."""
        return f"{self.prefix}sim:{block}:{value:x}"
