"""The default chain: every enabled filter, cheapest first, so most removals cost little.

Order: length (two counts), blocklist (substring tests), symbol and line-shape rules (string scans),
duplicate paragraphs then lines (a set each; paragraphs first, as in datatrove, so a repeated paragraph is
reported as such), alphabetic share and word length (word scans), language (the classifier, once per
document, kept in `doc.meta`), stop words (need the language), and last the n-gram rules (hashing windows).
"""

from __future__ import annotations

from collections.abc import Callable

from puyu.data.document import Document
from puyu.data.filters.base import Filter
from puyu.data.filters.blocklist import BlocklistFilter
from puyu.data.filters.config import FiltersConfig
from puyu.data.filters.gopher import (
    AlphaRatioFilter,
    BulletLinesFilter,
    EllipsisLinesFilter,
    LengthFilter,
    MeanWordLengthFilter,
    StopWordsFilter,
    SymbolRatioFilter,
)
from puyu.data.filters.language import LanguageFilter, known_languages
from puyu.data.filters.repetition import (
    DuplicateLinesFilter,
    DuplicateNgramFilter,
    DuplicateParagraphsFilter,
    TopNgramFilter,
)
from puyu.errors import PuyuError


def build_filters(config: FiltersConfig) -> list[Filter]:
    """The enabled filters of `config`, in the order to run them.

    Args:
        config: the filter settings.

    Raises:
        PuyuError: a language code the detector does not know, or an unreadable blocklist file.
    """
    c = config
    chain: list[tuple[bool, Callable[[], Filter]]] = [
        (c.length.enabled, lambda: LengthFilter(c.length)),
        (c.blocklist.enabled, lambda: BlocklistFilter(c.blocklist)),
        (c.symbol_ratio.enabled, lambda: SymbolRatioFilter(c.symbol_ratio)),
        (c.bullet_lines.enabled, lambda: BulletLinesFilter(c.bullet_lines)),
        (c.ellipsis_lines.enabled, lambda: EllipsisLinesFilter(c.ellipsis_lines)),
        (c.duplicate_paragraphs.enabled, lambda: DuplicateParagraphsFilter(c.duplicate_paragraphs)),
        (c.duplicate_lines.enabled, lambda: DuplicateLinesFilter(c.duplicate_lines)),
        (c.alpha_ratio.enabled, lambda: AlphaRatioFilter(c.alpha_ratio)),
        (c.mean_word_length.enabled, lambda: MeanWordLengthFilter(c.mean_word_length)),
        (c.language.enabled, lambda: _language_filter(c)),
        (c.stop_words.enabled, lambda: StopWordsFilter(c.stop_words)),
        (c.top_ngram.enabled, lambda: TopNgramFilter(c.top_ngram)),
        (c.duplicate_ngram.enabled, lambda: DuplicateNgramFilter(c.duplicate_ngram)),
    ]
    return [make() for enabled, make in chain if enabled]


def _language_filter(config: FiltersConfig) -> LanguageFilter:
    unknown = sorted(set(config.language.languages) - known_languages())
    if unknown:
        raise PuyuError(
            f"filters.language.languages: unknown language code {', '.join(map(repr, unknown))} "
            "(use ISO 639-1 codes such as en, zh, de)"
        )
    return LanguageFilter(config.language)


def first_rejection(filters: list[Filter], doc: Document) -> tuple[str, str] | None:
    """The first filter that removes `doc`, as (filter name, reason); None when all keep it.

    Args:
        filters: from `build_filters`.
        doc: the document.
    """
    for check in filters:
        reason = check(doc)
        if reason is not None:
            return check.name, reason
    return None
