"""The knowledge-base assistant: structure-aware chunks with spans, an incremental index, BM25 + dense
retrieval fused by RRF, a refuse-to-answer gate calibrated per knowledge base, and answers with citations."""

from .build import BuildReport, build
from .retrieval import Hit, KnowledgeBase
from .store import Chunk

__all__ = ["BuildReport", "Chunk", "Hit", "KnowledgeBase", "build"]
