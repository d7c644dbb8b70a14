"""The knowledge base on disk: an atomic, versioned folder.

```
KB/
  CURRENT            "v3": the version readers open (replaced atomically, last)
  v3/
    manifest.json    format, version, chunk size, tokenizer, embedder identity, files (hash, chunks), problems
    chunks.jsonl     one chunk a line: id, source, doc_id, start, end, heading, text
    vectors.npy      float32 [chunks, dim], L2-normalised (only with an embedder)
    bm25/            bm25s' own saved index over heading + text
    calibration.json the gate (only once calibrated; carried into later versions)
```
A build writes a new version folder under a temporary name, renames it into place and then points
CURRENT at it, so a reader (or a crash) never sees a half-written index. The previous version is kept
for readers that opened it a moment ago; older ones are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PuyuError, one_line
from ..io import atomic_write_text

FORMAT = "puyu-kb"
FORMAT_VERSION = 1
_VERSION_NAME = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a document; `text` is `document_text[start:end]`.

    Args:
        id: stable for the same file content: "<hash of file path and content>-<n>".
        source: the file, as it was named when built.
        doc_id: the document within the file (a JSON Lines line or CSV row has its own).
        start: first character of the span in the document.
        end: one past the last character.
        heading: the Markdown heading path above the chunk ("" when none).
        text: the chunk's text.
    """

    id: str
    source: str
    doc_id: str
    start: int
    end: int
    heading: str
    text: str

    @property
    def indexed_text(self) -> str:
        """What BM25 and the embedder see: the heading path, then the text."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Snapshot:
    """One version of a knowledge base, as read from disk."""

    folder: Path
    manifest: dict[str, Any]
    chunks: list[Chunk]
    vectors: np.ndarray | None
    calibration: dict[str, Any] | None

    @property
    def version(self) -> int:
        return int(self.manifest["version"])


def current_version(kb: Path) -> Path | None:
    """The folder CURRENT points at, or None for a knowledge base never built."""
    pointer = kb / "CURRENT"
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    if not _VERSION_NAME.match(name) or not (kb / name).is_dir():
        raise PuyuError(f"{kb}: damaged knowledge base (CURRENT names {name!r}, which is not a version folder)")
    return kb / name


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PuyuError(f"{path}: damaged knowledge base file: {one_line(exc)}") from None


def read_snapshot(kb: str | Path) -> Snapshot:
    """The current version of the knowledge base at `kb`.

    Raises:
        PuyuError: not a knowledge base, a newer format, or damaged files.
    """
    kb = Path(kb)
    folder = current_version(kb)
    if folder is None:
        raise PuyuError(f"{kb}: not a knowledge base (no CURRENT file; build one with `puyu kb build`)")
    manifest = _read_json(folder / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PuyuError(f"{kb}: not a puyu knowledge base (manifest format {manifest.get('format')!r})")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise PuyuError(f"{kb}: written by a newer puyu (format {manifest['format_version']}; this one reads 1)")
    chunks = []
    with (folder / "chunks.jsonl").open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                chunks.append(Chunk(**json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise PuyuError(f"{folder / 'chunks.jsonl'}:{number}: damaged chunk: {one_line(exc)}") from None
    vectors = None
    if (folder / "vectors.npy").is_file():
        vectors = np.load(folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
        if vectors.shape[0] != len(chunks):
            raise PuyuError(f"{kb}: damaged knowledge base ({vectors.shape[0]} vectors for {len(chunks)} chunks)")
    calibration = _read_json(folder / "calibration.json") if (folder / "calibration.json").is_file() else None
    return Snapshot(folder, manifest, chunks, vectors, calibration)


@contextlib.contextmanager
def locked(kb: Path) -> Iterator[None]:
    """Hold the knowledge base's write lock: one build, removal or calibration at a time."""
    kb.mkdir(parents=True, exist_ok=True)
    with (kb / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_version(
    kb: Path,
    manifest: dict[str, Any],
    chunks: list[Chunk],
    vectors: np.ndarray | None,
    write_sparse: Any,
    calibration: dict[str, Any] | None,
) -> Path:
    """Write a new version and make it current (call under `locked`).

    Args:
        kb: the knowledge base folder.
        manifest: everything but "format", "format_version" and "version", which are filled in here.
        chunks: all chunks, in index order.
        vectors: one row per chunk, or None without an embedder.
        write_sparse: called with the folder to save the BM25 index in.
        calibration: the gate to carry, or None.
    """
    previous = current_version(kb)
    number = int(previous.name[1:]) + 1 if previous is not None else 1
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "version": number, **manifest}
    staging = Path(tempfile.mkdtemp(prefix=f".v{number}.", dir=kb))
    try:
        with (staging / "chunks.jsonl").open("w", encoding="utf-8") as out:
            for chunk in chunks:
                out.write(json.dumps(chunk.to_json(), ensure_ascii=False) + "\n")
        if vectors is not None:
            np.save(staging / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        write_sparse(staging / "bm25")
        if calibration is not None:
            (staging / "calibration.json").write_text(json.dumps(calibration, indent=1), encoding="utf-8")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
        staging.chmod(0o755)
        final = kb / f"v{number}"
        if final.exists():  # left by a crash between the rename and CURRENT: never current, safe to drop
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    atomic_write_text(kb / "CURRENT", final.name + "\n")
    for entry in kb.iterdir():
        match = _VERSION_NAME.match(entry.name)
        if match and int(match.group(1)) < number - 1:
            shutil.rmtree(entry, ignore_errors=True)
    return final


def replace_calibration(kb: Path, calibration: dict[str, Any]) -> None:
    """Store the gate with the current version (atomically; call under `locked`)."""
    folder = current_version(kb)
    if folder is None:
        raise PuyuError(f"{kb}: not a knowledge base")
    atomic_write_text(folder / "calibration.json", json.dumps(calibration, indent=1))
