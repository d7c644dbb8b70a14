"""Build a knowledge base, and keep it up to date incrementally.

A build compares each file's content hash with the last version's: unchanged files keep their chunks and
vectors (embedding is the expensive part), added or changed files are read and chunked again, and
files that are gone are dropped. BM25 is rebuilt over all chunks each time, since its document
frequencies are global. The result equals a build from scratch over the same files.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.document import Tally
from ..errors import PuyuError
from .chunking import DEFAULT_CHUNK_SIZE, chunk_spans, kind_of
from .embedders import Embedder, load_embedder, same_embedder
from .files import content_hash, list_files, read_file
from .sparse import SparseIndex
from .store import Chunk, Snapshot, locked, read_snapshot, write_version
from .text_tokens import DEFAULT_TOKENIZER, TOKENIZERS


@dataclass
class BuildReport:
    """What a build did."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    documents: int = 0
    chunks: int = 0
    embedded: int = 0
    version: int = 0
    embedder: str | None = None
    seconds: float = 0.0
    bytes_read: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    problem_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _chunk_file(path: Path, key: str, digest: str, chunk_size: int, tally: Tally) -> tuple[list[Chunk], int]:
    prefix = hashlib.sha1(f"{key}\0{digest}".encode()).hexdigest()[:12]
    chunks: list[Chunk] = []
    documents = 0
    for document in read_file(path, tally):
        documents += 1
        for span in chunk_spans(document.text, kind_of(path.name), chunk_size):
            chunks.append(
                Chunk(
                    id=f"{prefix}-{len(chunks)}",
                    source=str(path),
                    doc_id=document.id,
                    start=span.start,
                    end=span.end,
                    heading=span.heading,
                    text=document.text[span.start : span.end],
                )
            )
    return chunks, documents


def _is_under(key: str, folders: list[str]) -> bool:
    return any(key.startswith(folder.rstrip(os.sep) + os.sep) for folder in folders)


def _previous(kb: Path) -> Snapshot | None:
    return read_snapshot(kb) if (kb / "CURRENT").is_file() else None


def _resolve_embedder(previous: Snapshot | None, embedder: Embedder | None, kb: Path) -> Embedder | None:
    stored = previous.manifest.get("embedder") if previous is not None else None
    if previous is None or not previous.chunks:
        return embedder
    if embedder is None:
        if stored is None:
            return None
        # A knowledge base built with an embedder keeps using it: the new chunks need vectors like the others.
        return load_embedder(stored.get("path") or stored["url"], model=stored.get("name"))
    if not same_embedder(stored, embedder.identity):
        have = stored["name"] if stored else "no embedder (BM25 only)"
        raise PuyuError(
            f"{kb} was built with {have}; it cannot take vectors from {embedder.identity['name']} "
            "(build a new knowledge base, or build without --embedder)"
        )
    return embedder


def build(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    embedder: Embedder | None = None,
    chunk_size: int | None = None,
    tokenizer: str | None = None,
    remove: Sequence[str | os.PathLike[str]] = (),
) -> BuildReport:
    """Build or update the knowledge base at `out` from files and folders.

    A file seen before with the same content keeps its chunks and vectors; a file known from an earlier
    build that no longer exists, or that sits under a folder named in `inputs` but was not found there,
    is removed. Files named in `remove` are dropped.

    Args:
        inputs: files and folders (recursively) to read; may be empty when only removing.
        out: the knowledge base folder (created when missing).
        embedder: makes dense vectors; None keeps the knowledge base's own (BM25 only for a new one).
        chunk_size: most characters per chunk (default: the knowledge base's, else 800); a change re-chunks all.
        tokenizer: BM25 terms, "bigram" or "jieba" (default: the knowledge base's, else bigram).
        remove: files to drop, by path.

    Raises:
        PuyuError: unreadable inputs, or an embedder other than the one the knowledge base was built with.
    """
    began = time.perf_counter()
    kb = Path(out)
    if kb.exists() and not kb.is_dir():
        raise PuyuError(f"{kb}: exists and is not a folder")
    tally = Tally()
    files = list_files(inputs, tally) if inputs else []
    with locked(kb):
        previous = _previous(kb)
        old_manifest = previous.manifest if previous is not None else {}
        chunk_size = chunk_size or old_manifest.get("chunk_size") or DEFAULT_CHUNK_SIZE
        tokenizer = tokenizer or old_manifest.get("tokenizer") or DEFAULT_TOKENIZER
        if tokenizer not in TOKENIZERS:
            raise PuyuError(f"unknown tokenizer {tokenizer!r} (known: {', '.join(TOKENIZERS)})")
        if chunk_size < 16:
            raise PuyuError(f"--chunk-size must be at least 16 characters, got {chunk_size}")
        embedder = _resolve_embedder(previous, embedder, kb)
        rechunk = chunk_size != old_manifest.get("chunk_size")
        old_files: dict[str, dict[str, Any]] = dict(old_manifest.get("files", {}))
        old_by_key: dict[str, list[tuple[Chunk, np.ndarray | None]]] = {}
        if previous is not None:
            source_key = {entry["source"]: key for key, entry in old_files.items()}
            for row, chunk in enumerate(previous.chunks):
                vector = previous.vectors[row] if previous.vectors is not None else None
                old_by_key.setdefault(source_key.get(chunk.source, chunk.source), []).append((chunk, vector))

        report = BuildReport()
        removed_keys = {os.path.realpath(path) for path in remove}
        removed_keys |= {key for key, entry in old_files.items() if entry["source"] in {str(p) for p in remove}}
        folders = [os.path.realpath(entry) for entry in inputs if Path(entry).is_dir()]
        seen = {os.path.realpath(path) for path in files}
        for key in list(old_files):
            if key in removed_keys or (key not in seen and (not os.path.exists(key) or _is_under(key, folders))):
                report.removed.append(old_files.pop(key)["source"])

        new_files: dict[str, dict[str, Any]] = {}
        fresh: dict[str, list[Chunk]] = {}
        for path in files:
            key = os.path.realpath(path)
            if key in removed_keys:
                continue
            digest = content_hash(path)
            report.bytes_read += path.stat().st_size
            known = old_files.pop(key, None)
            if known is not None and known["sha256"] == digest and not rechunk:
                new_files[key] = known
                report.unchanged += 1
                continue
            (report.changed if known is not None else report.added).append(str(path))
            chunks, documents = _chunk_file(path, key, digest, chunk_size, tally)
            fresh[key] = chunks
            new_files[key] = {"source": str(path), "sha256": digest, "documents": documents, "chunks": len(chunks)}
        for key, entry in old_files.items():  # known files not named this time and still on disk: kept
            if rechunk:
                fresh[key], entry["documents"] = _chunk_file(Path(key), key, content_hash(Path(key)), chunk_size, tally)
                entry["chunks"] = len(fresh[key])
            else:
                report.unchanged += 1
            new_files[key] = entry

        same_terms = tokenizer == old_manifest.get("tokenizer")
        if (
            previous is not None
            and not (fresh or report.removed)
            and same_terms
            and embedder_unchanged(previous, embedder)
        ):
            # Nothing changed: the current version stays (re-indexing BM25 would only cost time).
            return _finished(report, previous.manifest, previous.version, len(previous.chunks), embedder, tally, began)
        chunks: list[Chunk] = []
        rows: list[np.ndarray | None] = []
        to_embed: list[int] = []
        for key in sorted(new_files):
            if key in fresh:
                for chunk in fresh[key]:
                    to_embed.append(len(chunks))
                    chunks.append(chunk)
                    rows.append(None)
            else:
                for chunk, vector in old_by_key.get(key, []):
                    chunks.append(chunk)
                    rows.append(np.asarray(vector) if vector is not None else None)
                    if vector is None and embedder is not None:
                        to_embed.append(len(chunks) - 1)

        vectors = None
        if embedder is not None:
            dim = int(embedder.identity["dim"])
            vectors = np.zeros((len(chunks), dim), dtype=np.float32)
            for row, vector in enumerate(rows):
                if vector is not None:
                    vectors[row] = vector
            if to_embed:
                vectors[to_embed] = embedder.embed([chunks[i].indexed_text for i in to_embed])
            report.embedded = len(to_embed)
        sparse = SparseIndex.build([chunk.indexed_text for chunk in chunks], tokenizer)
        manifest = {
            "chunk_size": chunk_size,
            "tokenizer": tokenizer,
            "embedder": embedder.identity if embedder is not None else None,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": new_files,
            "problems": tally.to_json()["problems"],
            "problem_count": tally.problem_count,
        }
        calibration = previous.calibration if previous is not None else None
        folder = write_version(kb, manifest, chunks, vectors, sparse.save, calibration)
    return _finished(report, manifest, int(folder.name[1:]), len(chunks), embedder, tally, began)


def embedder_unchanged(previous: Snapshot, embedder: Embedder | None) -> bool:
    stored = previous.manifest.get("embedder")
    return (embedder is None and stored is None) or (embedder is not None and same_embedder(stored, embedder.identity))


def _finished(
    report: BuildReport,
    manifest: dict[str, Any],
    version: int,
    chunks: int,
    embedder: Embedder | None,
    tally: Tally,
    began: float,
) -> BuildReport:
    report.version = version
    report.documents = sum(int(entry["documents"]) for entry in manifest["files"].values())
    report.chunks = chunks
    report.embedder = embedder.identity["name"] if embedder is not None else None
    report.problems = tally.to_json()["problems"]
    report.problem_count = tally.problem_count
    report.seconds = time.perf_counter() - began
    return report
