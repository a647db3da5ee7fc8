"""SeenBloom: no false negatives, FP rate near the configured one, stable save/load across processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crawler.ingest.bloom import SeenBloom, stable_hash


def _urls(n: int, tag: str) -> list[str]:
    return [f"https://h{i % 97}.test/{tag}/{i}?q={i * 31 % 1009}" for i in range(n)]


def test_no_false_negatives_while_growing() -> None:
    bloom = SeenBloom(1000, 0.01)
    keys = _urls(20_000, "k")
    for k in keys:
        bloom.add(k)
    assert bloom.stages >= 4  # grew well past the initial capacity
    assert all(k in bloom for k in keys)
    assert all(bloom.add(k) for k in keys)  # re-adding reports "possibly present"
    assert 19_500 <= len(bloom) <= 20_000


def test_add_reports_new_keys() -> None:
    bloom = SeenBloom(100, 0.001)
    assert bloom.add("https://a.test/") is False
    assert bloom.add("https://a.test/") is True
    assert "https://a.test/" in bloom
    assert "https://b.test/" not in bloom
    assert len(bloom) == 1


@pytest.mark.parametrize("grow", [False, True])
def test_false_positive_rate_near_configured(grow: bool) -> None:
    rate = 0.01
    n = 20_000
    bloom = SeenBloom(n // 8 if grow else n, rate)
    for k in _urls(n, "in"):
        bloom.add(k)
    probes = _urls(50_000, "out")
    measured = sum(k in bloom for k in probes) / len(probes)
    # Stage i is built for rate * 0.5**(i+1), so the compound rate is between rate/4 and rate.
    assert rate / 4 <= measured <= rate * 1.2


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        SeenBloom(0, 0.01)
    with pytest.raises(ValueError):
        SeenBloom(10, 1.5)


def test_stable_hash_range_and_determinism() -> None:
    h = stable_hash("https://a.test/")
    assert -(2**127) <= h < 2**127
    assert h == stable_hash("https://a.test/")
    # Literal: a change of hash function would silently invalidate saved filters.
    assert stable_hash("") == 0x99AA06D3014798D86001C324468D497F - 2**127


def test_save_load_round_trip_in_fresh_process(tmp_path: Path) -> None:
    bloom = SeenBloom(500, 0.01)
    present = _urls(3000, "p")  # grows to several stages before saving
    for k in present:
        bloom.add(k)
    path = tmp_path / "seen.bloom"
    bloom.save(path)
    absent = _urls(3000, "a")
    expected = "".join("1" if k in bloom else "0" for k in present + absent)

    script = (
        "import sys\n"
        "from crawler.ingest.bloom import SeenBloom\n"
        "b = SeenBloom.load(sys.argv[1])\n"
        "keys = sys.stdin.read().split()\n"
        "print(''.join('1' if k in b else '0' for k in keys), len(b), b.stages)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        input="\n".join(present + absent),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    answers, length, stages = out.stdout.split()
    assert answers == expected
    assert answers[: len(present)] == "1" * len(present)
    assert int(length) == len(bloom) and int(stages) == bloom.stages

    loaded = SeenBloom.load(path)
    assert loaded.add(present[0]) is True
    fresh = _urls(200, "new-after-load")
    assert sum(not loaded.add(k) for k in fresh) >= 190  # the loaded filter keeps accepting keys
    assert all(k in loaded for k in fresh)


def test_load_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "x.bloom"
    path.write_bytes(b"not a bloom")
    with pytest.raises(ValueError):
        SeenBloom.load(path)
