"""Finding a Chromium to drive: Playwright's own build if installed, a configured path, or the system's."""

from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["SYSTEM_BROWSERS", "choose_browser", "find_browser"]

SYSTEM_BROWSERS: tuple[str, ...] = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def _playwright_chromium_sync() -> str | None:
    """Playwright's own Chromium path, asked of a short-lived driver in a thread (no running loop there)."""
    found: list[str | None] = [None]

    def ask() -> None:
        from playwright.sync_api import sync_playwright

        with contextlib.suppress(Exception), sync_playwright() as pw:
            found[0] = pw.chromium.executable_path

    thread = threading.Thread(target=ask, name="find-browser", daemon=True)
    thread.start()
    thread.join(30)
    return found[0]


_OWN_CHROMIUM: list[str | None] = []


def choose_browser(own: str | None, configured: str | None, fallbacks: bool) -> str | None:
    """The first executable among `own` (Playwright's), `configured` and SYSTEM_BROWSERS; None if none is.

    Without `fallbacks` only `configured` is considered.
    """
    candidates = [own, configured, *SYSTEM_BROWSERS] if fallbacks else [configured]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def find_browser(configured: str | None = None, *, fallbacks: bool = True) -> str | None:
    """Playwright's Chromium if installed, else `configured`, else a system Chromium; None if none exists.

    With `fallbacks=False` only `configured` is considered.
    """
    own = None
    if fallbacks:
        if not _OWN_CHROMIUM:
            _OWN_CHROMIUM.append(_playwright_chromium_sync())
        own = _OWN_CHROMIUM[0]
    return choose_browser(own, configured, fallbacks)
