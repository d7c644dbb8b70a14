"""MinHash signatures: the vectorised shingle hashes match the plain shingles, estimates match true
Jaccard within the binomial tolerance, and a signature depends only on its text and the seed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import puyu.data.dedup.minhash as minhash_module
from puyu.data.dedup import EMPTY, DedupConfig, MinHasher, shingles

TEXTS = [
    "The quick brown fox jumps over the lazy dog, and the dog sleeps on.",
    "the QUICK brown fox jumps over the lazy dog and the dog sleeps on!!",
    "敏捷的棕色狐狸跳过了懒狗，然后狗继续睡觉。",
    "敏捷的棕色狐狸跳过了懒狗然后狗继续睡觉",
    "我们使用PyTorch训练模型，然后评估它的效果。",  # mixed, mostly Chinese: characters
    "We trained the model with 深度学习 tools and evaluated it twice.",  # mixed, mostly Latin: words
    "",
    "   ...   !!! ",
    "hi",
    "two words",
    "短",
    "caf\udce9 au lait with a lone surrogate in it",
    "co\u00adoperate with zero\u200bwidth and ﬁne ligatures",
    "x" * 5000,
    "สวัสดีครับ ยินดีต้อนรับ",  # Thai: no spaces between words
]


def _jaccard(a: set[object], b: set[object]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _hash_sets(hasher: MinHasher, texts: list[str]) -> list[set[int]]:
    hashes, docs = hasher.shingle_hashes(texts)
    return [set(hashes[docs == i].tolist()) for i in range(len(texts))]


def test_reference_shingles() -> None:
    assert shingles("The cat, the CAT sat on the mat.", 3) == [
        "the cat the",
        "cat the cat",
        "the cat sat",
        "cat sat on",
        "sat on the",
        "on the mat",
    ]
    assert shingles("你好，世界！今天", 3) == ["你 好 世", "好 世 界", "世 界 今", "界 今 天"]
    assert shingles("only three words", 5) == ["only three words"]
    assert shingles("你好", 5) == ["你 好"]
    assert shingles("", 5) == [] and shingles(" ... ", 5) == []
    # Dominant script decides: words here, characters in the next.
    assert shingles("We like 深度学习 a lot", 2) == ["we like", "like 深度学习", "深度学习 a", "a lot"]
    assert shingles("深度学习 is 很好", 4) == ["深 度 学 习", "度 学 习 i", "学 习 i s", "习 i s 很", "i s 很 好"]


@pytest.mark.parametrize("ngram", [1, 3, 5])
def test_vectorised_shingle_hashes_match_reference_shingles(ngram: int) -> None:
    hasher = MinHasher(DedupConfig(ngram=ngram))
    hash_sets = _hash_sets(hasher, TEXTS)
    string_sets = [set(shingles(t, ngram)) for t in TEXTS]
    for text, hashed, strings in zip(TEXTS, hash_sets, string_sets, strict=True):
        assert len(hashed) == len(strings), text
    # Same shingles across documents give the same hashes: Jaccard over hashes is exact.
    for i, j in itertools.combinations(range(len(TEXTS)), 2):
        assert _jaccard(hash_sets[i], hash_sets[j]) == _jaccard(string_sets[i], string_sets[j]), (TEXTS[i], TEXTS[j])
    assert _jaccard(hash_sets[0], hash_sets[1]) == 1.0 and _jaccard(hash_sets[2], hash_sets[3]) == 1.0


WORDS = st.sampled_from(["a", "b", "cc", "Dd", "猫", "狗", "é", "e\u0301", ",", "!", " ", "\n", "ｆｏｏ", "foo"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(WORDS, max_size=20).map(" ".join), min_size=1, max_size=6), st.integers(1, 4))
def test_shingle_hashes_match_reference_on_random_texts(texts: list[str], ngram: int) -> None:
    hasher = MinHasher(DedupConfig(ngram=ngram))
    hash_sets = _hash_sets(hasher, texts)
    string_sets = [set(shingles(t, ngram)) for t in texts]
    for i, j in itertools.combinations_with_replacement(range(len(texts)), 2):
        assert len(hash_sets[i] & hash_sets[j]) == len(string_sets[i] & string_sets[j])


def _pair_with_jaccard(rng: np.random.Generator, size: int, jaccard: float) -> tuple[str, str, float]:
    """Two texts of `size` distinct tokens each (ngram=1) sharing round(2·size·J/(1+J)) of them."""
    shared = round(2 * size * jaccard / (1 + jaccard))
    tokens = [f"t{k}" for k in rng.choice(10**6, size=2 * size - shared, replace=False)]
    a, b = tokens[:size], tokens[:shared] + tokens[size : 2 * size - shared]
    return " ".join(a), " ".join(b), shared / (2 * size - shared)


@pytest.mark.parametrize("jaccard", [0.2, 0.5, 0.8, 0.95])
def test_estimate_matches_true_jaccard(jaccard: float) -> None:
    # With 128 permutations the estimate is a mean of 128 indicators with mean J: its standard
    # deviation is sqrt(J(1-J)/128) <= 0.044. Each pair must be within 4.5 sd (a false alarm per pair
    # ~7e-6), and the mean of 30 pairs within 3.5 sd/sqrt(30), which also bounds any bias of the hash
    # family. The seeds are fixed, so the outcome is reproducible.
    rng = np.random.default_rng(7)
    hasher = MinHasher(DedupConfig(ngram=1))
    sd = np.sqrt(jaccard * (1 - jaccard) / 128)
    errors = []
    for size in [20, 200, 2000] * 10:
        a, b, truth = _pair_with_jaccard(rng, size, jaccard)
        sig = hasher.signatures([a, b])
        errors.append((sig[0] == sig[1]).mean() - truth)
    errors_array = np.array(errors)
    assert np.abs(errors_array).max() <= 4.5 * sd
    assert abs(errors_array.mean()) <= 3.5 * sd / np.sqrt(len(errors))


def test_identical_and_disjoint_sets() -> None:
    hasher = MinHasher(DedupConfig())
    sig = hasher.signatures(["one two three four five six", "ONE two, three four five six!", "a b c d e f g"])
    assert (sig[0] == sig[1]).all()
    assert (sig[0] == sig[2]).sum() <= 1  # disjoint: agreement only by a 2^-32 chance per entry


def test_signature_shape_and_empty_texts() -> None:
    config = DedupConfig(num_perm=64, bands=8)
    sig = MinHasher(config).signatures(TEXTS)
    assert sig.shape == (len(TEXTS), 64) and sig.dtype == np.uint32
    assert (sig[TEXTS.index("")] == EMPTY).all() and (sig[TEXTS.index("   ...   !!! ")] == EMPTY).all()
    short = sig[TEXTS.index("hi")]
    assert not (short == EMPTY).any()
    assert MinHasher(config).signatures([]).shape == (0, 64)


def test_signatures_are_pinned_across_runs() -> None:
    # Signatures saved per shard are compared in a later pass, maybe by another machine or numpy:
    # the hash functions derive from the seed with BLAKE2b, so these values must never drift.
    hasher = MinHasher(DedupConfig())
    assert hasher.signature("The quick brown fox jumps over the lazy dog.")[:4].tolist() == [
        1534102237,
        741238954,
        502485799,
        1368536273,
    ]
    assert hasher.signature("敏捷的棕色狐狸跳过了懒狗。")[:4].tolist() == [180919457, 795311851, 420476590, 1067607385]


def test_seed_changes_signatures() -> None:
    text = "the same text hashed under two seeds"
    one, two = MinHasher(DedupConfig(seed=1)).signature(text), MinHasher(DedupConfig(seed=2)).signature(text)
    assert (one != two).mean() > 0.9


def test_signature_independent_of_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = MinHasher(DedupConfig())
    whole = hasher.signatures(TEXTS)
    one_by_one = np.stack([hasher.signature(t) for t in TEXTS])
    np.testing.assert_array_equal(whole, one_by_one)
    order = np.random.default_rng(0).permutation(len(TEXTS))
    np.testing.assert_array_equal(hasher.signatures([TEXTS[i] for i in order]), whole[order])
    # Tiny batches and permutation blocks split documents across blocks; the result must not change.
    monkeypatch.setattr(minhash_module, "_BATCH_CHARS", 40)
    monkeypatch.setattr(minhash_module, "_BLOCK", 7)
    np.testing.assert_array_equal(MinHasher(DedupConfig()).signatures(TEXTS), whole)
