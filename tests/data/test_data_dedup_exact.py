"""Exact-duplicate keys: what the normalisation merges and what it keeps apart; first occurrence kept."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash

from puyu.data.dedup import DedupConfig, exact_key, exact_keys, find_exact_duplicates
from puyu.data.dedup.text import normalize_for_key, words_text
from puyu.errors import PuyuError

SAME = [
    ("case", "Hello World", "hello world"),
    ("case folding", "STRASSE", "straße"),
    ("whitespace", "a  b\n\tc \u3000 d", "a b c d"),
    ("leading/trailing space", "  hello world \n", "hello world"),
    ("punctuation", "Hello, world! (Really?)", "hello world really"),
    ("punctuation glued", "Hello,world", "hello world"),
    ("ascii symbols", "price: $5 + tax", "price 5 tax"),
    ("NFKC full-width", "Ｈｅｌｌｏ　Ｗｏｒｌｄ１２", "hello world12"),
    ("NFKC ligature", "ﬁne ﬂow", "fine flow"),
    ("NFKC composition", "cafe\u0301", "café"),
    ("soft hyphen", "co\u00adoperate", "cooperate"),
    ("zero-width space", "zero\u200bwidth", "zerowidth"),
    ("Chinese punctuation", "你好，世界！", "你好世界"),
    ("Chinese spacing", "你好 世界", "你好世界"),
    ("Chinese full-width punctuation with Latin", "我爱Python，也爱Rust。", "我爱python也爱rust"),
    ("Japanese", "こんにちは、世界。", "こんにちは世界"),
]

DIFFERENT = [
    ("one word", "the cat sat on the mat", "the cat sat on the hat"),
    ("word boundary", "hello world", "helloworld"),
    ("digits", "chapter 1", "chapter 2"),
    ("word order", "alpha beta", "beta alpha"),
    ("Chinese character", "你好世界", "你好世间"),
    ("accent kept", "resume", "résumé"),
]


@pytest.mark.parametrize(("case", "a", "b"), SAME, ids=[c for c, _, _ in SAME])
def test_exact_key_merges_normalised_variants(case: str, a: str, b: str) -> None:
    assert exact_key(a) == exact_key(b), (case, normalize_for_key(a), normalize_for_key(b))


@pytest.mark.parametrize(("case", "a", "b"), DIFFERENT, ids=[c for c, _, _ in DIFFERENT])
def test_exact_key_keeps_different_texts_apart(case: str, a: str, b: str) -> None:
    assert exact_key(a) != exact_key(b), case


def test_exact_key_is_xxh3_128_of_the_normal_form() -> None:
    # Pinned: keys saved by one run must match keys of the next, on any machine.
    assert exact_key("Hello, World!") == xxhash.xxh3_128_digest(b"hello world")
    assert exact_key("Hello, World!").hex() == "df8d09e93f874900a99b8775cc15b6c7"
    assert exact_key("你好，世界") == xxhash.xxh3_128_digest("你好世界".encode())
    assert len(exact_key("")) == 16


def test_normal_forms() -> None:
    assert words_text("  Ｈｅｌｌｏ,\tWORLD…  ") == "hello world"
    assert words_text("你好，世界！") == "你好 世界"
    assert normalize_for_key("你好，世界！ Hi there") == "你好世界hi there"
    assert words_text("...!!!") == ""


def test_bad_text_does_not_crash() -> None:
    lone_surrogate = "caf\udce9 au lait"  # what surrogateescape decoding leaves for invalid UTF-8
    assert exact_key(lone_surrogate) == exact_key("CAF\udce9 AU LAIT")
    assert exact_key("a\x00b") == exact_key("a b")  # NUL is a control character: a separator
    assert exact_key("x" * 100_000) != exact_key("x" * 99_999)


def test_find_exact_duplicates_keeps_first_occurrence() -> None:
    texts = ["Hello world", "other text", "HELLO, WORLD!", "", "other  text", "   ", "third"]
    expected = [False, False, True, False, True, True, False]
    keys = [exact_key(t) for t in texts]
    assert find_exact_duplicates(keys).tolist() == expected
    array = exact_keys(texts)
    assert array.shape == (7, 16) and array.dtype == np.uint8
    assert bytes(array[2]) == keys[2]
    assert find_exact_duplicates(array).tolist() == expected


def test_find_exact_duplicates_across_shards_in_order() -> None:
    shard0, shard1 = exact_keys(["a b", "c d"]), exact_keys(["C D", "e f", "A-B"])
    assert find_exact_duplicates(np.concatenate([shard0, shard1])).tolist() == [False, False, True, False, True]
    assert find_exact_duplicates(np.zeros((0, 16), dtype=np.uint8)).tolist() == []
    assert find_exact_duplicates([]).tolist() == []


def test_find_exact_duplicates_rejects_malformed_array() -> None:
    with pytest.raises(ValueError, match="uint8"):
        find_exact_duplicates(np.zeros((3, 16), dtype=np.int64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ngram": 0}, "ngram"),
        ({"num_perm": 100, "bands": 16}, "multiple of bands"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": 0.0}, "threshold"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(PuyuError, match=message):
        DedupConfig(**kwargs)  # type: ignore[arg-type]


def test_config_band_geometry() -> None:
    config = DedupConfig()
    assert config.rows == 8
    assert config.lsh_threshold == pytest.approx(0.7071, abs=1e-3)
