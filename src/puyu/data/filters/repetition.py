"""The Gopher repetition rules: repeated lines, paragraphs and n-grams (Rae et al. 2021, appendix A).

Lines and paragraphs are compared after stripping surrounding whitespace; blank ones are ignored. Character
fractions are taken of the whole text, as in datatrove's `GopherRepetitionFilter`.

N-grams are word n-grams for space-delimited text. For CJK text they are character n-grams with n scaled by
`cjk_chars_per_word` (1.7): the unscaled Gopher thresholds over characters removed a plain Chinese
municipal-news article (18% of characters in repeated 5-character grams, against 0% for its English
translation), while scaled character n-grams measured the same as jieba word n-grams on it at no cost.
"""

from __future__ import annotations

import math
import re

from puyu.data.document import Document
from puyu.data.filters.base import above
from puyu.data.filters.config import DuplicateBlocksConfig, DuplicateNgramConfig, TopNgramConfig
from puyu.data.filters.ngrams import duplicate_ngram_chars, top_ngram_chars, window_chars
from puyu.data.filters.words import Segmented, segment

PARAGRAPH_BREAK_RE = re.compile(r"\n[ \t\r\f\v]*\n")


def _duplicate_stats(blocks: list[str]) -> tuple[int, int]:
    """(blocks equal to an earlier block, characters in them)."""
    seen: set[str] = set()
    count = chars = 0
    for block in blocks:
        if block in seen:
            count += 1
            chars += len(block)
        else:
            seen.add(block)
    return count, chars


class _DuplicateBlocksFilter:
    """Shared logic of the line and paragraph rules."""

    name = ""
    what = ""

    def __init__(self, config: DuplicateBlocksConfig) -> None:
        self.config = config

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def __call__(self, doc: Document) -> str | None:
        blocks = [b for b in (raw.strip() for raw in self.split(doc.text)) if b]
        if len(blocks) < 2:
            return None
        count, chars = _duplicate_stats(blocks)
        if count == 0:
            return None
        return above(f"duplicate {self.what}s", count / len(blocks), self.config.max_fraction) or above(
            f"duplicate {self.what} chars", chars / len(doc.text), self.config.max_char_fraction
        )


class DuplicateLinesFilter(_DuplicateBlocksFilter):
    """Lines repeated within the document (navigation, boilerplate, generated pages)."""

    name = "duplicate_lines"
    what = "line"

    def split(self, text: str) -> list[str]:
        return text.splitlines()


class DuplicateParagraphsFilter(_DuplicateBlocksFilter):
    """Paragraphs (separated by blank lines) repeated within the document."""

    name = "duplicate_paragraphs"
    what = "paragraph"

    def split(self, text: str) -> list[str]:
        return PARAGRAPH_BREAK_RE.split(text)


def _units_for(n: int, segmented: Segmented, chars_per_word: float) -> int:
    """The n-gram size in units: n words, or ceil(n x chars_per_word) CJK characters."""
    return math.ceil(n * chars_per_word - 1e-9) if segmented.cjk else n


class TopNgramFilter:
    """The most frequent n-gram covers too much of the text (a phrase said over and over)."""

    name = "top_ngram"

    def __init__(self, config: TopNgramConfig) -> None:
        self.limits = sorted(config.max_fraction.items())
        self.chars_per_word = config.cjk_chars_per_word

    def __call__(self, doc: Document) -> str | None:
        segmented = segment(doc.text)
        total = len(doc.text)
        for n, limit in self.limits:
            size = _units_for(n, segmented, self.chars_per_word)
            windows = segmented.windows(size)
            if len(windows) < 2:
                continue
            chars = window_chars(segmented.lengths, size, len(segmented.joiner))
            reason = above(f"top {n}-gram", top_ngram_chars(windows, chars) / total, limit, " of chars")
            if reason is not None:
                return reason
        return None


class DuplicateNgramFilter:
    """Too many characters inside n-grams repeated from earlier in the text (machine-generated repetition)."""

    name = "duplicate_ngram"

    def __init__(self, config: DuplicateNgramConfig) -> None:
        self.limits = sorted(config.max_fraction.items())
        self.chars_per_word = config.cjk_chars_per_word

    def __call__(self, doc: Document) -> str | None:
        segmented = segment(doc.text)
        total = len(doc.text)
        for i, (n, limit) in enumerate(self.limits):
            size = _units_for(n, segmented, self.chars_per_word)
            windows = segmented.windows(size)
            if len(windows) < 2:
                return None
            fraction = duplicate_ngram_chars(windows, segmented.lengths, size, len(segmented.joiner)) / total
            reason = above(f"duplicate {n}-grams", fraction, limit, " of chars")
            if reason is not None:
                return reason
            # The measure never grows with n: once it is within every later limit, the later sizes pass too.
            if all(fraction <= later for _, later in self.limits[i + 1 :]):
                return None
        return None
