"""Seed lists: URLs from the command line and seed files, validated line by line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from crawler.core.errors import ConfigError, CrawlError, ErrorType
from crawler.core.urlnorm import normalize


@dataclass(frozen=True, slots=True)
class SeedProblem:
    """A seed that could not be used, with where it came from."""

    source: str  # "argument" or the file path
    line: int  # 1-based line number (argument position for arguments)
    text: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.source != "argument" else f"argument {self.line}"
        return f"{where}: {self.reason}: {self.text[:200]!r}"


@dataclass(frozen=True, slots=True)
class Seeds:
    """Valid, normalized, de-duplicated seed URLs plus the problems found."""

    urls: list[str]
    problems: list[SeedProblem]


def _check(text: str) -> str:
    # A seed must be absolute: a bare "example.com" is a common mistake worth a precise message.
    if "://" not in text:
        raise CrawlError(ErrorType.INVALID_URL, "not an absolute http(s) URL (missing scheme)")
    return normalize(text)


def read_seeds(args: Iterable[str], files: Iterable[Path | str]) -> Seeds:
    """Collect seeds from arguments and files; blank lines and `#` comments in files are ignored.

    Raises ConfigError when a seed file is missing or unreadable, or when no valid seed remains.
    """
    urls: dict[str, None] = {}
    problems: list[SeedProblem] = []
    for i, text in enumerate(args, 1):
        try:
            urls[_check(text.strip())] = None
        except CrawlError as exc:
            problems.append(SeedProblem("argument", i, text, exc.message))
    for path in files:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"seed file not found: {path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read seed file {path}: {exc.strerror}") from None
        for lineno, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            text = raw.strip().lstrip("\ufeff")
            if not text or text.startswith("#"):
                continue
            try:
                urls[_check(text)] = None
            except CrawlError as exc:
                problems.append(SeedProblem(str(path), lineno, text, exc.message))
    if not urls:
        detail = f" ({len(problems)} invalid)" if problems else ""
        raise ConfigError(f"no valid seed URL given{detail}")
    return Seeds(list(urls), problems)
