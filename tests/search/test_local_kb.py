"""`local:KB` over a knowledge base built by `puyu kb build`: search results are the knowledge base's own chunks,
with spans that slice back to their text."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kb"))
kb_support = pytest.importorskip("kb_support", reason="the knowledge-base test support is not available")
pytest.importorskip("bm25s", reason="the kb extra is not installed")

from puyu.kb.build import build  # noqa: E402
from puyu.kb.retrieval import KnowledgeBase  # noqa: E402
from puyu.search.backends.local import BuiltKnowledgeBase, LocalBackend, open_knowledge_base  # noqa: E402


def test_a_built_knowledge_base_is_searched_with_its_own_retrieval(tmp_path: Path) -> None:
    docs = kb_support.write_corpus(tmp_path / "docs")
    build([docs], tmp_path / "kb", chunk_size=120)
    opened = open_knowledge_base(str(tmp_path / "kb"))
    assert isinstance(opened, BuiltKnowledgeBase)
    query = "what port does the server listen on"
    expected = KnowledgeBase.open(tmp_path / "kb").search(query, k=3)
    results = asyncio.run(LocalBackend(opened).search(query, 3))
    assert [r.text for r in results][: len(expected)] == [h.chunk.text for h in expected]
    for chunk in opened.retrieve(query, 3):
        document = (docs / Path(chunk.source).name).read_text(encoding="utf-8")
        assert document[chunk.start : chunk.end] == chunk.text
