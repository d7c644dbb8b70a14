"""Documents that contain blocked words or phrases (adult content, gambling spam, a project's own list)."""

from __future__ import annotations

from pathlib import Path

from puyu.data.document import Document
from puyu.data.filters.config import BlocklistConfig
from puyu.data.filters.lists import compile_terms
from puyu.errors import PuyuError, one_line

# Matched terms quoted in a reason, so a report shows what triggered without listing a whole page.
SHOWN_TERMS = 3


def read_term_file(path: str | Path) -> list[str]:
    """Terms from a UTF-8 text file: one per line; blank lines and lines starting with '#' are skipped.

    Args:
        path: the file.

    Raises:
        PuyuError: the file is missing, unreadable or not UTF-8.
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as bad:
        raise PuyuError(f"{file}: cannot read the blocklist ({one_line(bad)})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as bad:
        raise PuyuError(f"{file}: blocklist is not UTF-8 text (invalid utf-8 at byte {bad.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


class BlocklistFilter:
    """Removes a document with more than `max_hits` occurrences of blocked terms."""

    name = "blocklist"

    def __init__(self, config: BlocklistConfig) -> None:
        terms = list(config.words)
        if config.file is not None:
            terms += read_term_file(config.file)
        self.pattern = compile_terms(terms)
        self.terms = sorted({t.strip().lower() for t in terms if t.strip()})
        self.max_hits = config.max_hits

    def __call__(self, doc: Document) -> str | None:
        if self.pattern is None:
            return None
        # Plain substring tests are ~10x faster than the bounded regex and rule out almost every document.
        lowered = doc.text.lower()
        if not any(term in lowered for term in self.terms):
            return None
        hits: list[str] = []
        for match in self.pattern.finditer(doc.text):
            hits.append(match.group(0).lower())
            if len(hits) > self.max_hits:
                break
        if len(hits) <= self.max_hits:
            return None
        shown = ", ".join(dict.fromkeys(hits[:SHOWN_TERMS]))
        return f"blocked terms: more than {self.max_hits} ({shown})"
