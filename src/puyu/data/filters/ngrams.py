"""N-gram repetition measures of the Gopher rules, vectorised with numpy.

Each unit (word, or CJK character) is hashed once; the hash of every n-gram window is built from the
(n-1)-gram hashes with one multiply-add, so all sizes 2..10 cost one pass each over an int64 array instead of
joining strings. 64-bit hashes of distinct n-grams collide with negligible probability for any real document.
"""

from __future__ import annotations

import numpy as np

# Odd 64-bit multiplier (from splitmix64) that mixes the previous window hash with the next unit.
_MIX = np.uint64(0x9E3779B97F4A7C15)


def unit_hashes(units: list[str]) -> np.ndarray:
    """One 64-bit hash per unit (Python's string hash: stable within a process, which is all we need)."""
    return np.fromiter(map(hash, units), dtype=np.int64, count=len(units)).view(np.uint64)


def next_window(window: np.ndarray, hashes: np.ndarray, n: int) -> np.ndarray:
    """Hashes of every n-gram window (start positions 0..N-n), from the (n-1)-gram windows.

    Args:
        window: the (n-1)-gram hashes (the unit hashes for n = 2).
        hashes: per-unit hashes from `unit_hashes`.
        n: the n-gram size wanted.
    """
    if len(hashes) < n:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        return window[:-1] * _MIX + hashes[n - 1 :]


def window_chars(lengths: np.ndarray, n: int, joiner_len: int) -> np.ndarray:
    """Characters in each n-gram window: its units plus the joiners between them."""
    cumulative = np.concatenate(([0], np.cumsum(lengths)))
    return cumulative[n:] - cumulative[:-n] + joiner_len * (n - 1)


def _runs(sorted_windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start index, length) of each run of equal values in a sorted array."""
    starts = np.concatenate(([0], np.flatnonzero(sorted_windows[1:] != sorted_windows[:-1]) + 1))
    return starts, np.diff(np.append(starts, len(sorted_windows)))


def top_ngram_chars(windows: np.ndarray, chars: np.ndarray) -> int:
    """Characters covered by the most frequent n-gram (count x its length); 0 when no n-gram repeats.

    Ties in count go to the longest n-gram. An n-gram seen once is not repetition, so it never counts.

    Args:
        windows: n-gram hashes from `next_window`.
        chars: characters per window from `window_chars`.
    """
    if len(windows) < 2:
        return 0
    ordered = np.sort(windows)
    starts, counts = _runs(ordered)
    top = int(counts.max())
    if top < 2:
        return 0
    tied = ordered[starts[counts == top]]
    return top * int(chars[np.isin(windows, tied)].max())


def duplicate_ngram_chars(windows: np.ndarray, lengths: np.ndarray, n: int, joiner_len: int) -> int:
    """Characters inside n-grams that already occurred earlier in the text, each character counted once.

    Every occurrence of an n-gram after its first marks its n units as duplicated; overlapping marks merge.
    This is the Gopher definition ("fraction of characters contained within all duplicate n-grams, not
    counting characters in overlapping n-grams more than once"). Covered units for n+1 are a subset of those
    for n, so the measure never grows with n.

    Args:
        windows: n-gram hashes from `next_window`.
        lengths: characters per unit.
        n: the n-gram size of `windows`.
        joiner_len: characters between two units (1 for words, 0 for CJK characters).
    """
    if len(windows) < 2:
        return 0
    order = np.argsort(windows, kind="stable")
    ordered = windows[order]
    starts, counts = _runs(ordered)
    if counts.max() < 2:
        return 0
    # Within a run the stable sort keeps text order, so the run's first entry is the first occurrence.
    repeated = np.ones(len(windows), dtype=bool)
    repeated[order[starts]] = False
    span_starts = np.flatnonzero(repeated)
    size = len(lengths)
    # Difference array: +1 where a duplicate span starts, -1 after it ends; covered where the sum is > 0.
    depth = np.cumsum(np.bincount(span_starts, minlength=size + 1) - np.bincount(span_starts + n, minlength=size + 1))[
        :size
    ]
    covered = depth > 0
    joined = int(np.count_nonzero(covered[1:] & covered[:-1])) * joiner_len
    return int(lengths[covered].sum()) + joined
