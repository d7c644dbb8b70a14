"""Files that are one document each: plain text and Markdown, HTML pages, PDF files."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path

from ...errors import one_line
from ..document import Document, Tally
from .streams import decode_utf8

_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
# GB2312 pages routinely hold GBK characters; GB18030 decodes all of them.
_WIDER_CODEC = {"gb2312": "gb18030", "gbk": "gb18030", "euc_cn": "gb18030", "iso8859-1": "cp1252"}
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


def _plain_page_text(html: str) -> tuple[str, str | None]:
    """Text and title of a page by parsing it and dropping the markup: the fallback to trafilatura."""
    from lxml import etree
    from lxml import html as lxml_html

    try:
        # Bytes, not str: lxml refuses str input that carries an XML encoding declaration.
        root = lxml_html.document_fromstring(
            html.encode("utf-8"), parser=lxml_html.HTMLParser(encoding="utf-8", remove_comments=True)
        )
    except (etree.ParserError, ValueError):
        return "", None
    title = root.findtext(".//title")
    for element in list(root.iter(*_NOT_CONTENT, "title")):
        element.drop_tree()
    for element in root.iter(*_BLOCKS):
        element.tail = "\n" + (element.tail or "")
    lines = (" ".join(line.split()) for line in root.text_content().splitlines())
    title = " ".join(title.split()) if title else None
    return "\n".join(line for line in lines if line), title or None


def html_text(html: str) -> tuple[str, str | None]:
    """(main text, title) of an HTML page: trafilatura's extraction, or the page's plain text when that is empty."""
    import trafilatura

    text, title = "", None
    try:
        result = trafilatura.bare_extraction(html, with_metadata=True, include_comments=False)
    except Exception:  # a third-party parser on untrusted markup: any failure falls back to plain parsing
        result = None
    if result is not None:
        text, title = result.text or "", result.title or None
    if not text.strip():
        text, plain_title = _plain_page_text(html)
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
