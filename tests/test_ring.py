"""HashRing: minimal movement on add/remove, balanced load, stable assignment across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from xxhash import xxh3_64_intdigest

from frontier.ring import HashRing

ROOT = Path(__file__).resolve().parent.parent
HOSTS = [f"host{i}.example" for i in range(100_000)]
WORKERS = [f"worker-{i}" for i in range(8)]
LOAD_TOLERANCE = 0.15
MOVE_SLACK = 0.03

Assignment = dict[str, str]


@pytest.fixture(scope="module")
def base() -> Assignment:
    return HashRing(WORKERS).owners(HOSTS)


def _worst_load_deviation(assignment: Assignment, members: list[str]) -> float:
    counts = Counter(assignment.values())
    mean = len(assignment) / len(members)
    return max(abs(counts[m] - mean) / mean for m in members)


def _moved(before: Assignment, after: Assignment) -> set[str]:
    return {host for host, owner in before.items() if after[host] != owner}


def test_load_is_balanced_within_tolerance(base: Assignment) -> None:
    assert set(base.values()) == set(WORKERS)
    assert _worst_load_deviation(base, WORKERS) <= LOAD_TOLERANCE


def test_adding_a_worker_moves_only_its_share_and_only_to_it(base: Assignment) -> None:
    ring = HashRing(WORKERS)
    ring.add("worker-8")
    after = ring.owners(HOSTS)
    moved = _moved(base, after)
    n_after = len(ring)
    assert n_after == 9
    assert 0 < len(moved) <= (1 / n_after + MOVE_SLACK) * len(HOSTS)
    assert {after[h] for h in moved} == {"worker-8"}
    # Every host the newcomer got is one that moved: nothing else was reshuffled.
    assert moved == {h for h, o in after.items() if o == "worker-8"}
    assert _worst_load_deviation(after, [*WORKERS, "worker-8"]) <= LOAD_TOLERANCE


@pytest.mark.parametrize("gone", WORKERS)
def test_removing_a_worker_moves_only_its_hosts(base: Assignment, gone: str) -> None:
    ring = HashRing(WORKERS)
    n_before = len(ring)
    ring.remove(gone)
    after = ring.owners(HOSTS)
    moved = _moved(base, after)
    assert len(moved) <= (1 / n_before + MOVE_SLACK) * len(HOSTS)
    assert moved == {h for h, o in base.items() if o == gone}
    assert gone not in after.values()
    remaining = [w for w in WORKERS if w != gone]
    assert _worst_load_deviation(after, remaining) <= LOAD_TOLERANCE


def test_owner_matches_a_naive_clockwise_scan() -> None:
    # Few points make wrap-around (hash past the last point) common enough to be exercised.
    members = ["a", "b", "c"]
    ring = HashRing(members, vnodes=2)
    points = sorted((xxh3_64_intdigest(f"{m}#{i}".encode()), m) for m in members for i in range(2))
    wrapped = 0
    for key in HOSTS[:2000]:
        h = xxh3_64_intdigest(key.encode())
        at_or_after = [m for p, m in points if p >= h]
        wrapped += not at_or_after
        assert ring.owner(key) == (at_or_after[0] if at_or_after else points[0][1])
    assert wrapped > 0


def test_a_key_hashing_exactly_onto_a_point_belongs_to_that_point() -> None:
    ring = HashRing(WORKERS, vnodes=64)
    # The key "worker-3#17" hashes to exactly worker-3's 17th point.
    on_points = {f"{w}#{i}": w for w in WORKERS for i in range(64)}
    assert {k: ring.owner(k) for k in on_points} == on_points
    assert ring.owners(on_points) == on_points


def test_bulk_owners_agree_with_owner() -> None:
    ring = HashRing(WORKERS)
    keys = HOSTS[:5000]
    bulk = ring.owners(k for k in keys)
    assert bulk == {k: ring.owner(k) for k in keys}
    assert ring.owners([]) == {}
    assert ring.owners(["x.test", "x.test"]) == {"x.test": ring.owner("x.test")}


def test_single_worker_owns_everything() -> None:
    ring = HashRing(["solo"])
    assert set(ring.owners(HOSTS[:5000]).values()) == {"solo"}
    assert ring.owner("anything.test") == "solo"


def test_empty_ring_owns_nothing() -> None:
    ring = HashRing()
    assert ring.owner("host.example") is None
    assert ring.owners(["host.example"]) == {}
    assert len(ring) == 0 and ring.members == frozenset()
    ring.add("w")
    ring.remove("w")
    assert ring.owner("host.example") is None


def test_removing_unknown_and_re_adding_known_members_are_no_ops() -> None:
    ring = HashRing(WORKERS)
    before = ring.owners(HOSTS[:5000])
    ring.remove("no-such-worker")
    ring.add("worker-0")
    assert ring.members == frozenset(WORKERS)
    assert ring.owners(HOSTS[:5000]) == before


def test_owner_is_never_stale_after_membership_changes() -> None:
    ring = HashRing(WORKERS)
    keys = HOSTS[:3000]
    for k in keys:
        ring.owner(k)  # warm any cache an implementation might keep
    ring.add("worker-8")
    assert {k: ring.owner(k) for k in keys} == HashRing([*WORKERS, "worker-8"]).owners(keys)
    ring.remove("worker-2")
    expected = HashRing([w for w in [*WORKERS, "worker-8"] if w != "worker-2"]).owners(keys)
    assert {k: ring.owner(k) for k in keys} == expected
    assert all(ring.owner(k) != "worker-2" for k in keys)


def test_membership_api() -> None:
    ring = HashRing.from_members(["b", "a"], vnodes=8)
    assert ring.vnodes == 8
    assert ring.members == frozenset({"a", "b"}) and isinstance(ring.members, frozenset)
    assert len(ring) == 2 and "a" in ring and "c" not in ring
    ring.add("c")
    assert len(ring) == 3 and "c" in ring
    ring.remove("a")
    assert ring.members == frozenset({"b", "c"})
    with pytest.raises(ValueError):
        HashRing(["a"], vnodes=0)


def test_assignment_does_not_depend_on_insertion_order() -> None:
    keys = HOSTS[:5000]
    built = HashRing.from_members(WORKERS).owners(keys)
    grown = HashRing()
    for w in reversed(WORKERS):
        grown.add(w)
    assert grown.owners(keys) == built
    shrunk = HashRing([*WORKERS, "extra"])
    shrunk.remove("extra")
    assert shrunk.owners(keys) == built


_CHILD = """
import sys, orjson
from frontier.ring import HashRing
members = orjson.loads(sys.argv[1])
keys = [f"host{i}.example" for i in range(5000)]
sys.stdout.buffer.write(orjson.dumps(HashRing.from_members(members).owners(keys)))
"""


def test_same_members_give_same_assignment_in_other_processes() -> None:
    keys = HOSTS[:5000]
    expected = HashRing.from_members(WORKERS).owners(keys)
    for seed, members in (("1", WORKERS), ("4242", list(reversed(WORKERS)))):
        # Different PYTHONHASHSEEDs would expose any reliance on Python's salted hash().
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, orjson.dumps(members).decode()],
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        assert orjson.loads(out) == expected
