"""RenderPolicy: each auto-mode heuristic, modes, per-host learning, and cost on hostile markup."""

from __future__ import annotations

import time

import pytest

from crawler.extract.html import Page, extract
from crawler.render.policy import RenderDecision, RenderPolicy, render_gain

PROSE = " ".join(f"Sentence number {i} about rivers, stones and lanterns." for i in range(40))
LINKS = "".join(f'<li><a href="/p{i}.html">page {i}</a></li>' for i in range(10))


def doc(head: str = "", body: str = "") -> str:
    """A small HTML document."""
    return f"<!doctype html><html><head><title>t</title>{head}</head><body>{body}</body></html>"


def decide(
    html: str, *, mode: str = "auto", host: str = "a.test", policy: RenderPolicy | None = None
) -> RenderDecision:
    """Run the policy the way the crawler does: on the HTML and its parsed Page."""
    return (policy or RenderPolicy()).decide(host, mode, html, extract(html))


STATIC = doc(body=f"<h1>Static</h1><p>{PROSE}</p><ul>{LINKS}</ul>")
STATIC_WITH_ANALYTICS = doc(head='<script async src="/analytics.js"></script>', body=f"<p>{PROSE}</p><ul>{LINKS}</ul>")


def test_plain_static_page_is_not_rendered() -> None:
    assert decide(STATIC) == RenderDecision(False, "plain")
    # A content page that merely carries an analytics script is not a JS page either.
    assert decide(STATIC_WITH_ANALYTICS) == RenderDecision(False, "plain")


@pytest.mark.parametrize(
    "body",
    [
        '<div id="root"></div>',
        "<div id=app>\n  </div>",
        "<div class='x' id='__next'></div>",
        "<app-root></app-root>",
        '<main data-reactroot=""></main>',
    ],
)
def test_empty_app_root_renders(body: str) -> None:
    html = doc(body=body + '<script src="/bundle.js"></script>')
    assert decide(html) == RenderDecision(True, "app-root")


def test_filled_app_root_is_not_an_app_root() -> None:
    html = doc(body=f'<div id="root"><p>{PROSE}</p><ul>{LINKS}</ul></div><script src="/b.js"></script>')
    assert decide(html) == RenderDecision(False, "plain")
    # `app-shell` is not `app`: the id must match whole.
    html = doc(body=f'<div id="app-shell"></div><p>{PROSE}</p><ul>{LINKS}</ul><script src="/b.js"></script>')
    assert decide(html) == RenderDecision(False, "plain")


def test_angular_ng_app_with_templates_renders() -> None:
    html = doc(
        body=f'<div ng-app="shop"><p>{PROSE}</p><p>{{{{ item.name }}}}</p><ul>{LINKS}</ul></div><script></script>'
    )
    assert decide(html) == RenderDecision(True, "app-root")
    rendered_server_side = doc(body=f'<div ng-app="shop"><p>{PROSE}</p><ul>{LINKS}</ul></div><script></script>')
    assert decide(rendered_server_side) == RenderDecision(False, "plain")


@pytest.mark.parametrize(
    "message",
    [
        "You need to enable JavaScript to run this app.",
        "Please turn on your JavaScript.",
        "JavaScript is required to view this site",
        "This site requires JavaScript.",
    ],
)
def test_noscript_asking_for_javascript_renders(message: str) -> None:
    html = doc(body=f"<noscript>{message}</noscript><p>{PROSE}</p><ul>{LINKS}</ul><script src='/a.js'></script>")
    assert decide(html) == RenderDecision(True, "noscript-enable-js")


def test_a_page_rich_in_links_and_text_is_not_rendered_for_its_noscript() -> None:
    """A Sphinx search page: a <noscript> asking for JavaScript, but plenty of static links and text."""
    nav = "".join(f'<li><a href="/doc/p{i}.html">chapter {i}</a></li>' for i in range(40))
    html = doc(
        head='<script src="/_static/searchtools.js"></script>',
        body=f"<noscript>Please activate JavaScript to enable the search functionality.</noscript>"
        f"<p>{PROSE}</p><ul>{nav}</ul>",
    )
    assert decide(html) == RenderDecision(False, "static-rich")
    # The same page with only a few links still renders: its scripts may build the rest.
    few = doc(body=f"<noscript>Please activate JavaScript.</noscript><p>{PROSE}</p><ul>{LINKS}</ul><script></script>")
    assert decide(few) == RenderDecision(True, "noscript-enable-js")
    # An empty app root is still an app, however rich its static fallback.
    app = doc(body=f'<div id="root"></div><p>{PROSE}</p><ul>{nav}</ul><script src="/bundle.js"></script>')
    assert decide(app) == RenderDecision(True, "app-root")


def test_noscript_with_a_tracking_pixel_does_not_render() -> None:
    html = doc(body=f'<noscript><img src="/pixel.gif"></noscript><p>{PROSE}</p><ul>{LINKS}</ul><script></script>')
    assert decide(html) == RenderDecision(False, "plain")


def test_low_text_with_scripts_renders() -> None:
    html = doc(body=f'<p>Loading…</p><ul>{LINKS}</ul><script src="/a.js"></script>')
    assert decide(html) == RenderDecision(True, "low-text-ratio")
    # Enough text in absolute terms, but a sliver of a page bloated with inline script.
    bloated = doc(body=f"<p>{PROSE}</p><ul>{LINKS}</ul><script>var state = {'x' * 200_000!r};</script>")
    assert decide(bloated) == RenderDecision(True, "low-text-ratio")
    # The same little text without any script cannot change by rendering.
    assert decide(doc(body=f"<p>Loading…</p><ul>{LINKS}</ul>")) == RenderDecision(False, "plain")


def test_links_built_by_script_render() -> None:
    inline = doc(
        body=f"<p>{PROSE}</p><nav id='n'></nav><script>"
        "for (const p of ['/a', '/b']) { const a = document.createElement('a'); a.href = p; n.append(a); }"
        "</script>"
    )
    assert extract(inline).links == []
    assert decide(inline) == RenderDecision(True, "script-links")
    fetched = doc(body=f"<p>{PROSE}</p><script>fetch('/api/nav').then(r => r.json())</script>")
    assert decide(fetched) == RenderDecision(True, "script-links")
    markup = doc(body=f"""<p>{PROSE}</p><script>nav.innerHTML = '<a href="/x">x</a>';</script>""")
    assert decide(markup) == RenderDecision(True, "script-links")
    external = doc(body=f'<p>{PROSE}</p><script src="/menu.js"></script>')
    assert decide(external) == RenderDecision(True, "script-links")
    # Real links already present: script hints alone do not trigger.
    with_links = doc(body=f"<p>{PROSE}</p><ul>{LINKS}</ul><script>fetch('/api/like')</script>")
    assert decide(with_links) == RenderDecision(False, "plain")


def test_modes_override_heuristics() -> None:
    assert decide(STATIC, mode="always") == RenderDecision(True, "always")
    assert decide(doc(body='<div id="root"></div><script></script>'), mode="never") == RenderDecision(False, "never")
    with pytest.raises(ValueError, match="render mode"):
        decide(STATIC, mode="sometimes")


def test_learning_stops_rendering_a_host_where_it_finds_nothing() -> None:
    policy = RenderPolicy(learn_after=3)
    spa = doc(body='<div id="root"></div><script src="/b.js"></script>')
    for _ in range(2):
        policy.learn("dull.test", new_links=0, new_text_chars=10)
    assert decide(spa, host="dull.test", policy=policy) == RenderDecision(True, "app-root")
    policy.learn("dull.test", new_links=0, new_text_chars=150)  # under min_text_chars: nothing new
    assert decide(spa, host="dull.test", policy=policy) == RenderDecision(False, "host-learned-useless")
    assert decide(spa, host="other.test", policy=policy) == RenderDecision(True, "app-root")
    assert decide(spa, host="dull.test", mode="always", policy=policy) == RenderDecision(True, "always")


def test_learning_renders_every_page_of_a_host_where_it_pays() -> None:
    policy = RenderPolicy(learn_after=5)
    for i in range(5):
        # 4 of 5 renders found more: enough to render the host's plain-looking pages too.
        policy.learn("spa.test", new_links=3 if i else 0, new_text_chars=0)
    assert decide(STATIC, host="spa.test", policy=policy) == RenderDecision(True, "host-learned")
    assert decide(STATIC, host="a.test", policy=policy) == RenderDecision(False, "plain")
    # Later renders finding nothing make it change its mind (only the last `learn_after` count).
    for _ in range(5):
        policy.learn("spa.test", new_links=0, new_text_chars=0)
    assert decide(STATIC, host="spa.test", policy=policy) == RenderDecision(False, "host-learned-useless")


def test_mixed_results_leave_it_to_the_heuristics() -> None:
    policy = RenderPolicy(learn_after=4)
    for i in range(4):
        policy.learn("mixed.test", new_links=i % 2, new_text_chars=0)
    assert decide(STATIC, host="mixed.test", policy=policy) == RenderDecision(False, "plain")


def test_render_gain_counts_new_links_and_text() -> None:
    before = Page(links=["/a", "/b"], text="short")
    after = Page(links=["/a", "/b", "/c", "/d"], text="short and then much longer")
    assert render_gain(before, after) == (2, len(after.text) - len(before.text))
    assert render_gain(after, before) == (0, 0)


def test_heuristics_stay_cheap_on_hostile_markup() -> None:
    policy = RenderPolicy()
    hostile = [
        "<script>" + "<div id=root " * 50_000,
        "<script>" + "<noscript>" * 50_000,
        "<script " + "<" * 300_000,
        "<script>" + " ng-app" * 50_000 + "x" * 100_000,
    ]
    page = Page(text="")
    started = time.perf_counter()
    for html in hostile:
        assert policy.decide("h.test", "auto", html, page).render
    assert time.perf_counter() - started < 1.0


def test_an_app_root_after_a_rejected_id_in_the_same_tag_is_found() -> None:
    """`data-testid="root"` ends in `id="root"` but is not an id; the real `id="app"` after it still counts."""
    for attrs in ('data-testid="root" id="app"', "xid=root id=root", 'data-reactroot-x="1" data-reactroot'):
        html = doc(body=f"<div {attrs}></div><script src='/b.js'></script><p>{PROSE}</p><ul>{LINKS * 3}</ul>")
        assert decide(html) == RenderDecision(True, "app-root"), attrs
