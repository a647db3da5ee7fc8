"""Page analysis: extract fields and links from an HTML response, then SimHash near-dup detection."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, NamedTuple

from crawler.core.errors import CrawlError, ErrorType
from crawler.core.record import Record
from crawler.core.urlnorm import ParamStripper, normalize
from crawler.extract.charset import decode_html
from crawler.extract.html import PARSERS, Parser, extract, scan_links_fallback
from crawler.extract.neardup import MIN_NEARDUP_TEXT, NearDupChecker, format_simhash, simhash64
from crawler.extract.sniff import looks_like_html
from crawler.fetch.http import Response
from crawler.ingest.admit import Ingest

if TYPE_CHECKING:  # the browser stack (Playwright) loads only when a crawl renders
    from crawler.render.renderer import Renderer
    from crawler.render.types import SubFetch


class Analysis(NamedTuple):
    """What analyzing a page gave besides the record's fields."""

    error: CrawlError | None
    links: list[str]  # to follow
    dom: str | None = None  # the rendered DOM, when a browser rendered the page


class PageAnalyzer:
    """Fills a record's page fields and decides which links to follow."""

    def __init__(
        self,
        ingest: Ingest,
        neardup: NearDupChecker,
        *,
        product_token: str,
        max_outlinks: int,
        follow_near_duplicates: bool,
        renderer: Renderer | None = None,
    ) -> None:
        self.ingest = ingest
        self.neardup = neardup
        self.token = product_token.lower()
        self.max_outlinks = max_outlinks
        self.follow_near_duplicates = follow_near_duplicates
        self.renderer = renderer
        self.parsers: tuple[Parser, ...] = PARSERS  # tried in order on the same body (the parse_error row)

    async def analyze(
        self,
        rec: Record,
        resp: Response,
        final_url: str,
        *,
        host: str = "",
        render_mode: str = "never",
        fetch_sub: SubFetch | None = None,
        max_outlinks: int | None = None,
        follow_near_duplicates: bool | None = None,
    ) -> Analysis:
        """Fill `rec` from an HTML body; returns the error, links to follow and rendered DOM. Non-HTML is
        left unparsed.

        `max_outlinks` and `follow_near_duplicates` are the host's settings (None: the crawl's defaults).
        """
        cap = self.max_outlinks if max_outlinks is None else max_outlinks
        follow_dups = self.follow_near_duplicates if follow_near_duplicates is None else follow_near_duplicates
        body = resp.body
        ctype = resp.content_type
        if resp.charset:
            ctype = f"{ctype or 'text/html'}; charset={resp.charset}"
        if not looks_like_html(body, ctype):
            return Analysis(None, [])
        html = decode_html(body, ctype)
        try:
            page = extract(html, self.token, self.parsers)
        except Exception as exc:  # every parser failed (or a bug): it must cost one page, never the worker
            links, cut = self.ingest.page_links(scan_links_fallback(html), final_url, cap)
            self._count_cut(rec, cut)
            rec.links = links
            rec.links_followed = True
            return Analysis(CrawlError(ErrorType.PARSE_ERROR, f"{type(exc).__name__}: {exc}"), links)
        dom = None
        if self.renderer is not None and fetch_sub is not None:
            decision = self.renderer.decide(host, render_mode, html, page)
            rec.render_reason = decision.reason
            if decision.render:
                result = await self.renderer.render(
                    final_url,
                    host,
                    body=body,
                    content_type=resp.content_type or "text/html",
                    before=page,
                    fetch_sub=fetch_sub,
                )
                if result is not None:
                    page, dom = result
                    rec.rendered = True
        base = final_url
        if page.base_href:
            with contextlib.suppress(CrawlError):
                base = normalize(page.base_href, final_url)
        links, cut = self.ingest.page_links(page.links, base, cap)
        self._count_cut(rec, cut)
        canonical = _canonical(page.canonical, base, self.ingest.strip)
        fp = simhash64(page.text)
        dup: str | None = None
        if len(page.text) >= MIN_NEARDUP_TEXT:
            dup = await self.neardup.check(fp, rec.url)
        meta_robots = _merge_robots(page.meta_robots, resp.headers.get("x-robots-tag"), self.token)
        directives = {d.strip() for d in meta_robots.split(",")} if meta_robots else set()
        nofollow = page.nofollow or "nofollow" in directives
        # Near-duplicate detection is about content, not discovery: a mirrored copy's links may lead to
        # unique pages, so they are followed unless the host turned that off (the flag stays in the record).
        follow = not nofollow and (dup is None or follow_dups)
        rec.title = page.title
        rec.description = page.description
        rec.canonical = canonical
        rec.meta_robots = meta_robots
        rec.links = links
        rec.links_followed = follow
        rec.simhash = format_simhash(fp)
        rec.text_chars = len(page.text)
        rec.near_duplicate_of = dup
        return Analysis(None, links if follow else [], dom)

    def _count_cut(self, rec: Record, cut: int) -> None:
        """Distinct URLs `max_outlinks` cut from the page: in the record and in stats (every drop is counted)."""
        rec.links_cut = cut
        if cut:
            self.ingest.stats.skip("max_outlinks", cut)


def _canonical(href: str | None, base: str, strip: ParamStripper) -> str | None:
    """The page's canonical as an absolute normalized http(s) URL, or None.

    A canonical is a URL other tools compare and join on: a `file:`, `javascript:` or `mailto:` value, or
    one that does not parse, is no canonical address of a web page, so it is dropped rather than stored raw.
    """
    if not href:
        return None
    try:
        return normalize(href, base, strip)
    except CrawlError:
        return None


def _merge_robots(meta: str | None, header: str | None, token: str) -> str | None:
    """Meta robots plus the X-Robots-Tag header's directives for all agents or our token."""
    if not header:
        return meta
    found = [d.strip() for d in (meta or "").split(",") if d.strip()]
    for part in header.split(","):
        part = part.strip().lower()
        agent, sep, rest = part.partition(":")
        if sep and agent.strip() not in {
            "noindex",
            "nofollow",
            "none",
            "all",
            "noarchive",
            "nosnippet",
            "unavailable_after",
            "max-snippet",
            "max-image-preview",
            "max-video-preview",
            "noimageindex",
            "notranslate",
        }:
            if agent.strip() != token:
                continue
            part = rest.strip()
        if part == "none":
            found += ["noindex", "nofollow"]
        elif part:
            found.append(part)
    return ", ".join(dict.fromkeys(found)) or None
