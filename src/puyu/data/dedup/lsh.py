"""The global near-duplicate pass: LSH band keys, candidate pairs, verification, clusters.

Workers compute signatures per shard (and may compute `band_keys` there too); this pass takes the
concatenation in corpus order (shard index, then position). Memory: the band keys are [N, bands]
uint64 (10M documents × 16 bands = 1.3 GB); the signatures are read only for candidate pairs, so
they can stay on disk (`np.load(..., mmap_mode="r")`, one array per shard in `ConcatenatedRows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from puyu.data.dedup.config import DedupConfig
from puyu.data.dedup.minhash import EMPTY
from puyu.data.dedup.text import derived_constants, fmix64

_KEY_CHUNK = 1 << 16  # documents per band-key block
_PAIR_CHUNK = 1 << 15  # candidate pairs verified per block ([2, 32768, 128] uint32 = 32 MB)
BUCKET_WINDOW = 8  # a bucket member is verified against its first member and the 8 before it


class Rows(Protocol):
    """Anything indexable by an array of row numbers, as an ndarray or a memory map is."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, index: np.ndarray) -> np.ndarray: ...


class ConcatenatedRows:
    """Row access to several arrays as if they were concatenated, without copying them.

    Args:
        parts: arrays (for example per-shard memory maps) with equal trailing dimensions.
    """

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        width = self.parts[0].shape[1:] if self.parts else (0,)
        self.shape = (int(self.offsets[-1]), *width)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        part = np.searchsorted(self.offsets, index, side="right") - 1
        out = np.empty((len(index), *self.shape[1:]), dtype=self.parts[0].dtype)
        for p in np.unique(part):
            mine = part == p
            out[mine] = self.parts[p][index[mine] - self.offsets[p]]
        return out


def _empty_band_key(config: DedupConfig) -> np.uint64:
    return band_keys(np.full((1, config.num_perm), EMPTY, dtype=np.uint32), config)[0, 0]


def band_keys(signatures: np.ndarray, config: DedupConfig) -> np.ndarray:
    """Each band of each signature hashed to one uint64.

    Args:
        signatures: uint32 [N, num_perm].
        config: `bands` and `seed` are used.

    Returns:
        uint64 [N, bands]: equal keys in a column mean (up to a 2^-64 chance) equal bands.
    """
    n, num_perm = signatures.shape
    if num_perm != config.num_perm:
        raise ValueError(f"signatures have {num_perm} permutations, the config {config.num_perm}")
    rows = config.rows
    mult = derived_constants(config.seed, "band-row", rows, odd=True)
    out = np.empty((n, config.bands), dtype=np.uint64)
    for lo in range(0, n, _KEY_CHUNK):
        block = np.asarray(signatures[lo : lo + _KEY_CHUNK]).astype(np.uint64).reshape(-1, config.bands, rows)
        out[lo : lo + _KEY_CHUNK] = fmix64((block * mult).sum(axis=2, dtype=np.uint64))
    return out


def candidate_pairs(keys: np.ndarray, empty_key: np.uint64 | None = None, window: int = BUCKET_WINDOW) -> np.ndarray:
    """Pairs of documents that share a band key.

    Within a bucket (equal key in one band), each member is paired with the bucket's first member
    and with the `window` members before it, so the cost stays linear in bucket size even for a
    bucket of thousands of copies of one boilerplate page.

    Args:
        keys: uint64 [N, bands] from `band_keys`.
        empty_key: the key of an empty document's band; such buckets are skipped.
        window: earlier bucket members each member is paired with, besides the first.

    Returns:
        int64 [P, 2], each row (earlier, later), unique, sorted.
    """
    n = len(keys)
    codes = np.zeros(0, dtype=np.int64)  # pair (i, j) as i * n + j; merged per band to stay small
    for band in range(keys.shape[1]):
        column = keys[:, band]
        order = np.argsort(column, kind="stable")  # stable: indices ascend inside a bucket
        ordered = column[order]
        later = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
        if empty_key is not None:
            later = later[ordered[later] != empty_key]
        if not len(later):
            continue
        is_start = np.ones(n, dtype=bool)
        is_start[later] = False
        group_start = np.where(is_start, np.arange(n), 0)
        np.maximum.accumulate(group_start, out=group_start)
        first = group_start[later]
        found = [codes, order[first] * n + order[later]]
        for back in range(1, window + 1):
            earlier = later - back
            ok = earlier > first
            found.append(order[earlier[ok]] * n + order[later[ok]])
        # Near-duplicates collide in many bands: merging per band keeps memory at the distinct pairs.
        codes = np.unique(np.concatenate(found))
    return np.stack([codes // n, codes % n], axis=1) if n else np.zeros((0, 2), dtype=np.int64)


def verify_pairs(pairs: np.ndarray, signatures: Rows, threshold: float) -> np.ndarray:
    """Which pairs have at least `threshold` of their signature entries equal.

    Args:
        pairs: int64 [P, 2] row numbers into `signatures`.
        signatures: uint32 [N, num_perm], in memory or memory-mapped.
        threshold: the least estimated Jaccard similarity.

    Returns:
        bool [P].
    """
    # Compare counts, not floats: 0.8 * 128 must accept exactly 103 or more agreements.
    need = int(np.ceil(threshold * signatures.shape[1] - 1e-9))
    keep = np.zeros(len(pairs), dtype=bool)
    for lo in range(0, len(pairs), _PAIR_CHUNK):
        block = pairs[lo : lo + _PAIR_CHUNK]
        agree = (signatures[block[:, 0]] == signatures[block[:, 1]]).sum(axis=1)
        keep[lo : lo + _PAIR_CHUNK] = agree >= need
    return keep


def cluster_roots(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of the graph of `pairs`, each named by its smallest member.

    Args:
        n: number of documents.
        pairs: int64 [P, 2] edges.

    Returns:
        int64 [n]: root[i] is the smallest document index connected to i (i itself when alone).
    """
    roots = np.arange(n, dtype=np.int64)
    if not len(pairs):
        return roots
    # Work on the documents that have edges only; np.unique keeps their order, so minima survive.
    nodes, local = np.unique(pairs, return_inverse=True)
    local = local.reshape(-1, 2)
    label = np.arange(len(nodes), dtype=np.int64)
    u, v = local[:, 0], local[:, 1]
    while True:
        lu, lv = label[u], label[v]
        differ = lu != lv
        if not differ.any():
            break
        u, v, lu, lv = u[differ], v[differ], lu[differ], lv[differ]
        # Hook the larger root under the smaller; labels only decrease, so the minimum stays a root.
        np.minimum.at(label, np.maximum(lu, lv), np.minimum(lu, lv))
        while True:  # pointer jumping until every node points at its root
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
    roots[nodes] = nodes[label]
    return roots


def near_duplicate_roots(
    keys: np.ndarray, config: DedupConfig, signatures: Rows | None = None, window: int = BUCKET_WINDOW
) -> np.ndarray:
    """Cluster documents by band collisions (verified when `config.threshold` is set).

    Args:
        keys: uint64 [N, bands] from `band_keys`, concatenated in corpus order.
        config: the configuration the signatures were made with.
        signatures: uint32 [N, num_perm] in the same order; needed when `config.threshold` is set.
        window: see `candidate_pairs`.

    Returns:
        int64 [N]: the index of the earliest document of each document's cluster.
    """
    pairs = candidate_pairs(keys, _empty_band_key(config), window)
    if config.threshold is not None and len(pairs):
        if signatures is None:
            raise ValueError("near-duplicate verification (threshold set) needs the signatures")
        pairs = pairs[verify_pairs(pairs, signatures, config.threshold)]
    return cluster_roots(len(keys), pairs)


def find_near_duplicates(signatures: np.ndarray, config: DedupConfig) -> np.ndarray:
    """Which documents are near-duplicates of an earlier document.

    Args:
        signatures: uint32 [N, num_perm] from `MinHasher.signatures`, concatenated in corpus order.
        config: the configuration the signatures were made with.

    Returns:
        bool [N]: True where the document's cluster has an earlier member; the earliest member of
        each cluster is kept.
    """
    roots = near_duplicate_roots(band_keys(signatures, config), config, signatures)
    return roots != np.arange(len(roots))
