"""BM25 over the chunks (bm25s, Lucene's variant), saved with the index and loaded memory-mapped."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import bm25s
import numpy as np

from .text_tokens import tokenize

_NO_TERM = "\x00"


class SparseIndex:
    """BM25 scores of every chunk for a query.

    Args:
        retriever: a bm25s index over the chunks, in chunk order.
        tokenizer: how texts become terms ("bigram" or "jieba"); queries are cut the same way.
    """

    def __init__(self, retriever: bm25s.BM25, tokenizer: str) -> None:
        self.retriever = retriever
        self.tokenizer = tokenizer

    @classmethod
    def build(cls, texts: list[str], tokenizer: str) -> SparseIndex:
        retriever = bm25s.BM25()
        corpus = [tokenize(text, tokenizer) for text in texts]
        if not any(corpus):
            # An empty knowledge base is legal; bm25s needs one term, so index one no query can contain.
            corpus = [*corpus, [_NO_TERM]] if corpus else [[_NO_TERM]]
        retriever.index(corpus, show_progress=False)
        return cls(retriever, tokenizer)

    def save(self, folder: Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self.retriever.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, tokenizer: str) -> SparseIndex:
        with contextlib.redirect_stdout(io.StringIO()):
            retriever = bm25s.BM25.load(str(folder), mmap=False, show_progress=False, verbosity=0)
        return cls(retriever, tokenizer)

    def query_terms(self, query: str) -> list[str]:
        return tokenize(query, self.tokenizer)

    def scores(self, query: str, count: int) -> np.ndarray:
        """BM25 score of each of the first `count` chunks (0 for a query with no known term)."""
        terms = [term for term in self.query_terms(query) if term in self.retriever.vocab_dict]
        if not terms or count == 0:
            return np.zeros(count, dtype=np.float32)
        return np.asarray(self.retriever.get_scores(terms), dtype=np.float32)[:count]
