"""Files that are one document each: plain text and Markdown, HTML pages, PDF files."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ...errors import one_line
from ..document import Document, Tally
from .streams import decode_utf8

_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
# GB2312 pages routinely hold GBK characters; GB18030 decodes all of them.
_WIDER_CODEC = {"gb2312": "gb18030", "gbk": "gb18030", "euc_cn": "gb18030", "iso8859-1": "cp1252"}
# Deeper pages go to the plain fallback: trafilatura's cleaning drops text below about this many levels.
_DEEPEST_EXTRACTED = 255
# libxml2's HTML parser stops at this depth even with huge_tree; the rest of such a page is read as a stream.
_DEEPEST_PARSED = 2048
# Elements whose text is not page content.
_NOT_CONTENT = ("script", "style", "noscript", "template", "svg", "iframe")
# Elements that end a line of text in the plain fallback.
_BLOCKS = (
    "p", "div", "br", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
    "header", "footer", "blockquote", "pre", "ul", "ol", "dl", "dt", "dd", "table", "nav", "aside", "main",
    "figure", "figcaption", "form", "hr", "address",
)  # fmt: skip


def _universal_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text_file(path: Path, tally: Tally, text_field: str, id_field: str | None) -> Iterator[Document]:
    """A plain text or Markdown file as one document with id "<path>"."""
    source = str(path)
    data = path.read_bytes()
    if not data.strip():
        tally.problem(source, None, "empty file")
        return
    text = decode_utf8(data, tally, source, None).removeprefix("\ufeff")
    yield Document(text=_universal_newlines(text), id=source, source=source, meta={})


def _decode_html(data: bytes, tally: Tally, source: str) -> str:
    """Page text: UTF-8, else the charset the page declares, else UTF-8 with bad bytes replaced (a problem)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _CHARSET.search(data[:4096])
    if declared:
        try:
            codec = codecs.lookup(declared.group(1).decode("ascii")).name
            return data.decode(_WIDER_CODEC.get(codec, codec))
        except (LookupError, UnicodeDecodeError):
            pass
    return decode_utf8(data, tally, source, None)


def _parse_page(html: str) -> Any | None:
    """The page's lxml tree, any depth (None when there is nothing to parse)."""
    from lxml import etree
    from lxml import html as lxml_html

    try:
        # Bytes, not str: lxml refuses str input that carries an XML encoding declaration. huge_tree lifts
        # libxml2's nesting limit (256), past which the text of deeper elements is silently dropped.
        parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=True, huge_tree=True)
        return lxml_html.document_fromstring(html.encode("utf-8"), parser=parser)
    except (etree.ParserError, ValueError):
        return None


def _depth(root: Any) -> int:
    """How deep the tree nests (iteratively: a hostile page may nest thousands of levels)."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in element)
    return deepest


def _plain_page_text(root: Any) -> tuple[str, str | None]:
    """Text and title of a parsed page with the markup dropped: the fallback to trafilatura."""
    title = root.findtext(".//title")
    for element in list(root.iter(*_NOT_CONTENT, "title")):
        element.drop_tree()
    for element in root.iter(*_BLOCKS):
        element.tail = "\n" + (element.tail or "")
    lines = (" ".join(line.split()) for line in root.text_content().splitlines())
    title = " ".join(title.split()) if title else None
    return "\n".join(line for line in lines if line), title or None


class _TextCollector(HTMLParser):
    """Text outside `_NOT_CONTENT` elements, block elements ending lines; no tree, so no depth limit."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self.skipping = 0
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in _NOT_CONTENT:
            self.skipping += 1
        elif tag == "title":
            self.in_title = True
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _NOT_CONTENT:
            self.skipping = max(0, self.skipping - 1)
        elif tag == "title":
            self.in_title = False
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.skipping:
            self.parts.append(data)


def _streamed_text(html: str) -> tuple[str, str | None]:
    """Text and title of a page read as a stream of tags (for pages nested past what libxml2 reads)."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    lines = (" ".join(line.split()) for line in "".join(collector.parts).splitlines())
    title = " ".join("".join(collector.title).split())
    return "\n".join(line for line in lines if line), title or None


def html_text(html: str) -> tuple[str, str | None]:
    """(main text, title) of an HTML page: trafilatura's extraction, or the page's plain text when that is
    empty or the page nests deeper than trafilatura's cleaning keeps (`_DEEPEST_EXTRACTED` levels)."""
    import trafilatura

    root = _parse_page(html)
    if root is None:
        return "", None
    depth = _depth(root)
    if depth >= _DEEPEST_PARSED:  # libxml2 stopped reading there: take the text without building a tree
        return _streamed_text(html)
    if depth > _DEEPEST_EXTRACTED:
        return _plain_page_text(root)
    text, title = "", None
    try:
        # The tree, not the markup: trafilatura's own parse would stop at libxml2's nesting limit.
        result = trafilatura.bare_extraction(root, with_metadata=True, include_comments=False)
    except Exception:  # a third-party parser on untrusted markup: any failure falls back to plain parsing
        result = None
    if result is not None:
        text, title = result.text or "", result.title or None
    if not text.strip():
        fresh = _parse_page(html)  # trafilatura prunes the tree it is given
        if fresh is not None:
            text, plain_title = _plain_page_text(fresh)
            title = title or plain_title
    return text, title


def read_html(path: Path, tally: Tally, text_field: str, id_field: str | None) -> Iterator[Document]:
    """An HTML page as one document: its main text, with the page title in meta["title"]."""
    source = str(path)
    data = path.read_bytes()
    if not data.strip():
        tally.problem(source, None, "empty file")
        return
    text, title = html_text(_decode_html(data, tally, source))
    if not text.strip():
        tally.problem(source, None, "no text: the page has no readable text")
        return
    yield Document(text=text, id=source, source=source, meta={"title": title} if title else {})


def read_pdf(path: Path, tally: Tally, text_field: str, id_field: str | None) -> Iterator[Document]:
    """A PDF file as one document: the text of its pages, joined by blank lines; meta has "pages" and "title"."""
    from pypdf import PdfReader

    source = str(path)
    if path.stat().st_size == 0:
        tally.problem(source, None, "empty file")
        return
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            tally.problem(source, None, "unreadable pdf: encrypted with a password")
            return
        pages = list(reader.pages)
        info = reader.metadata
        title = info.title if info is not None else None
    except Exception as exc:  # pypdf raises many types on damaged files; all mean the file cannot be read
        tally.problem(source, None, f"unreadable pdf: {one_line(exc)}")
        return
    texts = []
    for number, page in enumerate(pages, start=1):
        try:
            texts.append((page.extract_text() or "").strip())
        except Exception as exc:  # one damaged page does not lose the others
            tally.problem(source, number, f"unreadable pdf page: {one_line(exc)}")
    text = "\n\n".join(t for t in texts if t)
    if not text:
        tally.problem(source, None, "no text: the PDF has no text layer (scanned pages need OCR)")
        return
    meta: dict[str, object] = {"pages": len(pages)}
    if isinstance(title, str) and title.strip():
        meta["title"] = title.strip()
    yield Document(text=_universal_newlines(text), id=source, source=source, meta=meta)
