"""Search a knowledge base: BM25, dense vectors, or both fused by reciprocal rank; and the signals the
refuse-to-answer gate reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PuyuError
from .embedders import Embedder, load_embedder, same_embedder
from .fusion import reciprocal_rank_fusion, top_k
from .sparse import SparseIndex
from .store import Chunk, Snapshot, read_snapshot

MODES = ("hybrid", "bm25", "dense")
# Each ranker proposes this many candidates to the fusion.
CANDIDATES = 50


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: its fused score, and what each ranker gave it (None when that ranker is off)."""

    chunk: Chunk
    score: float
    bm25: float
    dense: float | None

    def to_json(self) -> dict[str, Any]:
        return {**self.chunk.to_json(), "score": self.score, "bm25": self.bm25, "dense": self.dense}


class KnowledgeBase:
    """A knowledge base opened for search.

    Args:
        snapshot: the version read from disk.
        embedder: embeds queries; None searches with BM25 alone.
    """

    def __init__(self, snapshot: Snapshot, embedder: Embedder | None) -> None:
        self.snapshot = snapshot
        self.chunks = snapshot.chunks
        self.sparse = SparseIndex.load(snapshot.folder / "bm25", snapshot.manifest["tokenizer"])
        self.embedder = embedder
        self.by_id = {chunk.id: chunk for chunk in self.chunks}
        self._recent_vectors: dict[str, np.ndarray] = {}

    @classmethod
    def open(cls, path: str | Path, embedder: Embedder | str | None = "auto") -> KnowledgeBase:
        """Open the current version at `path`.

        Args:
            path: the knowledge base folder.
            embedder: "auto" loads the embedder the knowledge base was built with (BM25 alone if none);
                None searches with BM25 alone; an embedder must be the one it was built with.

        Raises:
            PuyuError: not a knowledge base, or an embedder other than its own.
        """
        snapshot = read_snapshot(path)
        stored = snapshot.manifest.get("embedder")
        if embedder == "auto":
            embedder = load_embedder(stored.get("path") or stored["url"], model=stored["name"]) if stored else None
        elif isinstance(embedder, str):
            raise PuyuError(f"embedder must be 'auto', None or an embedder, got {embedder!r}")
        if embedder is not None and not same_embedder(stored, embedder.identity):
            have = stored["name"] if stored else "no embedder (BM25 only)"
            raise PuyuError(f"{path} was built with {have}, not {embedder.identity['name']}")
        return cls(snapshot, embedder)

    @property
    def dense_ready(self) -> bool:
        return self.embedder is not None and self.snapshot.vectors is not None and len(self.chunks) > 0

    @property
    def mode(self) -> str:
        """ "hybrid" with vectors and an embedder, else "bm25" (the offline default)."""
        return "hybrid" if self.dense_ready else "bm25"

    def describe(self) -> dict[str, Any]:
        manifest = self.snapshot.manifest
        embedder = manifest.get("embedder")
        return {
            "documents": sum(int(entry["documents"]) for entry in manifest["files"].values()),
            "files": len(manifest["files"]),
            "chunks": len(self.chunks),
            "embedder": embedder["name"] if embedder else None,
            "retrieval": self.mode,
            "calibrated": self.snapshot.calibration is not None,
            "version": self.snapshot.version,
        }

    def bm25_scores(self, query: str) -> np.ndarray:
        return self.sparse.scores(query, len(self.chunks))

    def dense_scores(self, query: str) -> np.ndarray:
        """Cosine similarity of the query with every chunk (vectors are normalised)."""
        if not self.dense_ready:
            raise PuyuError("this knowledge base has no dense vectors or no embedder: search it with BM25")
        return np.asarray(self.snapshot.vectors @ self._query_vector(query), dtype=np.float32)

    def _query_vector(self, query: str) -> np.ndarray:
        # The gate's signals and the search embed the same question: embed it once.
        if query not in self._recent_vectors:
            if len(self._recent_vectors) >= 64:
                self._recent_vectors.pop(next(iter(self._recent_vectors)))
            self._recent_vectors[query] = self.embedder.embed([query])[0]
        return self._recent_vectors[query]

    def search(self, query: str, k: int = 5, mode: str | None = None) -> list[Hit]:
        """The `k` best chunks for `query`.

        Args:
            query: any language.
            k: how many chunks.
            mode: "hybrid" (BM25 and dense fused by RRF), "bm25" or "dense"; default: hybrid when it can.
        """
        mode = mode or self.mode
        if mode not in MODES:
            raise PuyuError(f"unknown search mode {mode!r} (known: {', '.join(MODES)})")
        if not self.chunks or not query.strip():
            return []
        bm25 = self.bm25_scores(query)
        dense = self.dense_scores(query) if mode != "bm25" else None
        if mode == "bm25":
            ranked = [(i, float(bm25[i])) for i in top_k(bm25, k) if bm25[i] > 0]
        elif mode == "dense":
            ranked = [(i, float(dense[i])) for i in top_k(dense, k)]
        else:
            sparse_ranking = [i for i in top_k(bm25, CANDIDATES) if bm25[i] > 0]
            ranked = reciprocal_rank_fusion([sparse_ranking, top_k(dense, CANDIDATES)])[:k]
        return [
            Hit(self.chunks[i], score, float(bm25[i]), float(dense[i]) if dense is not None else None)
            for i, score in ranked
        ]

    def signals(self, query: str) -> dict[str, float]:
        """What the gate reads for a question.

        bm25_top: the best BM25 score; bm25_coverage: the share of the question's distinct terms found in
        the best BM25 chunk; known_terms: the share found anywhere in the knowledge base; with vectors,
        dense_top: the best cosine similarity and dense_margin: how far it stands above the tenth best.
        """
        terms = set(self.sparse.query_terms(query))
        bm25 = self.bm25_scores(query) if self.chunks else np.zeros(0, dtype=np.float32)
        best = top_k(bm25, 1)
        signals = {"bm25_top": float(bm25[best[0]]) if best else 0.0, "bm25_coverage": 0.0, "known_terms": 0.0}
        if terms and best:
            best_terms = set(self.sparse.query_terms(self.chunks[best[0]].indexed_text))
            signals["bm25_coverage"] = len(terms & best_terms) / len(terms)
            signals["known_terms"] = sum(term in self.sparse.retriever.vocab_dict for term in terms) / len(terms)
        if self.dense_ready:
            dense = self.dense_scores(query)
            ranked = top_k(dense, 10)
            signals["dense_top"] = float(dense[ranked[0]])
            signals["dense_margin"] = float(dense[ranked[0]] - dense[ranked[-1]])
        return signals
