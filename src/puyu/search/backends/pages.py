"""Reading a web page: fetched with httpx (bounded size and time), reduced to its readable text.

trafilatura (the `data` extra) extracts the main text where it is installed; otherwise the page's visible text
is kept, with scripts, styles and navigation dropped.
"""

from __future__ import annotations

from html.parser import HTMLParser

import httpx

from puyu.errors import one_line
from puyu.search.backends.base import BackendError

MAX_PAGE_BYTES = 2_000_000
_SKIPPED = {"script", "style", "noscript", "nav", "header", "footer", "svg", "template", "head"}
_BLOCKS = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "pre"}


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED and self.skipping:
            self.skipping -= 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML page (trafilatura's main-text extraction when installed)."""
    try:
        import trafilatura
    except ImportError:
        trafilatura = None
    if trafilatura is not None:
        extracted = trafilatura.extract(html, include_comments=False, include_tables=True)
        if extracted:
            return extracted
    parser = _VisibleText()
    parser.feed(html)
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


async def fetch_page(client: httpx.AsyncClient, url: str) -> str:
    """The readable text at `url` (http/https only; at most `MAX_PAGE_BYTES` read)."""
    if not url.startswith(("http://", "https://")):
        raise BackendError(f"{url[:80]}: only http(s) pages are read")
    try:
        async with client.stream("GET", url, follow_redirects=True) as response:
            if response.status_code >= 400:
                raise BackendError(f"{url[:80]}: HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= MAX_PAGE_BYTES:
                    break
            kind = response.headers.get("content-type", "")
            encoding = response.encoding or "utf-8"
    except httpx.HTTPError as exc:
        raise BackendError(f"{url[:80]}: {one_line(exc)}") from exc
    text = bytes(body).decode(encoding, errors="replace")
    if "html" in kind or text.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        return html_to_text(text)
    if kind.startswith("text/") or not kind:
        return text
    raise BackendError(f"{url[:80]}: cannot read {kind.split(';')[0]} pages")
