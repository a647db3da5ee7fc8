"""The record schema is documented field by field, in README.md and docs/output.md, in the record's order."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from crawler.core.record import Record

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("doc", ["README.md", "docs/output.md"])
def test_every_record_field_is_documented_in_order(doc: str) -> None:
    rows = re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)? \|", (ROOT / doc).read_text(), re.MULTILINE)
    documented = [name for row in rows for name in row if name]
    names = [f.name for f in fields(Record)]
    found = [name for name in documented if name in names]
    assert sorted(set(found)) == sorted(names), set(names) - set(found)
    assert list(dict.fromkeys(found)) == names
