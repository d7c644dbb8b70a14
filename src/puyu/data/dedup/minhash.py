"""MinHash signatures of many documents at once, in numpy.

A batch of documents becomes one array of code points; words, shingles and their hashes are
computed for the whole batch with array operations, never per shingle in Python:

1. each document is NFKC-normalised (where it can change) and case-folded, then the batch is joined and
   read as UTF-32 code points; a lookup table classes each one (separator, unspaced script, other);
2. a document whose dominant script is written without spaces is cut into characters, any other into
   words; a word's hash is a polynomial hash of its code points (prefix sums of c_k·B^k, so no loop
   per word), mixed with its length by MurmurHash3's finaliser; a character hashes as a
   one-character word;
3. a shingle's hash is sum_j M_j·u_j over its `ngram` consecutive unit hashes u_j (random odd M_j;
   windows never cross documents), mixed again and cut to its top 32 bits;
4. permutation k maps a shingle hash h to (a_k·h + b_k) mod 2^32 with a_k odd, a bijection (the
   "affine32" scheme datasketch uses by default); the signature is the minimum over the document's
   shingles, taken per segment with `np.minimum.reduceat` over blocks that stay in cache.

A signature depends only on its document's text and the configuration, never on the batch.
Documents with no shingles (empty, or only punctuation) get the all-0xFFFFFFFF signature `EMPTY`,
which the LSH step ignores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from puyu.data.dedup.config import DedupConfig
from puyu.data.dedup.text import DROPPED, SEPARATOR, UNSPACED, char_classes, derived_constants, fmix64, fold_many

EMPTY = np.uint32(0xFFFFFFFF)
_BATCH_CHARS = 1 << 18  # code points per batch: temporary arrays of a few MB stay in cache
_BLOCK = 8192  # shingles per permutation block: [num_perm, 8192] uint32 = 4 MB


class MinHasher:
    """Computes MinHash signatures with the hash functions picked by a `DedupConfig`.

    Args:
        config: `ngram`, `num_perm` and `seed` are used.
    """

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        seed = config.seed
        self._classes = char_classes()
        self._length_mult = derived_constants(seed, "length", 1, odd=True)[0]
        self._base = derived_constants(seed, "base", 1, odd=True)[0]
        self._base_inverse = np.uint64(pow(int(self._base), -1, 1 << 64))
        self._pow = self._pow_inverse = np.zeros(0, dtype=np.uint64)
        ascii_classes = self._classes[:128]
        self._ascii_values = bytes(0 if ascii_classes[c] == SEPARATOR else c for c in range(128)) + bytes(128)
        self._window_mult = derived_constants(seed, "window", config.ngram, odd=True)
        # Column vectors: the permutation block is [num_perm, shingles], reduced along contiguous rows.
        self._a = (derived_constants(seed, "perm-a", config.num_perm, odd=True).astype(np.uint32))[:, None]
        self._b = derived_constants(seed, "perm-b", config.num_perm).astype(np.uint32)[:, None]

    def signature(self, text: str) -> np.ndarray:
        """The signature of one document: uint32 [num_perm].

        Args:
            text: the document.
        """
        return self.signatures([text])[0]

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """Signatures of many documents: uint32 [N, num_perm], row i for texts[i].

        Args:
            texts: the documents; batched internally by size.
        """
        out = np.full((self.config.num_perm, len(texts)), EMPTY, dtype=np.uint32)
        start = 0
        while start < len(texts):
            stop, chars = start, 0
            while stop < len(texts) and (stop == start or chars + len(texts[stop]) <= _BATCH_CHARS):
                chars += len(texts[stop])
                stop += 1
            hashes, docs = self.shingle_hashes(texts[start:stop])
            self._minhash(hashes, docs + start, out)
            start = stop
        return np.ascontiguousarray(out.T)

    def shingle_hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The 32-bit hash of every shingle of every text.

        Args:
            texts: the documents.

        Returns:
            (hashes uint32 [S], docs int64 [S]): docs[i] is the index in `texts` of the shingle's
            text; each text's shingles are contiguous. Repeated shingles of a text appear repeatedly.
        """
        folded = fold_many(texts)
        # A space after every text keeps words from running into the next text.
        joined = " ".join([*folded, ""])
        offsets = np.zeros(len(folded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, folded), dtype=np.int64, count=len(folded)) + 1, out=offsets[1:])
        char_mode = np.zeros(len(folded), dtype=bool)
        if joined.isascii():  # O(1) for str; bytes.translate zeroes the separators at C speed
            values = np.frombuffer(joined.encode("ascii").translate(self._ascii_values), dtype=np.uint8)
        else:
            points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            classes = self._classes[points]
            dropped = classes == DROPPED
            if dropped.any():
                kept_before = np.zeros(len(points) + 1, dtype=np.int64)
                np.cumsum(~dropped, out=kept_before[1:])
                points, classes, offsets = points[~dropped], classes[~dropped], kept_before[offsets]
            values = np.where(classes == SEPARATOR, np.uint32(0), points)
            # Every segment holds at least the trailing space, so reduceat never sees an empty one.
            unspaced = np.add.reduceat(classes == UNSPACED, offsets[:-1], dtype=np.int64)
            content = np.add.reduceat(values != 0, offsets[:-1], dtype=np.int64)
            char_mode = unspaced > content - unspaced

        # Units: characters of unspaced-script texts, words of the others, each in text order.
        if char_mode.any():
            in_char_text = np.repeat(char_mode, np.diff(offsets))
            char_at = np.flatnonzero(in_char_text & (values != 0))
            word_hashes, word_at = self._word_hashes(np.where(in_char_text, 0, values))
            at = np.concatenate([char_at, word_at])
            order = np.argsort(at, kind="stable")
            # A character unit hashes as a one-character word, so unit equality means the same thing in both modes.
            char_hashes = fmix64(values[char_at].astype(np.uint64) + self._length_mult)
            units = np.concatenate([char_hashes, word_hashes])[order]
            at = at[order]
        else:
            units, at = self._word_hashes(values)
        return self._window_hashes(units, np.searchsorted(offsets, at, side="right") - 1)

    def _powers(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """B^k and B^-k mod 2^64 for k < length (cached up to a few batches' worth)."""
        if len(self._pow) >= length:
            return self._pow, self._pow_inverse
        size = max(length, min(2 * len(self._pow), 4 * _BATCH_CHARS), 1024)
        powers = np.cumprod(np.full(size, self._base, dtype=np.uint64)) * self._base_inverse
        inverse = np.cumprod(np.full(size, self._base_inverse, dtype=np.uint64)) * self._base
        if size <= 4 * _BATCH_CHARS:  # one huge document must not pin its tables for the process's life
            self._pow, self._pow_inverse = powers, inverse
        return powers, inverse

    def _word_hashes(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hash of each maximal run of non-zero values (a word), and where the run starts.

        A polynomial hash sum(c_k · B^(k - start)) mod 2^64 from precomputed powers of B: three array
        passes per character and none per word; then MurmurHash3's finaliser mixes in the length.
        (Such hashes can be made to collide with crafted strings of 2,048+ characters; words are far
        shorter.)
        """
        content = (values != 0).view(np.int8)
        edges = np.diff(content, prepend=np.int8(0), append=np.int8(0))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        if not len(starts):
            return np.zeros(0, dtype=np.uint64), starts
        powers, inverse = self._powers(len(values))
        terms = values.astype(np.uint64) * powers[: len(values)]
        sums = np.add.reduceat(terms, starts) * inverse[starts]  # separators after a word add zero
        return fmix64(sums + (ends - starts).astype(np.uint64) * self._length_mult), starts

    def _window_hashes(self, units: np.ndarray, unit_doc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of the `ngram`-unit windows inside each text; a text with fewer units gives one
        window of all of them."""
        n, mult, total = self.config.ngram, self._window_mult, len(units)
        first = np.flatnonzero(np.diff(unit_doc, prepend=-1))
        count = np.diff(first, append=total)
        sums, docs = [], []
        if total >= n:
            m = total - n + 1
            full = units[:m] * mult[0]
            for j in range(1, n):
                full += units[j : j + m] * mult[j]
            inside = unit_doc[n - 1 :] == unit_doc[:m]  # windows across a text boundary are dropped
            sums.append(full[inside])
            docs.append(unit_doc[:m][inside])
        short, short_count = first[count < n], count[count < n]
        if len(short):
            part = units[short] * mult[0]
            for j in range(1, n):
                part += np.where(short_count > j, units[np.minimum(short + j, total - 1)] * mult[j], np.uint64(0))
            sums.append(part)
            docs.append(unit_doc[short])
        if not sums:
            return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
        hashes = (fmix64(np.concatenate(sums)) >> np.uint64(32)).astype(np.uint32)
        return hashes, np.concatenate(docs)

    def _minhash(self, hashes: np.ndarray, docs: np.ndarray, out: np.ndarray) -> None:
        """Lower out[:, doc] to the permuted minimum over each doc's shingle hashes."""
        a, b = self._a, self._b
        buffer = np.empty((len(a), _BLOCK), dtype=np.uint32)  # reused: no page faults per block
        for lo in range(0, len(hashes), _BLOCK):
            block, block_docs = hashes[lo : lo + _BLOCK], docs[lo : lo + _BLOCK]
            permuted = buffer[:, : len(block)]
            np.multiply(a, block, out=permuted)  # uint32 arithmetic wraps: this is the mod 2^32
            np.add(permuted, b, out=permuted)
            segments = np.flatnonzero(np.diff(block_docs, prepend=-1))
            minima = np.minimum.reduceat(permuted, segments, axis=1)
            seg_docs = block_docs[segments]
            out[:, seg_docs] = np.minimum(out[:, seg_docs], minima)
