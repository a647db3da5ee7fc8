"""Shared test helpers: run the real `crawler` command in a subprocess and read its output."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent


def crawler_cmd(*args: str) -> list[str]:
    """The argv that runs this checkout's crawler with the current interpreter."""
    return [sys.executable, "-m", "crawler", *args]


def run_crawler(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `crawler ARGS...` to completion and return the finished process (output captured)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        crawler_cmd(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start_crawler(*args: str, log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `crawler ARGS...` in the background, output going to `log`; `env` adds environment variables."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    with open(log, "ab") as fh:
        return subprocess.Popen(crawler_cmd(*args), cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of an output file."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def page_key(url: str) -> str:
    """`http://h0.test:1234/p3.html` → `h0.test/p3.html` (the test web's port-free keys)."""
    parts = urlsplit(url)
    return f"{parts.hostname}{parts.path}" + (f"?{parts.query}" if parts.query else "")


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """A fresh output folder for one crawl."""
    return tmp_path / "out"
