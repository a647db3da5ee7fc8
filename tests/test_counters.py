"""Every counter the crawler increments is a `Counter` member, and every member reaches stats.json."""

from __future__ import annotations

import ast
from pathlib import Path

from crawler.core.stats import Counter, Stats

ROOT = Path(__file__).resolve().parent.parent


def _incr_calls() -> list[tuple[str, int, ast.expr]]:
    calls = []
    for path in sorted((ROOT / "crawler").rglob("*.py")) + sorted((ROOT / "frontier").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "incr":
                owner = node.func.value  # `stats.incr`, `self.stats.incr`: not Redis's INCR
                if not (isinstance(owner, ast.Name) and owner.id == "stats") and not (
                    isinstance(owner, ast.Attribute) and owner.attr == "stats"
                ):
                    continue
                calls.append((str(path.relative_to(ROOT)), node.lineno, node.args[0]))
    return calls


def test_every_increment_names_a_counter_member() -> None:
    """A plain string key (the old way `render_subrequests` got lost) fails here, naming the place."""
    calls = _incr_calls()
    assert len(calls) >= 10  # the walk found the crawler's counters
    used = set()
    for where, line, arg in calls:
        ok = isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and arg.value.id == "Counter"
        assert ok, f"{where}:{line}: incr() must name a Counter member, got {ast.unparse(arg)}"
        assert arg.attr in Counter.__members__, f"{where}:{line}: no Counter.{arg.attr}"
        used.add(Counter[arg.attr])
    assert {Counter.RENDER_SUBREQUESTS, Counter.RENDER_REFUSED} <= used


def test_snapshot_lists_every_counter_and_restore_round_trips() -> None:
    """stats.json carries each member (zero or not), and a resume restores each one."""
    stats = Stats()
    for i, name in enumerate(Counter):
        stats.incr(name, i + 1)
    snap = stats.snapshot()
    assert {name.value: snap[name.value] for name in Counter} == {n.value: i + 1 for i, n in enumerate(Counter)}
    again = Stats()
    again.restore(snap)
    assert again.snapshot()["render_subrequests"] == snap["render_subrequests"] > 0
    assert all(again.c[name] == stats.c[name] for name in Counter)
