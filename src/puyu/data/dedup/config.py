"""Settings of exact and near-duplicate removal."""

from __future__ import annotations

from dataclasses import dataclass

from puyu.errors import PuyuError


@dataclass
class DedupConfig:
    """What counts as a duplicate.

    Defaults follow common practice for pretraining corpora (datatrove, data-juicer, the Gopher and
    RefinedWeb recipes): 5-gram shingles, 128 permutations in 16 bands of 8 rows, whose S-curve
    threshold (1/bands)^(1/rows) is about 0.71; candidates are then verified at an estimated Jaccard
    similarity of 0.75. Verifying at 0.75 rather than 0.8 is deliberate: with 128 permutations the estimate's
    standard deviation near J = 0.8 is about 0.035, so verifying at exactly 0.8 loses a quarter of the pairs
    with true J in [0.80, 0.85]. Measured (benchmarks/data_dedup.py): recall 0.985 for pairs at J >= 0.8,
    with 99.7% of removals at J >= 0.7.

    Args:
        exact: remove documents whose normalised text equals an earlier one's.
        near: remove documents whose shingle set is close (MinHash LSH) to an earlier one's.
        ngram: shingle size: words for space-delimited text, characters for text whose dominant
            script is written without spaces (Chinese, Japanese, Thai).
        num_perm: number of MinHash permutations (signature length).
        bands: LSH bands; `num_perm` must be a multiple of it (rows per band = num_perm // bands).
        threshold: a pair of documents that share a band counts only if the share of equal
            signature entries (the MinHash estimate of their Jaccard similarity) is at least this;
            None counts every band collision.
        seed: picks the hash functions; signatures are comparable only under the same seed,
            `ngram` and `num_perm`.
    """

    exact: bool = True
    near: bool = True
    ngram: int = 5
    num_perm: int = 128
    bands: int = 16
    threshold: float | None = 0.75
    seed: int = 1

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise PuyuError(f"dedup: ngram must be at least 1, got {self.ngram}")
        if self.num_perm < 1 or self.bands < 1 or self.num_perm % self.bands:
            raise PuyuError(f"dedup: num_perm ({self.num_perm}) must be a positive multiple of bands ({self.bands})")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise PuyuError(f"dedup: threshold must be in (0, 1] or None, got {self.threshold}")
        if self.seed < 0:
            raise PuyuError(f"dedup: seed must be non-negative, got {self.seed}")

    @property
    def rows(self) -> int:
        """Signature entries per band."""
        return self.num_perm // self.bands

    @property
    def lsh_threshold(self) -> float:
        """Jaccard similarity at which a pair becomes a candidate with probability about 1/2."""
        return (1.0 / self.bands) ** (1.0 / self.rows)
