"""The Gopher quality rules (Rae et al. 2021, appendix A), made script-aware.

Word rules count words for space-delimited text and units (CJK characters and other runs, see `words`)
for Chinese and Japanese; the mean-word-length rule has no meaning without word boundaries and passes CJK
text. Thresholds and their defaults live in `config`.
"""

from __future__ import annotations

import re

from puyu.data.document import Document
from puyu.data.filters.base import above, below
from puyu.data.filters.config import (
    AlphaRatioConfig,
    BulletLinesConfig,
    EllipsisLinesConfig,
    LengthConfig,
    MeanWordLengthConfig,
    StopWordsConfig,
    SymbolRatioConfig,
)
from puyu.data.filters.language import annotate_language
from puyu.data.filters.lists import compile_terms, count_matches
from puyu.data.filters.words import (
    alnum_chars,
    alpha_token_count,
    is_cjk,
    non_space_chars,
    segment,
    word_count,
)

BULLETS = ("•", "-", "*", "·", "●", "○", "◦", "▪", "▫", "■", "□", "◆", "◇", "‣", "➢", "►", "✓", "✔")
ELLIPSES = ("...", "…")
# "..." or a run of "…" (Chinese writes the ellipsis as "……"), counted once each.
ELLIPSIS_RE = re.compile(r"\.\.\.|…+")


def _nonblank_lines(text: str) -> list[str]:
    return [line for line in (raw.strip() for raw in text.splitlines()) if line]


class LengthFilter:
    """Too short or too long, in non-space characters (all scripts) and words (space-delimited text)."""

    name = "length"

    def __init__(self, config: LengthConfig) -> None:
        self.config = config

    def __call__(self, doc: Document) -> str | None:
        c = self.config
        chars = non_space_chars(doc.text)
        if chars < c.min_chars:
            return f"too short: {chars} chars < {c.min_chars}"
        if chars > c.max_chars:
            return f"too long: {chars} chars > {c.max_chars}"
        if is_cjk(doc.text):
            return None
        words = word_count(doc.text)
        if words < c.min_words:
            return f"too few words: {words} < {c.min_words}"
        if words > c.max_words:
            return f"too many words: {words} > {c.max_words}"
        return None


class SymbolRatioFilter:
    """Too many '#' or ellipses per word (hashtag spam, teaser lists)."""

    name = "symbol_ratio"

    def __init__(self, config: SymbolRatioConfig) -> None:
        self.config = config

    def __call__(self, doc: Document) -> str | None:
        units = len(segment(doc.text).units)
        if units == 0:
            return None
        hashes = doc.text.count("#") / units
        reason = above("too many '#'", hashes, self.config.max_hash_ratio, " per word")
        if reason is not None:
            return reason
        ellipses = len(ELLIPSIS_RE.findall(doc.text)) / units
        return above("too many ellipses", ellipses, self.config.max_ellipsis_ratio, " per word")


class BulletLinesFilter:
    """Too many lines starting with a bullet: a list of links or keywords, not prose."""

    name = "bullet_lines"

    def __init__(self, config: BulletLinesConfig) -> None:
        self.max_ratio = config.max_ratio

    def __call__(self, doc: Document) -> str | None:
        lines = _nonblank_lines(doc.text)
        if not lines:
            return None
        share = sum(line.startswith(BULLETS) for line in lines) / len(lines)
        return above("too many bullet lines", share, self.max_ratio)


class EllipsisLinesFilter:
    """Too many lines ending with an ellipsis: truncated previews ("Read more...")."""

    name = "ellipsis_lines"

    def __init__(self, config: EllipsisLinesConfig) -> None:
        self.max_ratio = config.max_ratio

    def __call__(self, doc: Document) -> str | None:
        lines = _nonblank_lines(doc.text)
        if not lines:
            return None
        share = sum(line.endswith(ELLIPSES) for line in lines) / len(lines)
        return above("too many lines ending in ellipsis", share, self.max_ratio)


class AlphaRatioFilter:
    """Too little alphabetic content: tables of numbers, symbol soup, encoded data."""

    name = "alpha_ratio"

    def __init__(self, config: AlphaRatioConfig) -> None:
        self.config = config

    def __call__(self, doc: Document) -> str | None:
        text = doc.text
        if is_cjk(text):
            chars = non_space_chars(text)
            if chars == 0:
                return None
            return below("too few letters and digits", alnum_chars(text) / chars, self.config.min_cjk_alnum_chars)
        words = len(text.split())
        if words == 0:
            return None
        return below("too few alphabetic words", alpha_token_count(text) / words, self.config.min_alpha_words)


class MeanWordLengthFilter:
    """Mean word length outside the range of natural language (space-delimited text only)."""

    name = "mean_word_length"

    def __init__(self, config: MeanWordLengthConfig) -> None:
        self.config = config

    def __call__(self, doc: Document) -> str | None:
        segmented = segment(doc.text)
        if segmented.cjk or not segmented.units:
            return None
        # Units are the tokens without punctuation ("dog." is a 3-letter word).
        mean = float(segmented.lengths.mean())
        return below("mean word length too short", mean, self.config.min_length) or above(
            "mean word length too long", mean, self.config.max_length
        )


class StopWordsFilter:
    """Too few stop words for the document's language: keyword lists, menus, tables, code."""

    name = "stop_words"

    def __init__(self, config: StopWordsConfig) -> None:
        self.minimum = dict(config.min_count)
        self.patterns = {
            language: pattern
            for language, words in config.words.items()
            if language in self.minimum and (pattern := compile_terms(words)) is not None
        }

    def __call__(self, doc: Document) -> str | None:
        language = annotate_language(doc)
        language = language if language in self.patterns else re.split(r"[-_]", language)[0].lower()
        pattern = self.patterns.get(language)
        if pattern is None:
            return None
        needed = self.minimum[language]
        found = count_matches(pattern, doc.text, stop_at=needed)
        if found < needed:
            return f"too few stop words: {language} {found} < {needed}"
        return None
