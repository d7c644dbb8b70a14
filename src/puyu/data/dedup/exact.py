"""Exact deduplication: a 128-bit hash of the normalised text, and first-occurrence marking."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xxhash

from puyu.data.dedup.text import normalize_for_key

KEY_BYTES = 16


def exact_key(text: str) -> bytes:
    """The 16-byte key two texts share when they are the same up to normalisation.

    The text is NFKC-normalised and case-folded; punctuation, ASCII symbols and whitespace runs
    become one space; invisible format characters are removed; spaces next to Chinese, Japanese or
    Thai characters are dropped. The result is hashed with XXH3-128 (no seed, so keys from different
    runs and machines compare).

    Args:
        text: the document text (lone surrogates are allowed).
    """
    return xxhash.xxh3_128_digest(normalize_for_key(text).encode("utf-8", "surrogatepass"))


def exact_keys(texts: Sequence[str]) -> np.ndarray:
    """`exact_key` of each text as a uint8 array [N, 16], ready to save with `np.save`.

    Args:
        texts: the documents.
    """
    joined = b"".join(exact_key(t) for t in texts)
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(texts), KEY_BYTES).copy()


def find_exact_duplicates(keys: Sequence[bytes] | np.ndarray) -> np.ndarray:
    """Which documents repeat an earlier document's key.

    Args:
        keys: one key per document in corpus order (shard index, then position): a sequence of
            bytes, or a uint8 array [N, key length] as `exact_keys` returns (concatenated across
            shards).

    Returns:
        bool [N]: True where an earlier document has the same key; the first occurrence is kept.
    """
    if isinstance(keys, np.ndarray):
        if keys.ndim != 2 or keys.dtype != np.uint8:
            raise ValueError(f"exact keys must be a uint8 array [N, key length], got {keys.dtype} {keys.shape}")
        rows = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel()
        # np.unique sorts stably when asked for indices, so `first` holds each key's first occurrence.
        _, first = np.unique(rows, return_index=True)
        duplicate = np.ones(len(rows), dtype=bool)
        duplicate[first] = False
        return duplicate
    seen: set[bytes] = set()
    duplicate = np.zeros(len(keys), dtype=bool)
    for i, key in enumerate(keys):
        if key in seen:
            duplicate[i] = True
        else:
            seen.add(key)
    return duplicate
