"""Exact and near-duplicate detection for corpora spread over many shards.

Two phases. Per shard (in worker processes): `exact_keys(texts)` and `MinHasher(config).signatures(texts)`,
saved with `np.save` (optionally `band_keys(signatures, config)` too). Then one global pass over the
concatenation in corpus order (shard index, then position): `find_exact_duplicates(keys)` and
`find_near_duplicates(signatures, config)` (or `near_duplicate_roots(band_keys, config, signatures)`
with per-shard memory maps in `ConcatenatedRows`), which mark every document that has an earlier
duplicate; the first occurrence is kept. All hashing is seeded and platform-independent.

    config = DedupConfig()
    signatures = MinHasher(config).signatures(texts)   # uint32 [N, 128]
    drop = find_exact_duplicates(exact_keys(texts)) | find_near_duplicates(signatures, config)
"""

from puyu.data.dedup.config import DedupConfig
from puyu.data.dedup.exact import exact_key, exact_keys, find_exact_duplicates
from puyu.data.dedup.lsh import (
    ConcatenatedRows,
    band_keys,
    candidate_pairs,
    cluster_roots,
    find_near_duplicates,
    near_duplicate_roots,
    verify_pairs,
)
from puyu.data.dedup.minhash import EMPTY, MinHasher
from puyu.data.dedup.text import shingles

__all__ = [
    "EMPTY",
    "ConcatenatedRows",
    "DedupConfig",
    "MinHasher",
    "band_keys",
    "candidate_pairs",
    "cluster_roots",
    "exact_key",
    "exact_keys",
    "find_exact_duplicates",
    "find_near_duplicates",
    "near_duplicate_roots",
    "shingles",
    "verify_pairs",
]
