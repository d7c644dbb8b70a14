"""`local:KB`: a knowledge base as a search backend (offline).

The knowledge base is anything with `retrieve(query, k)` returning chunks that have `source`, `start`, `end`,
`text` (and optionally `title`) — the `KnowledgeBase` protocol below. `open_knowledge_base(path)` makes one from
a path through the opener registered with `register_kb_opener` (the knowledge-base package registers its own);
without one, a folder of text files is indexed in memory with BM25 (`bm25s`) as a stand-in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from puyu.errors import PuyuError
from puyu.search.backends.base import BackendError, SearchResult


@dataclass
class KBChunk:
    """A span of a knowledge-base document."""

    source: str
    start: int
    end: int
    text: str
    title: str | None = None


@runtime_checkable
class KnowledgeBase(Protocol):
    """What search needs from a knowledge base: the best `k` chunks for a query (may block; run in a thread)."""

    def retrieve(self, query: str, k: int) -> list[Any]: ...


_OPENERS: list[Callable[[str], KnowledgeBase | None]] = []


def register_kb_opener(opener: Callable[[str], KnowledgeBase | None]) -> None:
    """Add a way to open `local:PATH` (return None when `PATH` is not yours); the latest registered is tried first."""
    _OPENERS.insert(0, opener)


class BuiltKnowledgeBase:
    """A knowledge base built by `puyu kb build`, searched with its own hybrid retrieval (BM25, plus dense vectors
    when it has an embedder)."""

    def __init__(self, path: str | Path) -> None:
        from puyu.kb.retrieval import KnowledgeBase as Built

        self.kb = Built.open(path)

    def retrieve(self, query: str, k: int) -> list[KBChunk]:
        hits = self.kb.search(query, k)
        return [
            KBChunk(h.chunk.source, h.chunk.start, h.chunk.end, h.chunk.text, h.chunk.heading or None) for h in hits
        ]


def open_knowledge_base(path: str) -> KnowledgeBase:
    """The knowledge base at `path`: through a registered opener, a `puyu kb build` folder, else a folder of
    .txt/.md files (BM25)."""
    for opener in _OPENERS:
        kb = opener(path)
        if kb is not None:
            return kb
    folder = Path(path)
    if _is_built(folder):
        return BuiltKnowledgeBase(folder)
    if folder.is_dir():
        return FolderKB(folder)
    raise PuyuError(f"local:{path}: not a knowledge base (no opener knows it, and it is not a folder)")


def _is_built(folder: Path) -> bool:
    """Whether `folder` is a knowledge base written by `puyu kb build` (it has a current version)."""
    from puyu.kb.store import current_version

    return folder.is_dir() and current_version(folder) is not None


class LocalBackend:
    """Search over a knowledge base: results are its chunks, reading one costs nothing (the text is in hand)."""

    def __init__(self, kb: KnowledgeBase, name: str = "local") -> None:
        self.kb = kb
        self.name = name

    async def search(self, query: str, k: int) -> list[SearchResult]:
        try:
            chunks = await asyncio.to_thread(self.kb.retrieve, query, k)
        except PuyuError as exc:
            raise BackendError(f"{self.name}: {exc}") from exc
        results = []
        for chunk in list(chunks)[:k]:
            text = str(getattr(chunk, "text", ""))
            source = str(getattr(chunk, "source", ""))
            start, end = getattr(chunk, "start", None), getattr(chunk, "end", None)
            title = getattr(chunk, "title", None) or f"{Path(source).name} [{start}-{end}]"
            results.append(
                SearchResult(title=str(title), snippet=text[:200], source=source, start=start, end=end, text=text)
            )
        return results

    async def read(self, result: SearchResult) -> str:
        return result.text or result.snippet


class FolderKB:
    """A stand-in knowledge base: the .txt/.md files of a folder, cut into paragraph chunks, ranked by BM25.

    Args:
        folder: the documents.
        chunk_chars: most characters per chunk (paragraphs are joined up to this).
    """

    def __init__(self, folder: Path, chunk_chars: int = 800) -> None:
        try:
            import bm25s
        except ImportError:
            raise PuyuError("local:FOLDER needs bm25s (pip install bm25s) or a knowledge base") from None
        self.chunks: list[KBChunk] = []
        for path in sorted([*folder.rglob("*.txt"), *folder.rglob("*.md")]):
            self.chunks.extend(chunk_text(path.read_text(encoding="utf-8", errors="replace"), str(path), chunk_chars))
        if not self.chunks:
            raise PuyuError(f"{folder}: no .txt or .md documents")
        self._bm25 = bm25s
        self.index = bm25s.BM25()
        self.index.index(bm25s.tokenize([c.text for c in self.chunks], show_progress=False), show_progress=False)

    def retrieve(self, query: str, k: int) -> list[KBChunk]:
        k = max(1, min(k, len(self.chunks)))
        tokens = self._bm25.tokenize([query], show_progress=False)
        if not tokens.vocab:
            return []
        ids, scores = self.index.retrieve(tokens, k=k, show_progress=False)
        return [self.chunks[int(i)] for i, s in zip(ids[0], scores[0], strict=True) if s > 0]


def chunk_text(text: str, source: str, chunk_chars: int) -> list[KBChunk]:
    """Paragraphs (blank-line separated) joined into chunks of at most `chunk_chars`, with their spans."""
    chunks: list[KBChunk] = []
    start = end = 0
    position = 0
    for paragraph in text.split("\n\n"):
        p_start = text.index(paragraph, position) if paragraph else position
        p_end = p_start + len(paragraph)
        position = p_end
        if not paragraph.strip():
            continue
        if end > start and p_end - start > chunk_chars:
            chunks.append(KBChunk(source, start, end, text[start:end]))
            start = p_start
        if end <= start:
            start = p_start
        end = p_end
    if end > start:
        chunks.append(KBChunk(source, start, end, text[start:end]))
    return chunks
