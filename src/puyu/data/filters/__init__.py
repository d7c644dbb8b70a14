"""Quality filters and language identification for pretraining text (English, Chinese and beyond).

    filters = build_filters(FiltersConfig())
    for doc in docs:
        rejected = first_rejection(filters, doc)   # None, or ("stop_words", "too few stop words: en 1 < 2")

Rules follow Gopher (Rae et al. 2021) with datatrove's defaults; word rules count words in space-delimited
text and characters in Chinese/Japanese, chosen per document by its dominant script (see `words`).
"""

from puyu.data.filters.base import Filter
from puyu.data.filters.chain import build_filters, first_rejection
from puyu.data.filters.config import (
    AlphaRatioConfig,
    BlocklistConfig,
    BulletLinesConfig,
    DuplicateBlocksConfig,
    DuplicateNgramConfig,
    EllipsisLinesConfig,
    FiltersConfig,
    LanguageConfig,
    LengthConfig,
    MeanWordLengthConfig,
    StopWordsConfig,
    SymbolRatioConfig,
    TopNgramConfig,
)
from puyu.data.filters.language import annotate_language, detect_language

__all__ = [
    "AlphaRatioConfig",
    "BlocklistConfig",
    "BulletLinesConfig",
    "DuplicateBlocksConfig",
    "DuplicateNgramConfig",
    "EllipsisLinesConfig",
    "Filter",
    "FiltersConfig",
    "LanguageConfig",
    "LengthConfig",
    "MeanWordLengthConfig",
    "StopWordsConfig",
    "SymbolRatioConfig",
    "TopNgramConfig",
    "annotate_language",
    "build_filters",
    "detect_language",
    "first_rejection",
]
