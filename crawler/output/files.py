"""Small files a crawl keeps beside its record log (`stats.json`), replaced atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` so a reader never sees a half-written file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)
