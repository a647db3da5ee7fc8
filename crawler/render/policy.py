"""When to render a page in the browser: mode, cheap heuristics on the HTTP-fetched page, per-host learning.

Modes: "never", "always", "auto" (default). In auto mode a page is rendered when scripts are present
(`<script` anywhere in the HTML) and any of these holds, checked in this order:

- "app-root": an empty single-page-app mount point: an element with `id="root|app|__next|__nuxt|
  ___gatsby|svelte"` holding only whitespace, an empty `<app-root>`, an empty element carrying
  `data-reactroot`, or an `ng-app` attribute while the page text is short (< `min_text_chars`) or
  shows raw `{{ }}` templates.
- (not a rule that renders: "static-rich") a page that already has at least `rich_links` (default 20)
  followable links and `rich_text_chars` (default 1,000) characters of visible text is not rendered by the
  rules below: a documentation page's search box asking for JavaScript must not start a browser.
- "noscript-enable-js": a `<noscript>` block telling the reader to enable / that it needs JavaScript.
- "script-links": the parsed page has no followable links, but the HTML holds script-built markup
  (`createElement('a')`, `.href =`, `<a href` inside a script, `fetch(`, `XMLHttpRequest`) or loads
  external scripts: a page with no links is a dead end unless its scripts build some.
- "low-text-ratio": visible text under `min_text_chars` (default 200) characters, or under
  `min_text_ratio` (default 2%) of the HTML's length.

Pages without scripts never render ("plain"), so static sites cost one substring search per page.

Learning: `learn()` records, after each render of a host, whether it found anything the HTTP page did
not have (a new link, or at least `min_text_chars` more text). Once the last `learn_after` renders of a
host all found nothing, that host stops rendering ("host-learned-useless"); once at least 80% of them
found something, every page of the host is rendered without consulting the heuristics
("host-learned"). "never" and "always" override learning.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from crawler.extract.html import Page

__all__ = ["MODES", "RenderDecision", "RenderPolicy", "render_gain"]

MODES = ("never", "auto", "always")
#: A page with this many followable links and this much text is worth its HTTP copy: rendering it (a
#: browser start, its scripts fetched through the host's slot) rarely finds more than it costs.
RICH_LINKS = 20
RICH_TEXT_CHARS = 1000
STATIC_RICH = "static-rich"
_USEFUL_SHARE = 0.8
_MAX_HOSTS = 100_000  # learning state is per host; bound it for long crawls

# The scans run on the lower-cased page with case-sensitive patterns that each begin with a literal, so
# the regex engine jumps between candidates with a substring search. (An IGNORECASE pattern, or one that
# begins with \b or a class, is tried at every position: 2–3 ms on a 23 KB page, more than parsing it.)
# Repeats are bounded, so hostile markup (thousands of unclosed tags) cannot make a scan quadratic.
_SCRIPT = "<script"
_EXTERNAL_SCRIPT = re.compile(r"<script\b[^<>]{0,1000}?\bsrc\s*=")
_ROOT_ID = re.compile(
    r"""id\s*=\s*(?P<q>["']?)(?:root|app|__next|__nuxt|___gatsby|svelte)(?P=q)(?=[\s/>])[^<>]{0,500}>\s*</"""
)
_APP_ROOT = re.compile(r"<app-root\b[^<>]{0,500}>\s*</app-root>")
_REACT_ROOT = re.compile(r"data-reactroot\b[^<>]{0,500}>\s*</")
_NG_APP = re.compile(r"ng-app\b")
_NOSCRIPT_OPEN = re.compile(r"<noscript\b[^<>]{0,500}>")
_NOSCRIPT_BLOCKS = 16  # real pages have one or two; more is noise, or an attack on this scan
_NOSCRIPT_CHARS = 4000
_ENABLE_JS = re.compile(
    r"(?:enable|turn on|activate|allow)\w*\s+(?:\w+\s+){0,3}?javascript"
    r"|javascript\s+(?:\w+\s+){0,2}?(?:is\s+)?(?:required|disabled|needed|must be enabled)"
    r"|(?:needs?|requires?)\s+javascript"
)
_SPACE_OR_QUOTE = frozenset(" \t\n\r\f\"'")
_SCRIPT_LINK_HINTS = (
    "createElement('a')",
    'createElement("a")',
    "createElement(`a`)",
    ".href =",
    ".href=",
    "<a href",
    "fetch(",
    "XMLHttpRequest",
)


@dataclass(slots=True, frozen=True)
class RenderDecision:
    """Whether to render, and the rule that decided (for logs and stats)."""

    render: bool
    reason: str


def render_gain(before: Page, after: Page) -> tuple[int, int]:
    """(links in `after` not in `before`, extra visible text characters) — the input `learn` wants."""
    known = set(before.links)
    new_links = sum(1 for link in after.links if link not in known)
    return new_links, max(0, len(after.text) - len(before.text))


def _noscript_asks_for_js(low: str) -> bool:
    for n, m in enumerate(_NOSCRIPT_OPEN.finditer(low)):
        if n >= _NOSCRIPT_BLOCKS:
            break
        block = low[m.end() : m.end() + _NOSCRIPT_CHARS]
        end = block.find("</noscript")
        if _ENABLE_JS.search(block if end < 0 else block[:end]) is not None:
            return True
    return False


def _bounded_match(pattern: re.Pattern[str], low: str, ok: Callable[[int], bool]) -> bool:
    """A match of `pattern` whose start passes `ok`; a rejected match is retried one character later, so
    it cannot hide a later match it overlaps (`data-testid="root" id="app"`)."""
    m = pattern.search(low)
    while m is not None:
        if ok(m.start()):
            return True
        m = pattern.search(low, m.start() + 1)
    return False


def _has_empty_root(low: str) -> bool:
    """An empty element with an app-root id (`id="root"`, `__next`, ...), `<app-root>` or `data-reactroot`."""

    def word_start(at: int) -> bool:  # \bid
        return at == 0 or not (low[at - 1].isalnum() or low[at - 1] == "_")

    if _bounded_match(_ROOT_ID, low, word_start):
        return True
    if _APP_ROOT.search(low) is not None:
        return True
    return _bounded_match(_REACT_ROOT, low, lambda at: at > 0 and low[at - 1].isspace())


def _has_ng_app(low: str) -> bool:
    """An `ng-app` / `data-ng-app` attribute (preceded by a space or a quote)."""
    for m in _NG_APP.finditer(low):
        at = m.start()
        if at >= 5 and low[at - 5 : at] == "data-":
            at -= 5
        if at > 0 and low[at - 1] in _SPACE_OR_QUOTE:
            return True
    return False


def _heuristic(html: str, page: Page, min_text_chars: int, min_text_ratio: float) -> str | None:
    """The first heuristic that asks for rendering, None for none, or STATIC_RICH."""
    low = html.lower()
    if _SCRIPT not in low:
        return None
    text_chars = len(page.text)
    if _has_empty_root(low):
        return "app-root"
    if _has_ng_app(low) and (text_chars < min_text_chars or "{{" in page.text):
        return "app-root"
    if len(page.links) >= RICH_LINKS and text_chars >= RICH_TEXT_CHARS:
        return STATIC_RICH
    if _noscript_asks_for_js(low):
        return "noscript-enable-js"
    if not page.links and (
        any(hint in html for hint in _SCRIPT_LINK_HINTS) or _EXTERNAL_SCRIPT.search(low) is not None
    ):
        return "script-links"
    if text_chars < min_text_chars or text_chars < min_text_ratio * len(html):
        return "low-text-ratio"
    return None


class RenderPolicy:
    """Decides per page whether to render, learning per host whether rendering pays off."""

    __slots__ = ("_history", "learn_after", "min_text_chars", "min_text_ratio")

    def __init__(self, *, min_text_chars: int = 200, min_text_ratio: float = 0.02, learn_after: int = 5) -> None:
        if learn_after < 1:
            raise ValueError("learn_after must be at least 1")
        self.min_text_chars = min_text_chars
        self.min_text_ratio = min_text_ratio
        self.learn_after = learn_after
        self._history: dict[str, deque[bool]] = {}

    def decide(self, host: str, mode: str, html: str, page: Page) -> RenderDecision:
        """Render this page? `page` is `extract(html)` of the HTTP-fetched body."""
        if mode == "never":
            return RenderDecision(False, "never")
        if mode == "always":
            return RenderDecision(True, "always")
        if mode != "auto":
            raise ValueError(f"render mode must be one of {', '.join(MODES)}, not {mode!r}")
        learned = self._verdict(host)
        if learned is not None:
            return learned
        reason = _heuristic(html, page, self.min_text_chars, self.min_text_ratio)
        if reason is None:
            return RenderDecision(False, "plain")
        return RenderDecision(reason != STATIC_RICH, reason)

    def learn(self, host: str, *, new_links: int, new_text_chars: int) -> None:
        """Record what a render of `host` found beyond the HTTP page (see `render_gain`)."""
        history = self._history.get(host)
        if history is None:
            if len(self._history) >= _MAX_HOSTS:
                # Forget the host learned about longest ago (dicts keep insertion order).
                del self._history[next(iter(self._history))]
            history = self._history[host] = deque(maxlen=self.learn_after)
        history.append(new_links > 0 or new_text_chars >= self.min_text_chars)

    def _verdict(self, host: str) -> RenderDecision | None:
        history = self._history.get(host)
        if history is None or len(history) < self.learn_after:
            return None
        useful = sum(history)
        if useful == 0:
            return RenderDecision(False, "host-learned-useless")
        if useful >= _USEFUL_SHARE * len(history):
            return RenderDecision(True, "host-learned")
        return None
