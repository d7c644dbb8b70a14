"""Read raw documents from files: text, Markdown, JSON Lines / JSON (plain, gzip, zstd), CSV, Parquet, HTML, PDF.

`expand_inputs` turns files, folders and globs into a sorted list of files; `read_documents` streams the
documents of one file, counting each in the tally under ("read", "ok") and each bad input as a problem.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import zstandard

from ...errors import one_line
from ..document import Document, Tally
from .inputs import SUPPORTED_SUFFIXES, expand_inputs, suffix_of
from .json_records import read_json, read_jsonl
from .streams import compression_of
from .tables import read_csv, read_parquet
from .whole_files import html_text, read_html, read_pdf, read_text_file

__all__ = ["SUPPORTED_SUFFIXES", "expand_inputs", "html_text", "read_documents", "suffix_of"]

Reader = Callable[[Path, Tally, str, str | None], Iterator[Document]]

_READERS: dict[str, Reader] = {
    ".txt": read_text_file,
    ".md": read_text_file,
    ".jsonl": read_jsonl,
    ".jsonl.gz": read_jsonl,
    ".jsonl.zst": read_jsonl,
    ".json": read_json,
    ".json.gz": read_json,
    ".json.zst": read_json,
    ".csv": read_csv,
    ".parquet": read_parquet,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
}


def read_documents(
    path: Path, tally: Tally, *, text_field: str = "text", id_field: str | None = None
) -> Iterator[Document]:
    """Stream the documents of one file, one at a time.

    Text and Markdown files, HTML pages and PDFs are one document each (id "<path>"). JSON Lines, CSV and
    Parquet give one document per line or row (id "<path>:<1-based line or row>"), a JSON file one per item
    of its top-level list. Bad input is counted in `tally.problems` and reading goes on: undecodable bytes
    (replaced by U+FFFD, the document is kept), malformed lines and records without text (skipped), empty
    or unreadable files, and truncated compressed files (the documents before the damage are kept).

    Args:
        path: the file; its name's suffix picks the reader (see `SUPPORTED_SUFFIXES`).
        tally: counts ("read", "ok") with the text's bytes for each document, and the problems.
        text_field: the record field or column holding the text; when it is "text" and a record has none,
            "content" is used.
        id_field: the record field or column holding the document id; records without it keep the default id.
    """
    path = Path(path)  # a str works too
    source = str(path)
    suffix = suffix_of(path)
    if suffix is None:
        tally.problem(source, None, f"unknown extension: {path.name}")
        return
    try:
        for doc in _READERS[suffix](path, tally, text_field, id_field):
            tally.count("read", "ok", doc.text)
            yield doc
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        tally.problem(source, None, f"unreadable {compression_of(path) or 'file'}: {one_line(exc)}")
