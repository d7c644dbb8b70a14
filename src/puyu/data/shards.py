"""Token shards on disk: the writer, the memory-mapped reader and the manifest.

A tokenized dataset is one folder that plain numpy (or any tool reading raw arrays) can use:

* `manifest.json` (written last: a folder with a manifest is complete)::

    {"format": "puyu-token-shards", "version": 1,
     "tokenizer": {"path", "name", "sha256", "vocab_size", "bos_id", "eos_id", "add_bos", "backend"},
     "dtype": "uint16" | "uint32",                  # uint16 when vocab_size <= 65536
     "totals": {"documents", "tokens"},
     "splits": {"train": [{"file", "index_file", "documents", "tokens", "source", "input"}, ...],
                "validation": [...]},                # shards in input-file order
     "sources": {NAME: {"documents", "tokens", "weight"}},
     "created": "2024-01-01T00:00:00Z", "config": {...}, "fingerprint": "...", "tally": {...}}

* `NAME.bin`: raw little-endian tokens of `dtype`, documents back to back. Each document is the
  tokenizer's output for its text (with BOS first when the tokenizer adds BOS) followed by one EOS, so
  EOS always separates documents, even for tokenizers that do not add EOS themselves.
* `NAME.idx`: a `.npy` int64 array of the documents' start offsets in `NAME.bin`, with the shard's token
  count appended ([documents + 1]): document i is `bin[idx[i]:idx[i + 1]]`.

Reading a shard without puyu::

    tokens = np.fromfile("train-web-00000-0000.bin", dtype="<u2")   # "<u4" for uint32
    starts = np.load("train-web-00000-0000.idx")
    doc_0 = tokens[starts[0]:starts[1]]

A `.progress/` subfolder holds the writer's resume records; it is not part of the format.

`tokenizer.sha256` identifies the tokenizer by what decides its ids (see `tokenizer_sha256`), so a training
run can refuse shards made with another tokenizer.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from puyu.errors import PuyuError, one_line
from puyu.io import atomic_path
from puyu.tokenizer import Tokenizer

FORMAT_NAME = "puyu-token-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "validation")
_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
# Tokens buffered in Python lists before one vectorised check-and-write.
_FLUSH_TOKENS = 1 << 20


def token_dtype(vocab_size: int) -> str:
    """The narrowest token dtype for a vocabulary: "uint16" up to 65,536 ids, else "uint32"."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def numpy_dtype(name: str) -> np.dtype:
    """The little-endian numpy dtype of a manifest's `dtype` name."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise PuyuError(f"token dtype {name!r}: unknown (expected uint16 or uint32)") from None


def tokenizer_sha256(tokenizer: Tokenizer) -> str:
    """A fingerprint of everything that decides a tokenizer's ids.

    It hashes the backend file exactly as `save_pretrained` serializes it (`tokenizer.json` or
    `tokenizer.model`) plus the added tokens and the BOS/EOS settings; the chat template and other config
    keys do not count. The same tokenizer saved twice, or loaded back, gives the same hash.

    Args:
        tokenizer: The tokenizer.

    Returns:
        The hex sha256.
    """
    with tempfile.TemporaryDirectory(prefix="puyu-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        saved = [Path(tmp) / name for name in ("tokenizer.json", "tokenizer.model")]
        backend_file = next(p for p in saved if p.is_file())
        payload = backend_file.read_bytes()
    settings = {
        "backend": backend_file.name,
        "added_tokens": sorted((i, t) for t, i in tokenizer.added_tokens.items()),
        "add_bos": tokenizer.add_bos,
        "add_eos": tokenizer.add_eos,
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "vocab_size": tokenizer.vocab_size,
    }
    digest = hashlib.sha256(payload)
    digest.update(json.dumps(settings, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


class ShardWriter:
    """Writes one shard (`NAME.bin` + `NAME.idx`) document by document.

    Both files go through `puyu.io.atomic_path`: nothing appears under the final names until `close()`,
    and `abort()` (or an error) leaves nothing behind.

    Args:
        folder: The dataset folder.
        name: The shard name without extension.
        dtype: "uint16" or "uint32".
        vocab_size: Ids must be below it (checked on write).
    """

    def __init__(self, folder: str | os.PathLike[str], name: str, dtype: str, vocab_size: int) -> None:
        self.bin_path = Path(folder) / f"{name}.bin"
        self.idx_path = Path(folder) / f"{name}.idx"
        self._dtype = numpy_dtype(dtype)
        self._vocab_size = vocab_size
        self._offsets = [0]
        self._pending: list[list[int]] = []
        self._pending_tokens = 0
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.bin_path))
        # Kept open across add() calls; the stack closes it before atomic_path renames the file.
        self._file = self._stack.enter_context(open(tmp, "wb"))  # noqa: SIM115

    @property
    def documents(self) -> int:
        return len(self._offsets) - 1

    @property
    def tokens(self) -> int:
        return self._offsets[-1]

    def add(self, ids: list[int]) -> None:
        """Append one document's ids (BOS/EOS already in place)."""
        self._pending.append(ids)
        self._pending_tokens += len(ids)
        self._offsets.append(self._offsets[-1] + len(ids))
        if self._pending_tokens >= _FLUSH_TOKENS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending_tokens:
            return
        arr = np.fromiter(itertools.chain.from_iterable(self._pending), dtype=np.int64, count=self._pending_tokens)
        self._pending, self._pending_tokens = [], 0
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high >= self._vocab_size:
            bad = high if high >= self._vocab_size else low
            raise PuyuError(f"{self.bin_path}: token id {bad} outside the vocabulary (size {self._vocab_size})")
        self._file.write(arr.astype(self._dtype).tobytes())

    def close(self) -> dict[str, Any]:
        """Finish both files and return the shard's manifest entry (without source fields)."""
        try:
            self._flush()
            with atomic_path(self.idx_path) as tmp, open(tmp, "wb") as f:
                np.save(f, np.asarray(self._offsets, dtype=np.int64))
        except BaseException:
            self.abort()
            raise
        self._stack.close()  # closes the .bin and renames it into place
        return {
            "file": self.bin_path.name,
            "index_file": self.idx_path.name,
            "documents": self.documents,
            "tokens": self.tokens,
        }

    def abort(self) -> None:
        """Drop the shard: the temporary .bin is removed and nothing is renamed."""
        err = RuntimeError("shard aborted")
        self._stack.__exit__(RuntimeError, err, None)


class TokenShard:
    """One shard, read through memory maps opened on first use.

    Args:
        bin_path: The `.bin` file.
        idx_path: The `.idx` file.
        dtype: "uint16" or "uint32".
        tokens: The token count the manifest declares (checked against the file size), if known.
        documents: The document count the manifest declares (checked when the index opens), if known.

    Raises:
        PuyuError: A file is missing or its size disagrees with the manifest.
    """

    def __init__(
        self,
        bin_path: str | os.PathLike[str],
        idx_path: str | os.PathLike[str],
        dtype: str,
        *,
        tokens: int | None = None,
        documents: int | None = None,
    ) -> None:
        self.bin_path = Path(bin_path)
        self.idx_path = Path(idx_path)
        self._dtype = numpy_dtype(dtype)
        for path in (self.bin_path, self.idx_path):
            if not path.is_file():
                raise PuyuError(f"{path}: shard file missing")
        size = self.bin_path.stat().st_size
        if size % self._dtype.itemsize:
            raise PuyuError(f"{self.bin_path}: size {size} is not a whole number of {dtype} tokens")
        self.num_tokens = size // self._dtype.itemsize
        if tokens is not None and tokens != self.num_tokens:
            raise PuyuError(f"{self.bin_path}: holds {self.num_tokens} tokens, the manifest says {tokens}")
        self._documents = documents
        self._tokens: np.ndarray | None = None
        self._offsets: np.ndarray | None = None

    @property
    def tokens(self) -> np.ndarray:
        """All tokens of the shard (a read-only memory map)."""
        if self._tokens is None:
            if self.num_tokens == 0:  # np.memmap refuses empty files
                self._tokens = np.zeros(0, dtype=self._dtype)
            else:
                self._tokens = np.memmap(self.bin_path, dtype=self._dtype, mode="r")
        return self._tokens

    @property
    def offsets(self) -> np.ndarray:
        """Document start offsets with the token count appended (the `.idx` array, memory-mapped)."""
        if self._offsets is None:
            try:
                offsets = np.load(self.idx_path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise PuyuError(f"{self.idx_path}: not a valid .npy index ({one_line(e)})") from None
            if offsets.ndim != 1 or offsets.dtype != np.int64 or len(offsets) < 1:
                raise PuyuError(f"{self.idx_path}: expected a 1-D int64 array, got {offsets.dtype} {offsets.shape}")
            if int(offsets[0]) != 0 or int(offsets[-1]) != self.num_tokens:
                raise PuyuError(
                    f"{self.idx_path}: offsets run from {int(offsets[0])} to {int(offsets[-1])}, "
                    f"expected 0 to {self.num_tokens} (the tokens in {self.bin_path.name})"
                )
            if self._documents is not None and len(offsets) - 1 != self._documents:
                raise PuyuError(
                    f"{self.idx_path}: indexes {len(offsets) - 1} documents, the manifest says {self._documents}"
                )
            self._offsets = offsets
        return self._offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def document(self, i: int) -> np.ndarray:
        """The tokens of document `i` (BOS if any, text, EOS)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"document {i} out of range for {self.bin_path.name} ({n} documents)")
        i %= n
        return self.tokens[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def close(self) -> None:
        """Drop the memory maps (they reopen on the next access)."""
        self._tokens = None
        self._offsets = None

    def __repr__(self) -> str:
        return f"TokenShard({self.bin_path.name}, tokens={self.num_tokens})"


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a dataset's `manifest.json`.

    Args:
        folder: The dataset folder (or its manifest file).

    Returns:
        The manifest.

    Raises:
        PuyuError: The manifest is missing (tokenizing did not finish), not JSON, or not this format.
    """
    path = Path(folder)
    if path.name != MANIFEST or path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise PuyuError(f"{path}: no manifest (not a tokenized dataset, or tokenizing has not finished)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PuyuError(f"{path}: unreadable manifest ({one_line(e)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise PuyuError(f"{path}: not a {FORMAT_NAME} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise PuyuError(f"{path}: format version {manifest.get('version')!r}, this puyu reads {FORMAT_VERSION}")
    for key in ("tokenizer", "dtype", "splits", "totals"):
        if key not in manifest:
            raise PuyuError(f"{path}: manifest lacks {key!r}")
    numpy_dtype(manifest["dtype"])
    return manifest


def open_split(folder: str | os.PathLike[str], split: str, manifest: dict[str, Any] | None = None) -> list[TokenShard]:
    """The shards of one split, in manifest order (the order of the input files).

    Args:
        folder: The dataset folder.
        split: "train" or "validation".
        manifest: The folder's manifest when already read.

    Raises:
        PuyuError: The split is unknown or a shard file is missing.
    """
    folder = Path(folder)
    manifest = manifest if manifest is not None else read_manifest(folder)
    if split not in manifest["splits"]:
        raise PuyuError(f"{folder / MANIFEST}: no split {split!r} (has {', '.join(manifest['splits'])})")
    entries: Sequence[dict[str, Any]] = manifest["splits"][split]
    return [
        TokenShard(
            folder / e["file"],
            folder / e["index_file"],
            manifest["dtype"],
            tokens=int(e["tokens"]),
            documents=int(e["documents"]),
        )
        for e in entries
    ]
