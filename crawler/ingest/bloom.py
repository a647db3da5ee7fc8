"""A persistent, growable Bloom filter of seen URLs, in front of the frontier's exact seen-set.

Built on rbloom (Rust) with xxh3-128 as the hash, so a saved filter answers the same in any
process (Python's `hash()` is salted per process). rbloom filters have a fixed size, so growth
follows the scalable Bloom filter scheme (Almeida et al. 2007): when the newest filter holds its
capacity, a new one twice as large with half the error rate is added. Stage i gets error rate
`error_rate * 0.5 ** (i + 1)`, so the compound false-positive rate stays below `error_rate` however
far it grows (and is about `error_rate / 2` while within the initial capacity).
"""

from __future__ import annotations

import os
import struct
from operator import index as _prehashed
from pathlib import Path

import orjson
import xxhash
from rbloom import Bloom

__all__ = ["SeenBloom", "stable_hash"]

_MAGIC = b"SEENBLM1"
_GROWTH = 2
_TIGHTEN = 0.5
_OFFSET = 1 << 127
_MASK128 = (1 << 128) - 1


def stable_hash(key: str) -> int:
    """xxh3-128 of the UTF-8 key as the signed 128-bit int rbloom requires."""
    return xxhash.xxh3_128_intdigest(key.encode("utf-8", "surrogatepass")) - _OFFSET


class SeenBloom:
    """Probabilistic set of strings: no false negatives, false positives below `error_rate`."""

    __slots__ = ("_capacities", "_count", "_filters", "_stage_count", "capacity", "error_rate")

    def __init__(self, capacity: int, error_rate: float) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 0.0 < error_rate < 1.0:
            raise ValueError(f"error_rate must be in (0, 1), got {error_rate}")
        self.capacity = capacity
        self.error_rate = error_rate
        self._filters: list[Bloom] = []
        self._capacities: list[int] = []
        self._count = 0  # keys added (not counting ones that were possibly present)
        self._stage_count = 0  # keys added to the newest stage
        self._grow()

    def _grow(self) -> None:
        stage = len(self._filters)
        cap = self.capacity * _GROWTH**stage
        rate = self.error_rate * _TIGHTEN ** (stage + 1)
        self._filters.append(Bloom(cap, rate, _prehashed))
        self._capacities.append(cap)
        self._stage_count = 0

    def add(self, key: str) -> bool:
        """Add `key`; True if it was possibly present already (then nothing changes)."""
        h = stable_hash(key)
        # The stages hold stable_hash ints (their hash_func is the identity), so each key is hashed
        # once however many stages there are, and the bits on disk never depend on Python's hash().
        for f in self._filters:
            if h in f:
                return True
        if self._stage_count >= self._capacities[-1]:
            self._grow()
        self._filters[-1].add(h)
        self._stage_count += 1
        self._count += 1
        return False

    def __contains__(self, key: str) -> bool:
        h = stable_hash(key)
        for f in self._filters:  # noqa: SIM110 - a plain loop skips any()'s generator cost (~0.3 µs)
            if h in f:
                return True
        return False

    def __len__(self) -> int:
        """Keys added so far, excluding those reported as possibly present (so a slight undercount)."""
        return self._count

    @property
    def stages(self) -> int:
        """How many fixed-size filters the set has grown to."""
        return len(self._filters)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically to `path` (a temporary file renamed over it)."""
        path = Path(path)
        header = orjson.dumps(
            {
                "capacity": self.capacity,
                "error_rate": self.error_rate,
                "count": self._count,
                "stage_count": self._stage_count,
                "capacities": self._capacities,
            }
        )
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(_MAGIC)
            fh.write(struct.pack("<I", len(header)))
            fh.write(header)
            for f in self._filters:
                blob = f.save_bytes()
                fh.write(struct.pack("<Q", len(blob)))
                fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SeenBloom:
        """Read a filter written by `save`."""
        data = Path(path).read_bytes()
        if not data.startswith(_MAGIC):
            raise ValueError(f"{path}: not a SeenBloom file")
        pos = len(_MAGIC)
        (hlen,) = struct.unpack_from("<I", data, pos)
        pos += 4
        meta = orjson.loads(data[pos : pos + hlen])
        pos += hlen
        self = cls.__new__(cls)
        self.capacity = int(meta["capacity"])
        self.error_rate = float(meta["error_rate"])
        self._count = int(meta["count"])
        self._stage_count = int(meta["stage_count"])
        self._capacities = [int(c) for c in meta["capacities"]]
        self._filters = []
        for _ in self._capacities:
            (blen,) = struct.unpack_from("<Q", data, pos)
            pos += 8
            if pos + blen > len(data):
                raise ValueError(f"{path}: truncated SeenBloom file")
            self._filters.append(Bloom.load_bytes(data[pos : pos + blen], _prehashed))
            pos += blen
        return self
