"""The files a knowledge base reads: puyu's data readers, Office files (docx, pptx, xlsx) and source code.

Bad input is counted, never fatal: an empty, corrupt or unreadable file is a problem in the tally and the
build goes on with the others.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..data.document import Document, Tally
from ..data.readers import SUPPORTED_SUFFIXES, read_documents, suffix_of
from ..errors import PuyuError, one_line
from .chunking import CODE_SUFFIXES

OFFICE_SUFFIXES = (".docx", ".pptx", ".xlsx")
KB_SUFFIXES: tuple[str, ...] = (*SUPPORTED_SUFFIXES, *OFFICE_SUFFIXES, *sorted(CODE_SUFFIXES))


def kb_suffix(path: Path) -> str | None:
    """The suffix that picks the reader of `path`, or None when no reader handles it."""
    name = path.name.lower()
    own = next((s for s in (*OFFICE_SUFFIXES, *CODE_SUFFIXES) if name.endswith(s) and len(name) > len(s)), None)
    return own or suffix_of(path)


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes: what decides whether a file changed since the last build."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_files(inputs: Sequence[str | os.PathLike[str]], tally: Tally) -> list[Path]:
    """The readable files named by files and folders (searched recursively; hidden entries skipped).

    Raises:
        PuyuError: an input that does not exist, or a file named directly that no reader handles.
    """
    if not inputs:
        raise PuyuError("no documents given: name files or folders")
    found: dict[str, Path] = {}
    for entry in inputs:
        path = Path(entry)
        if path.is_file():
            if kb_suffix(path) is None:
                raise PuyuError(f"{path}: unsupported file type (supported: {', '.join(KB_SUFFIXES)})")
            found.setdefault(os.path.realpath(path), path)
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                if not child.is_file() or any(part.startswith(".") for part in child.relative_to(path).parts):
                    continue
                if kb_suffix(child) is None:
                    tally.problem(str(child), None, f"unknown extension: {child.name}")
                else:
                    found.setdefault(os.path.realpath(child), child)
        else:
            raise PuyuError(f"{path}: no such file or folder")
    return sorted(found.values(), key=str)


def _office_text(path: Path, suffix: str) -> str:
    if suffix == ".docx":
        import docx

        document = docx.Document(str(path))
        parts = [paragraph.text for paragraph in document.paragraphs]
        for table in document.tables:
            parts.extend(" | ".join(cell.text for cell in row.cells) for row in table.rows)
        return "\n\n".join(part for part in parts if part.strip())
    if suffix == ".pptx":
        import pptx

        slides = []
        for number, slide in enumerate(pptx.Presentation(str(path)).slides, start=1):
            texts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]
            slides.append(f"Slide {number}\n" + "\n".join(t for t in texts if t.strip()))
        return "\n\n".join(slides)
    import openpyxl

    book = openpyxl.load_workbook(str(path), read_only=True, data_only=True)
    try:
        sheets = []
        for sheet in book.worksheets:
            rows = (" | ".join("" if v is None else str(v) for v in row) for row in sheet.iter_rows(values_only=True))
            sheets.append(f"Sheet {sheet.title}\n" + "\n".join(r for r in rows if r.strip(" |")))
        return "\n\n".join(sheets)
    finally:
        book.close()


def read_file(path: Path, tally: Tally) -> Iterator[Document]:
    """The documents of one file (one for most formats; one per line or row of JSON Lines and CSV)."""
    source = str(path)
    suffix = kb_suffix(path)
    if suffix in OFFICE_SUFFIXES:
        if path.stat().st_size == 0:
            tally.problem(source, None, "empty file")
            return
        try:
            text = _office_text(path, suffix)
        except Exception as exc:  # python-docx/pptx/openpyxl raise many types on damaged files
            tally.problem(source, None, f"unreadable {suffix[1:]}: {one_line(exc)}")
            return
        if not text.strip():
            tally.problem(source, None, "no text: the file has no readable text")
            return
        tally.count("read", "ok", text)
        yield Document(text=text, id=source, source=source)
    elif suffix in CODE_SUFFIXES:
        data = path.read_bytes()
        if not data.strip():
            tally.problem(source, None, "empty file")
            return
        text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        tally.count("read", "ok", text)
        yield Document(text=text, id=source, source=source)
    else:
        yield from read_documents(path, tally)
