from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import bm25s
import numpy as np
import pytest
from kb_support import make_encoder_folder, write_corpus

from puyu.kb import KnowledgeBase, build
from puyu.kb.embedders import EncoderEmbedder
from puyu.kb.fusion import reciprocal_rank_fusion, top_k
from puyu.kb.text_tokens import tokenize


@pytest.fixture(scope="module")
def hybrid_kb(tmp_path_factory: pytest.TempPathFactory, encoder_folder: Path) -> KnowledgeBase:
    root = tmp_path_factory.mktemp("hybrid")
    build([write_corpus(root / "docs")], root / "kb", embedder=EncoderEmbedder(encoder_folder), chunk_size=120)
    return KnowledgeBase.open(root / "kb")


def _lucene_bm25(corpus: list[list[str]], query: list[str], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """BM25 as Lucene (8 and later, without the constant (k1 + 1) factor) defines it, written out."""
    n, average = len(corpus), sum(map(len, corpus)) / len(corpus)
    df = Counter(term for doc in corpus for term in set(doc))
    scores = np.zeros(n)
    for i, doc in enumerate(corpus):
        tf = Counter(doc)
        for term in set(query):
            if tf[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                scores[i] += idf * tf[term] / (tf[term] + k1 * (1 - b + b * len(doc) / average))
    return scores


@pytest.mark.parametrize("query", ["paged attention blocks", "知识库 检索", "server port 8000 openai", "nothing"])
def test_bm25_equals_bm25s_and_the_formula(hybrid_kb: KnowledgeBase, query: str) -> None:
    corpus = [tokenize(chunk.indexed_text) for chunk in hybrid_kb.chunks]
    reference = bm25s.BM25()
    reference.index(corpus, show_progress=False)
    terms = [t for t in tokenize(query) if t in reference.vocab_dict]
    expected = reference.get_scores(terms) if terms else np.zeros(len(corpus))
    np.testing.assert_allclose(hybrid_kb.bm25_scores(query), expected, rtol=1e-5)
    np.testing.assert_allclose(hybrid_kb.bm25_scores(query), _lucene_bm25(corpus, tokenize(query)), rtol=1e-4)


def test_dense_search_equals_brute_force_cosine(hybrid_kb: KnowledgeBase, encoder_folder: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(encoder_folder), device="cpu")
    texts = [chunk.indexed_text for chunk in hybrid_kb.chunks]
    matrix = model.encode(texts, normalize_embeddings=True)
    query = model.encode(["how does the server stream"], normalize_embeddings=True)[0]
    cosine = matrix @ query
    np.testing.assert_allclose(hybrid_kb.dense_scores("how does the server stream"), cosine, atol=1e-5)
    hits = hybrid_kb.search("how does the server stream", k=3, mode="dense")
    assert [hit.chunk.id for hit in hits] == [hybrid_kb.chunks[i].id for i in np.argsort(-cosine)[:3]]


def test_hybrid_search_is_rrf_of_both_rankings(hybrid_kb: KnowledgeBase) -> None:
    query = "BM25 rarity of terms"
    bm25, dense = hybrid_kb.bm25_scores(query), hybrid_kb.dense_scores(query)
    sparse_rank = [i for i in np.argsort(-bm25, kind="stable") if bm25[i] > 0]
    dense_rank = list(np.argsort(-dense, kind="stable"))
    fused = {}
    for ranking in (sparse_rank, dense_rank):
        for rank, i in enumerate(ranking, start=1):
            fused[int(i)] = fused.get(int(i), 0) + 1 / (60 + rank)
    best = sorted(fused, key=lambda i: -fused[i])[:4]
    hits = hybrid_kb.search(query, k=4)
    assert [hit.chunk.id for hit in hits] == [hybrid_kb.chunks[i].id for i in best]
    assert hits[0].score == pytest.approx(fused[best[0]])


def test_rrf_on_hand_computed_ranks() -> None:
    fused = dict(reciprocal_rank_fusion([[7, 3, 5], [3, 9]], k=60))
    assert fused == pytest.approx({3: 1 / 62 + 1 / 61, 7: 1 / 61, 9: 1 / 62, 5: 1 / 63})
    assert [i for i, _ in reciprocal_rank_fusion([[7, 3, 5], [3, 9]])] == [3, 7, 9, 5]
    assert top_k(np.array([0.1, 0.9, 0.9, 0.5]), 3) == [1, 2, 3]


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_encoder_equals_sentence_transformers(tmp_path: Path, pooling: str) -> None:
    from sentence_transformers import SentenceTransformer

    folder = make_encoder_folder(tmp_path / pooling, pooling=pooling, normalize=False)
    texts = ["BM25 ranks documents", "知识库助手只回答问题", "the server listens on port 8000 " * 3]
    expected = SentenceTransformer(str(folder), device="cpu").encode(texts)
    np.testing.assert_allclose(EncoderEmbedder(folder).raw_embed(texts), expected, atol=1e-5)


def test_bm25_only_without_an_embedder(tmp_path: Path) -> None:
    build([write_corpus(tmp_path / "docs")], tmp_path / "kb")
    kb = KnowledgeBase.open(tmp_path / "kb")
    assert kb.mode == "bm25" and kb.describe()["retrieval"] == "bm25"
    assert kb.search("知识库", k=1)[0].chunk.source.endswith("zh.txt")
    assert "dense_top" not in kb.signals("x")
