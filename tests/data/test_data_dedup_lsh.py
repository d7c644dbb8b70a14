"""Near-duplicate clusters: planted pairs in English and Chinese against brute-force Jaccard, the
earliest member kept, band keys, candidate pairs, verification and per-shard memory maps."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from puyu.data.dedup import (
    EMPTY,
    ConcatenatedRows,
    DedupConfig,
    MinHasher,
    band_keys,
    candidate_pairs,
    cluster_roots,
    find_near_duplicates,
    near_duplicate_roots,
    shingles,
    verify_pairs,
)

EN_TEXT = (
    "time river stone light quiet market winter garden letter window silver morning harbor engine "
    "forest answer travel number paper yellow bridge season hollow danger simple figure notice "
    "castle member orange planet signal thunder velvet wander zephyr anchor basket candle dragon"
)
EN_WORDS = EN_TEXT.split()
ZH_CHARS = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可里后"
    "什么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
)


def _edit(units: list[str], edits: int, rng: np.random.Generator, pool: list[str]) -> list[str]:
    out = list(units)
    for _ in range(edits):
        out[int(rng.integers(len(out)))] = pool[int(rng.integers(len(pool)))]
    return out


def _planted_corpus(chinese: bool, seed: int = 3) -> list[str]:
    """40 random documents and 40 edited copies (0 to 12 substitutions: Jaccard ~0.5 to 1), shuffled."""
    rng = np.random.default_rng(seed)
    pool = list(ZH_CHARS) if chinese else EN_WORDS
    joiner = "" if chinese else " "
    docs = []
    for _ in range(40):
        units = [pool[int(i)] for i in rng.integers(len(pool), size=int(rng.integers(150, 300)))]
        docs.append(units)
        docs.append(_edit(units, int(rng.integers(0, 13)), rng, pool))
    return [joiner.join(docs[i]) for i in rng.permutation(len(docs))]


def _true_jaccard(texts: list[str], ngram: int) -> np.ndarray:
    sets = [set(shingles(t, ngram)) for t in texts]
    out = np.eye(len(texts))
    for i, j in itertools.combinations(range(len(texts)), 2):
        out[i, j] = out[j, i] = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
    return out


@pytest.mark.parametrize("chinese", [False, True], ids=["english", "chinese"])
def test_planted_near_duplicates_against_brute_force(chinese: bool) -> None:
    config = DedupConfig()
    texts = _planted_corpus(chinese)
    truth = _true_jaccard(texts, config.ngram)
    roots = near_duplicate_roots(band_keys(sig := MinHasher(config).signatures(texts), config), config, sig)
    same = roots[:, None] == roots[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    high, low = upper & (truth >= 0.9), upper & (truth < 0.6)
    assert high.sum() >= 10 and low.sum() > 1000  # the corpus spans both sides of the threshold
    assert same[high].all()  # recall 1 where true Jaccard >= 0.9 (miss chance per pair < 1e-4)
    assert not same[low].any()  # precision: nothing below 0.6 (16 sd under the 0.8 threshold)
    clustered = upper & same
    assert truth[clustered].min() >= 0.7  # verification at 0.8 lets through at most ~3 sd below
    flags = find_near_duplicates(sig, config)
    assert flags.tolist() == (roots != np.arange(len(texts))).tolist()


def test_earliest_member_of_each_cluster_is_kept() -> None:
    base = " ".join(EN_WORDS * 3)
    variant = base.replace("castle", "palace", 1)
    other = " ".join(reversed(EN_WORDS * 3))
    texts = ["unrelated text one two three four five six", variant, other, base, variant.upper(), "短文", other]
    config = DedupConfig()
    flags = find_near_duplicates(MinHasher(config).signatures(texts), config)
    assert flags.tolist() == [False, False, False, True, True, False, True]
    roots = near_duplicate_roots(band_keys(sig := MinHasher(config).signatures(texts), config), config, sig)
    assert roots.tolist() == [0, 1, 2, 1, 1, 5, 2]


def test_empty_and_short_texts() -> None:
    config = DedupConfig()
    texts = ["", "...", "", "hi", "hi", "Hi!", "hi there", "你", "你"]
    sig = MinHasher(config).signatures(texts)
    # Texts without shingles never cluster (exact dedup handles them); short ones do when identical.
    assert find_near_duplicates(sig, config).tolist() == [False, False, False, False, True, True, False, False, True]


def test_chain_clusters_take_the_smallest_index() -> None:
    pairs = np.array([[3, 7], [1, 7], [3, 10], [4, 5], [8, 9], [5, 9]])
    assert cluster_roots(12, pairs).tolist() == [0, 1, 2, 1, 4, 4, 6, 1, 4, 4, 1, 11]
    assert cluster_roots(3, np.zeros((0, 2), dtype=np.int64)).tolist() == [0, 1, 2]
    # A long path given in the worst order for hooking still resolves to its minimum.
    path = np.stack([np.arange(1, 500), np.arange(0, 499)], axis=1)[::-1]
    assert (cluster_roots(500, path) == 0).all()


def test_band_keys_follow_bands() -> None:
    config = DedupConfig(num_perm=16, bands=4)
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(3, 16), dtype=np.uint64).astype(np.uint32)
    sig[1] = sig[0]
    sig[1, 9] ^= 1  # row 9 lies in band 2 (rows 8-11)
    keys = band_keys(sig, config)
    assert keys.shape == (3, 4) and keys.dtype == np.uint64
    assert (keys[0] == keys[1]).tolist() == [True, True, False, True]
    assert not (keys[0] == keys[2]).any()
    with pytest.raises(ValueError, match="permutations"):
        band_keys(sig, DedupConfig())


def test_candidate_pairs_in_buckets() -> None:
    keys = np.array([[5, 1], [6, 2], [5, 3], [7, 2], [5, 4], [8, 9]], dtype=np.uint64)
    # Band 0: bucket {0, 2, 4}; band 1: bucket {1, 3}.
    assert candidate_pairs(keys).tolist() == [[0, 2], [0, 4], [1, 3], [2, 4]]
    # Empty-document bands never pair.
    assert candidate_pairs(keys, empty_key=np.uint64(5)).tolist() == [[1, 3]]


def test_candidate_pairs_window_bounds_large_buckets() -> None:
    keys = np.zeros((30, 1), dtype=np.uint64)
    pairs = candidate_pairs(keys, window=3)
    expected = {(0, j) for j in range(1, 30)} | {(j - d, j) for j in range(30) for d in (1, 2, 3) if j - d >= 0}
    assert {tuple(p) for p in pairs.tolist()} == expected


def test_verify_pairs_counts_agreements() -> None:
    sig = np.zeros((3, 128), dtype=np.uint32)
    sig[1, :25] = 1  # 103 of 128 agree with row 0: 0.8047
    sig[2, :26] = 1  # 102 agree: 0.7969
    pairs = np.array([[0, 1], [0, 2], [1, 2]])
    assert verify_pairs(pairs, sig, 0.8).tolist() == [True, False, True]
    assert verify_pairs(pairs, sig, 0.79).tolist() == [True, True, True]


def test_threshold_none_keeps_every_band_collision() -> None:
    sig = np.full((2, 128), 7, dtype=np.uint32)
    sig[1, 8:] = np.arange(120)  # only band 0 agrees: an estimated Jaccard of 1/16
    keys = band_keys(sig, DedupConfig())
    assert near_duplicate_roots(keys, DedupConfig(threshold=None)).tolist() == [0, 0]
    assert near_duplicate_roots(keys, DedupConfig(), sig).tolist() == [0, 1]
    with pytest.raises(ValueError, match="signatures"):
        near_duplicate_roots(keys, DedupConfig())


def test_global_pass_over_memory_mapped_shards(tmp_path: Path) -> None:
    config = DedupConfig()
    hasher = MinHasher(config)
    texts = _planted_corpus(chinese=False, seed=5)
    shards = [texts[:30], texts[30:55], texts[55:]]
    for k, shard in enumerate(shards):  # what each worker saves
        signatures = hasher.signatures(shard)
        np.save(tmp_path / f"sig{k}.npy", signatures)
        np.save(tmp_path / f"keys{k}.npy", band_keys(signatures, config))
    keys = np.concatenate([np.load(tmp_path / f"keys{k}.npy") for k in range(3)])
    rows = ConcatenatedRows([np.load(tmp_path / f"sig{k}.npy", mmap_mode="r") for k in range(3)])
    assert rows.shape == (len(texts), 128)
    in_memory = near_duplicate_roots(band_keys(all_sig := hasher.signatures(texts), config), config, all_sig)
    assert (in_memory != np.arange(len(texts))).sum() >= 10
    np.testing.assert_array_equal(near_duplicate_roots(keys, config, rows), in_memory)
    np.testing.assert_array_equal(rows[np.array([59, 0, 31])], all_sig[[59, 0, 31]])


def test_empty_signature_constant() -> None:
    config = DedupConfig()
    empty = np.full((4, 128), EMPTY, dtype=np.uint32)
    assert not find_near_duplicates(empty, config).any()
    assert find_near_duplicates(np.zeros((0, 128), dtype=np.uint32), config).tolist() == []
