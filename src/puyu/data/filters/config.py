"""Settings of the quality filters: one typed section per filter, each with `enabled` and its thresholds.

Defaults follow the Gopher rules (Rae et al. 2021, appendix A) as datatrove's `GopherQualityFilter` and
`GopherRepetitionFilter` implement them; the Chinese counterparts are derived from them (see each field).
A value that would make a rule meaningless (a ratio outside 0..1, min > max) is a `ValueError`, which
`puyu.configuration.from_dict` reports as a one-line error naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from puyu.data.filters.lists import DEFAULT_BLOCKLIST, EN_STOP_WORDS, ZH_STOP_WORDS

# A Chinese word averages 1.7 characters (jieba on news/encyclopedia/story text: 1.70-1.77), so a word rule
# over n words becomes a character rule over ceil(1.7 n) characters.
CJK_CHARS_PER_WORD = 1.7


def _check_ratio(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")


def _check_range(name: str, low: float, high: float) -> None:
    if low < 0 or high < low:
        raise ValueError(f"{name}: need 0 <= min <= max, got {low} and {high}")


@dataclass
class LengthConfig:
    """Document length. Characters count for every script; words only for space-delimited text.

    `min_chars` = 85 is Gopher's 50 words at 1.7 characters per Chinese word; for English the 50-word
    minimum is the binding one. Characters are non-whitespace characters.
    """

    enabled: bool = True
    min_chars: int = 85
    max_chars: int = 1_000_000
    min_words: int = 50
    max_words: int = 100_000

    def __post_init__(self) -> None:
        _check_range("length chars", self.min_chars, self.max_chars)
        _check_range("length words", self.min_words, self.max_words)


@dataclass
class MeanWordLengthConfig:
    """Mean word length of space-delimited text (punctuation stripped); CJK text passes."""

    enabled: bool = True
    min_length: float = 3.0
    max_length: float = 10.0

    def __post_init__(self) -> None:
        _check_range("mean word length", self.min_length, self.max_length)


@dataclass
class SymbolRatioConfig:
    """'#' characters and ellipses ("...", "…", a run of "…" counts once) per word (per unit for CJK)."""

    enabled: bool = True
    max_hash_ratio: float = 0.1
    max_ellipsis_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.max_hash_ratio < 0 or self.max_ellipsis_ratio < 0:
            raise ValueError("symbol ratios must not be negative")


@dataclass
class AlphaRatioConfig:
    """Share of alphabetic content.

    Space-delimited text: share of words holding a letter (Gopher: >= 0.8). CJK text has no words to
    count, so it is the share of non-space characters that are letters or digits: clean Chinese prose
    measures 0.90-0.93 (punctuation is the rest) and dialogue-heavy fiction 0.79, hence 0.7.
    """

    enabled: bool = True
    min_alpha_words: float = 0.8
    min_cjk_alnum_chars: float = 0.7

    def __post_init__(self) -> None:
        _check_ratio("min_alpha_words", self.min_alpha_words)
        _check_ratio("min_cjk_alnum_chars", self.min_cjk_alnum_chars)


@dataclass
class BulletLinesConfig:
    """Share of non-blank lines that start with a bullet (•, -, *, ·, ●, ...)."""

    enabled: bool = True
    max_ratio: float = 0.9

    def __post_init__(self) -> None:
        _check_ratio("bullet_lines.max_ratio", self.max_ratio)


@dataclass
class EllipsisLinesConfig:
    """Share of non-blank lines that end with an ellipsis (a sign of truncated previews)."""

    enabled: bool = True
    max_ratio: float = 0.3

    def __post_init__(self) -> None:
        _check_ratio("ellipsis_lines.max_ratio", self.max_ratio)


@dataclass
class DuplicateBlocksConfig:
    """Repeated lines (or paragraphs): share of them that repeat an earlier one, and share of the text's
    characters inside such repeats."""

    enabled: bool = True
    max_fraction: float = 0.3
    max_char_fraction: float = 0.2

    def __post_init__(self) -> None:
        _check_ratio("max_fraction", self.max_fraction)
        _check_ratio("max_char_fraction", self.max_char_fraction)


@dataclass
class TopNgramConfig:
    """Share of characters covered by the most frequent n-gram, per n (words; CJK: characters, n scaled
    by `cjk_chars_per_word`)."""

    enabled: bool = True
    max_fraction: dict[int, float] = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    cjk_chars_per_word: float = CJK_CHARS_PER_WORD

    def __post_init__(self) -> None:
        _check_ngrams(self.max_fraction, self.cjk_chars_per_word)


@dataclass
class DuplicateNgramConfig:
    """Share of characters inside n-grams that repeat an earlier occurrence, per n (as `TopNgramConfig`)."""

    enabled: bool = True
    max_fraction: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )
    cjk_chars_per_word: float = CJK_CHARS_PER_WORD

    def __post_init__(self) -> None:
        _check_ngrams(self.max_fraction, self.cjk_chars_per_word)


def _check_ngrams(fractions: dict[int, float], chars_per_word: float) -> None:
    for n, fraction in fractions.items():
        if n < 1:
            raise ValueError(f"n-gram size must be at least 1, got {n}")
        _check_ratio(f"{n}-gram fraction", fraction)
    if chars_per_word <= 0:
        raise ValueError(f"cjk_chars_per_word must be positive, got {chars_per_word}")


@dataclass
class StopWordsConfig:
    """Minimum count of stop words, per detected language; languages without a list pass.

    English: Gopher's eight words, at least 2. Chinese: function characters, at least 2, as lenient as the
    English rule: in the clean test paragraphs the English list makes up 19% of words and the Chinese one
    11.5% of characters, about 20% of words at 1.7 characters per word.
    """

    enabled: bool = True
    words: dict[str, list[str]] = field(default_factory=lambda: {"en": list(EN_STOP_WORDS), "zh": list(ZH_STOP_WORDS)})
    min_count: dict[str, int] = field(default_factory=lambda: {"en": 2, "zh": 2})

    def __post_init__(self) -> None:
        for language in self.min_count:
            if language not in self.words:
                raise ValueError(f"stop_words.min_count names {language!r}, which has no word list")


@dataclass
class LanguageConfig:
    """Keep documents whose detected language (ISO 639-1) is listed, with at least `min_score` confidence.

    0.65 is datatrove's default threshold for its language filter.
    """

    enabled: bool = True
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])
    min_score: float = 0.65

    def __post_init__(self) -> None:
        if not self.languages:
            raise ValueError("language.languages is empty: list the languages to keep, or disable the filter")
        _check_ratio("language.min_score", self.min_score)


@dataclass
class BlocklistConfig:
    """Words and phrases that mark a document as unwanted. Case-insensitive; whole words for space-delimited
    terms, substrings for CJK terms. `file` adds one term per line (# starts a comment)."""

    enabled: bool = True
    words: list[str] = field(default_factory=lambda: list(DEFAULT_BLOCKLIST))
    file: str | None = None
    max_hits: int = 0

    def __post_init__(self) -> None:
        if self.max_hits < 0:
            raise ValueError(f"blocklist.max_hits must not be negative, got {self.max_hits}")


@dataclass
class FiltersConfig:
    """All quality filters; `build_filters` turns the enabled ones into a chain."""

    length: LengthConfig = field(default_factory=LengthConfig)
    blocklist: BlocklistConfig = field(default_factory=BlocklistConfig)
    symbol_ratio: SymbolRatioConfig = field(default_factory=SymbolRatioConfig)
    bullet_lines: BulletLinesConfig = field(default_factory=BulletLinesConfig)
    ellipsis_lines: EllipsisLinesConfig = field(default_factory=EllipsisLinesConfig)
    duplicate_paragraphs: DuplicateBlocksConfig = field(default_factory=DuplicateBlocksConfig)
    duplicate_lines: DuplicateBlocksConfig = field(default_factory=DuplicateBlocksConfig)
    alpha_ratio: AlphaRatioConfig = field(default_factory=AlphaRatioConfig)
    mean_word_length: MeanWordLengthConfig = field(default_factory=MeanWordLengthConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    stop_words: StopWordsConfig = field(default_factory=StopWordsConfig)
    top_ngram: TopNgramConfig = field(default_factory=TopNgramConfig)
    duplicate_ngram: DuplicateNgramConfig = field(default_factory=DuplicateNgramConfig)
