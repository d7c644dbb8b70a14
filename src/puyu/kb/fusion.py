"""Reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009): score(d) = Σ_r 1 / (k + rank_r(d))."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RRF_K = 60


def top_k(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the `k` highest scores, best first (ties by index, so results are deterministic)."""
    if k <= 0 or scores.size == 0:
        return []
    k = min(k, scores.size)
    candidates = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    return sorted(candidates.tolist(), key=lambda i: (-float(scores[i]), i))


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse ranked lists of ids (best first; rank 1 is the first) into (id, fused score), best first."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))
