"""RecentDict: bounded per-host memory keeps the most recently written keys."""

from crawler.core.recent import RecentDict


def test_keeps_the_most_recently_written_keys() -> None:
    d: RecentDict[str, int] = RecentDict(3)
    for i, key in enumerate("abcd"):
        d[key] = i
    assert list(d) == ["b", "c", "d"]
    d["b"] = 10  # written again: now the newest
    d["e"] = 4
    assert list(d) == ["d", "b", "e"] and d["b"] == 10
    assert d.get("a") is None and len(d) == 3


def test_stays_bounded_under_many_writes() -> None:
    d: RecentDict[int, int] = RecentDict(1000)
    for i in range(50_000):
        d[i % 3000] = i
    assert len(d) == 1000 and set(d) == set(range(1000, 2000))  # the keys of the last 1000 writes
