"""The default filter chain on a corpus of clean paragraphs and planted bad documents.

Every clean paragraph (English, Chinese, mixed, dialogue, a long topic-focused article) must pass every
default filter; every planted bad document must be removed, and by the filter meant to catch it.
"""

from __future__ import annotations

import pytest
from filter_corpus import BAD, CLEAN, CLEAN_ZH

from puyu.configuration import from_dict
from puyu.data.document import Document
from puyu.data.filters import FiltersConfig, build_filters, first_rejection
from puyu.errors import PuyuError

DEFAULT_ORDER = [
    "length",
    "blocklist",
    "symbol_ratio",
    "bullet_lines",
    "ellipsis_lines",
    "duplicate_paragraphs",
    "duplicate_lines",
    "alpha_ratio",
    "mean_word_length",
    "language",
    "stop_words",
    "top_ngram",
    "duplicate_ngram",
]


@pytest.fixture(scope="module")
def chain():
    return build_filters(FiltersConfig())


def test_default_chain_runs_every_filter_cheapest_first(chain) -> None:
    assert [f.name for f in chain] == DEFAULT_ORDER


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean_paragraphs_pass_every_filter(chain, name: str) -> None:
    doc = Document(CLEAN[name], name, "clean")
    reasons = {f.name: f(doc) for f in chain}
    assert {k: v for k, v in reasons.items() if v is not None} == {}
    assert doc.meta["language"] == name.split("/")[0]


# Hand-checkable: 61 characters less 9 spaces; 8 paragraphs of which 4 repeat; 20 lines of which 9 repeat;
# 6 of 60 table cells hold a letter.
EXPECTED_REASONS = {
    "length": "too short: 52 chars < 85",
    "length_zh": "too short: 20 chars < 85",
    "blocklist": "blocked terms: more than 0 (porn)",
    "blocklist_zh": "blocked terms: more than 0 (六合彩)",
    "symbol_ratio": "too many '#': 0.843 per word > 0.1",
    "bullet_lines": "too many bullet lines: 1.000 > 0.9",
    "ellipsis_lines": "too many lines ending in ellipsis: 1.000 > 0.3",
    "duplicate_paragraphs_zh": "duplicate paragraphs: 0.500 > 0.3",
    "duplicate_lines": "duplicate lines: 0.450 > 0.3",
    "alpha_ratio": "too few alphabetic words: 0.100 < 0.8",
    "alpha_ratio_zh": "too few letters and digits: 0.307 < 0.7",
    "mean_word_length": "mean word length too long: 51.982 > 10",
    "language": "language not kept: de",
    "language_ja": "language not kept: ja",
    "stop_words": "too few stop words: en 0 < 2",
    "stop_words_zh": "too few stop words: zh 0 < 2",
    "top_ngram": "top 2-gram: 0.218 of chars > 0.2",
    "duplicate_ngram_zh": "duplicate 5-grams: 0.200 of chars > 0.15",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_planted_bad_documents_are_removed_by_the_expected_filter(chain, name: str) -> None:
    expected = name.removesuffix("_zh").removesuffix("_ja")
    rejection = first_rejection(chain, Document(BAD[name], name, "bad"))
    assert rejection == (expected, EXPECTED_REASONS[name])


def test_corpus_totals(chain) -> None:
    kept = [n for n in CLEAN if first_rejection(chain, Document(CLEAN[n], n, "c")) is None]
    removed = [n for n in BAD if first_rejection(chain, Document(BAD[n], n, "b")) is not None]
    assert (len(kept), len(removed)) == (len(CLEAN), len(BAD)) == (25, 18)


def test_disabled_filters_are_left_out_and_the_rest_keep_their_order() -> None:
    config = from_dict(FiltersConfig, {"language": {"enabled": False}, "length": {"enabled": False}}, "filters")
    names = [f.name for f in build_filters(config)]
    assert names == [n for n in DEFAULT_ORDER if n not in ("language", "length")]
    # Without the language filter a German page is still judged; it has no stop-word list, so it passes.
    assert first_rejection(build_filters(config), Document(BAD["language"], "de", "x")) is None


def test_settings_load_from_plain_data_with_int_ngram_keys() -> None:
    config = from_dict(
        FiltersConfig,
        {"top_ngram": {"max_fraction": {2: 0.3}}, "language": {"languages": ["en"], "min_score": 0.5}},
        "filters",
    )
    assert config.top_ngram.max_fraction == {2: 0.3}
    chain = build_filters(config)
    assert first_rejection(chain, Document(CLEAN_ZH["news"], "zh", "x")) == ("language", "language not kept: zh")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"alpha_ratio": {"min_alpha_words": 1.5}}, "filters.alpha_ratio: min_alpha_words must be between 0 and 1"),
        ({"length": {"min_chars": 500, "max_chars": 100}}, "filters.length: length chars: need 0 <= min <= max"),
        ({"duplicate_ngram": {"max_fraction": {0: 0.1}}}, "filters.duplicate_ngram: n-gram size must be at least 1"),
        ({"language": {"languages": []}}, "filters.language: language.languages is empty"),
        ({"stop_words": {"min_count": {"fr": 2}}}, "filters.stop_words: stop_words.min_count names 'fr'"),
        ({"blocklist": {"max_hits": -1}}, "filters.blocklist: blocklist.max_hits must not be negative"),
        ({"symbol_ratio": {"max_hash": 0.2}}, "filters.symbol_ratio: unknown key 'max_hash'"),
    ],
)
def test_invalid_settings_are_one_line_errors_naming_the_key(settings: dict, message: str) -> None:
    with pytest.raises(PuyuError) as error:
        from_dict(FiltersConfig, settings, "filters")
    assert str(error.value).startswith(message)


def test_unknown_language_code_is_a_user_error() -> None:
    config = FiltersConfig()
    config.language.languages = ["en", "chinese"]
    with pytest.raises(PuyuError, match=r"filters.language.languages: unknown language code 'chinese'"):
        build_filters(config)
