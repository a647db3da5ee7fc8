"""64-bit SimHash fingerprints of page text and an in-memory near-duplicate index.

Features are 3-word shingles of lower-cased tokens. A token is a maximal run of word characters
other than digits (`[^\\W\\d]+`): numbers are the most volatile part of otherwise identical pages
(timestamps, counters, prices), and on a few-hundred-word page a three-token change such as a new
"02:13:37" already flips ~4 of 64 bits about a third of the time, which would defeat k=3. Text with
fewer than three such tokens falls back to plain `\\w+` tokens so that numeric-only pages still get
distinct fingerprints.

Each token is hashed once with xxh3-64 (seed fixed in the format, so fingerprints are stable
across processes, machines and Python versions); shingle hashes are combined and mixed with
vectorized NumPy arithmetic, and the per-bit votes are counted per byte column with
`np.bincount` against an `np.unpackbits` table of byte values.
"""

from __future__ import annotations

import re
from itertools import repeat
from typing import Protocol

import numpy as np
import xxhash

__all__ = ["NearDupIndex", "block_keys", "format_simhash", "hamming", "simhash64"]

_SEED = 0x5EED_C0DE  # part of the fingerprint format: changing it changes every stored fingerprint
_SHINGLE = 3

_LETTER_RUNS = re.compile(r"[^\W\d]+")
_WORDS = re.compile(r"\w+")

# Fast path: one bytes.translate over the UTF-8 text maps every ASCII non-letter (digits included)
# to a space and keeps letters, "_" and all non-ASCII bytes; `split()` then yields the exact tokens
# for ASCII text, and chunks that only need a regex pass where they contain non-ASCII characters.
_TABLE = bytes(c + 32 if 65 <= c <= 90 else c if (97 <= c <= 122 or c == 95 or c >= 128) else 32 for c in range(256))

# Odd multipliers for order-sensitive combination, then the murmur3 64-bit finalizer so every
# output bit depends on every input bit (SimHash needs per-bit independence of features).
_K = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xC2B2AE3D27D4EB4F),
    np.uint64(0x165667B19E3779F9),
)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
# Row v holds the 8 bits of byte value v, least significant first.
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.int64)


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


def _tokens(text: str) -> list[bytes]:
    """`[^\\W\\d]+` tokens of the lower-cased text as UTF-8 bytes, `\\w+` tokens if fewer than 3."""
    low = text.lower()
    data = _utf8(low)
    toks = data.translate(_TABLE).split()
    extra = len(data) - len(low)  # 0 for ASCII text
    if extra * 4 > len(toks):
        # Mostly non-ASCII text: one regex pass beats fixing up most chunks one by one.
        toks = [_utf8(t) for t in _LETTER_RUNS.findall(low)]
    elif extra:
        fixed: list[bytes] = []
        for chunk in toks:
            if chunk.isascii():
                fixed.append(chunk)
            else:
                fixed.extend(_utf8(t) for t in _LETTER_RUNS.findall(chunk.decode("utf-8", "surrogatepass")))
        toks = fixed
    if len(toks) < _SHINGLE:
        toks = [_utf8(t) for t in _WORDS.findall(low)]
    return toks


def simhash64(text: str) -> int:
    """64-bit SimHash of `text` over 3-token shingles; 0 for text without any word characters."""
    toks = _tokens(text)
    n = len(toks)
    if n == 0:
        return 0
    digest = xxhash.xxh3_64_intdigest
    h = np.fromiter(map(digest, toks, repeat(_SEED, n)), dtype=np.uint64, count=n)
    if n < _SHINGLE:
        # Too short for one full shingle: pad so the text still yields exactly one feature.
        h = np.concatenate([h, np.zeros(_SHINGLE - n, dtype=np.uint64)])
    x = h[:-2] * _K[0] + h[1:-1] * _K[1] + h[2:] * _K[2]
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    m = len(x)
    # Bit j of a fingerprint is bit j%8 of little-endian byte j//8 on every platform. Counting each
    # byte column's 256 values and multiplying by a value->bits table is ~2x faster than summing
    # an (m, 64) unpacked bit matrix.
    cols = x.astype("<u8").view(np.uint8).reshape(m, 8)
    hist = np.stack([np.bincount(cols[:, j], minlength=256) for j in range(8)])
    votes = (hist @ _BYTE_BITS).reshape(64)
    packed = np.packbits(votes * 2 > m, bitorder="little")
    return int.from_bytes(packed.tobytes(), "little")


def format_simhash(fp: int) -> str:
    """The fingerprint as 16 lower-case hex digits."""
    return f"{fp & 0xFFFFFFFFFFFFFFFF:016x}"


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two fingerprints."""
    return (a ^ b).bit_count()


def _block_layout(max_distance: int) -> list[tuple[int, int]]:
    """(shift, mask) of each of the max_distance+1 near-equal blocks covering the 64 bits."""
    if not 0 <= max_distance <= 63:
        raise ValueError(f"max_distance must be in 0..63, got {max_distance}")
    blocks = max_distance + 1
    base, extra = divmod(64, blocks)
    layout: list[tuple[int, int]] = []
    shift = 0
    for i in range(blocks):
        width = base + (1 if i < extra else 0)
        layout.append((shift, (1 << width) - 1))
        shift += width
    return layout


def block_keys(fp: int, max_distance: int) -> list[tuple[int, int]]:
    """(block index, block value) pairs; fingerprints within `max_distance` share at least one."""
    return [(i, (fp >> shift) & mask) for i, (shift, mask) in enumerate(_block_layout(max_distance))]


class NearDupIndex:
    """Fingerprints keyed by URL, searchable for any stored one within `max_distance` bits.

    Permuted-block method (Manku et al. 2007): by pigeonhole, two fingerprints that differ in at
    most k bits agree exactly on at least one of k+1 blocks, so one dict per block yields every
    candidate and a Hamming check removes the rest.
    """

    __slots__ = ("_fps", "_keys", "_layout", "_tables", "max_distance")

    def __init__(self, max_distance: int = 3) -> None:
        self._layout = _block_layout(max_distance)
        self.max_distance = max_distance
        self._tables: list[dict[int, list[int]]] = [{} for _ in self._layout]
        self._fps: list[int] = []
        self._keys: list[str] = []

    def add(self, fp: int, key: str) -> None:
        """Store `fp` under `key` (URL)."""
        idx = len(self._fps)
        self._fps.append(fp)
        self._keys.append(key)
        for table, (shift, mask) in zip(self._tables, self._layout, strict=True):
            bucket = table.get((fp >> shift) & mask)
            if bucket is None:
                table[(fp >> shift) & mask] = [idx]
            else:
                bucket.append(idx)

    def find(self, fp: int) -> str | None:
        """Key of the nearest stored fingerprint within `max_distance` (earliest on ties), else None."""
        best_idx = -1
        best_dist = self.max_distance + 1
        fps = self._fps
        for table, (shift, mask) in zip(self._tables, self._layout, strict=True):
            bucket = table.get((fp >> shift) & mask)
            if bucket is None:
                continue
            for idx in bucket:
                d = (fps[idx] ^ fp).bit_count()
                if d == 0:
                    # Buckets hold indices in insertion order, so this is the earliest exact match.
                    return self._keys[idx]
                if d < best_dist or (d == best_dist and idx < best_idx):
                    best_idx, best_dist = idx, d
        return self._keys[best_idx] if best_idx >= 0 else None

    def __len__(self) -> int:
        return len(self._fps)


#: Pages with less visible text than this are fingerprinted but never called near-duplicates:
#: near-empty pages (app shells, error stubs) all look alike and would hide real content.
MIN_NEARDUP_TEXT = 200


class NearDupChecker(Protocol):
    """Finds an earlier page within the Hamming distance, or remembers this one."""

    async def check(self, fp: int, url: str) -> str | None:
        """URL of a near-duplicate seen before; None (and `fp` remembered for `url`) otherwise."""
        ...


class LocalNearDup:
    """The in-process index: one crawler process sees every page (the embedded crawl)."""

    def __init__(self, index: NearDupIndex) -> None:
        self.index = index

    async def check(self, fp: int, url: str) -> str | None:
        """See `NearDupChecker.check`."""
        dup = self.index.find(fp)
        if dup is None:
            self.index.add(fp, url)
        return None if dup == url else dup
