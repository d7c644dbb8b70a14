"""Text normalisation shared by exact and near-duplicate detection.

Every code point falls in one class: a separator (whitespace, control, punctuation, ASCII symbols),
a character to drop (invisible format characters such as soft hyphens and zero-width spaces, so that
"co\\u00adoperate" matches "cooperate"), a character of a script written without spaces (Chinese,
Japanese kana, Thai, Lao, Khmer, Myanmar), or any other character. Both the exact key and the
shingles are built on this one table, so the two notions of "same text" agree.
"""

from __future__ import annotations

import functools
import hashlib
import string
import unicodedata
from collections.abc import Sequence

import numpy as np

SEPARATOR, UNSPACED, OTHER, DROPPED = 0, 1, 2, 3

# Scripts written without spaces between words; their letters become character shingles.
_UNSPACED_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3FFFF),  # CJK extensions B-H (planes 2 and 3)
)
_LAST_CATEGORISED = 0x20000  # planes 0 and 1 are looked up one by one; higher planes are ranges
_MAX_CODE_POINT = 0x110000


@functools.cache
def char_classes() -> np.ndarray:
    """The class (SEPARATOR, UNSPACED, OTHER, DROPPED) of every code point, as uint8 [0x110000]."""
    classes = np.full(_MAX_CODE_POINT, OTHER, dtype=np.uint8)
    for lo, hi in _UNSPACED_RANGES:
        classes[lo : hi + 1] = UNSPACED
    for cp in range(_LAST_CATEGORISED):
        category = unicodedata.category(chr(cp))
        if category[0] in "PZ" or category in ("Cc", "Cs"):
            classes[cp] = SEPARATOR
        elif category == "Cf":
            classes[cp] = DROPPED
    classes[0xE0000:0xE0080] = DROPPED  # tag characters
    for ch in string.punctuation:  # ASCII symbols such as $ + < = > ^ ` | ~ are category S, not P
        classes[ord(ch)] = SEPARATOR
    return classes


@functools.cache
def nfkc_unstable() -> np.ndarray:
    """bool [0x110000]: code points that may change under NFKC (compatibility or canonical
    decompositions, combining marks, second halves of canonical compositions), except separators
    whose NFKC form is all separators (full-width "，" and "…" become spaces either way).

    A text without any of them is already in NFKC. CPython's `unicodedata.normalize` is fast on text
    that passes its quick check but ~150 ns per character otherwise, and Chinese text rarely passes it
    (full-width punctuation); skipping NFKC where it cannot change the result keeps that cost away.
    """
    classes = char_classes()
    unstable = np.zeros(_MAX_CODE_POINT, dtype=bool)
    unstable[0x1161:0x1176] = unstable[0x11A8:0x11C3] = True  # Hangul vowel and final jamo compose
    candidates = np.ones(0x30000, dtype=bool)  # no code point past plane 2 changes under NFKC
    for lo, hi in ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x20000, 0x2F7FF)):
        candidates[lo : hi + 1] = False  # ideographs and Hangul syllables: stable, and most of the table
    for cp in np.flatnonzero(candidates).tolist():
        ch = chr(cp)
        parts = unicodedata.decomposition(ch).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            unstable[int(parts[1], 16)] = True
        normal = unicodedata.normalize("NFKC", ch)
        if normal != ch or unicodedata.combining(ch):
            separators_only = all(classes[ord(c)] == SEPARATOR for c in normal)
            unstable[cp] = unstable[cp] or not (classes[cp] == SEPARATOR and separators_only)
    return unstable


@functools.cache
def _ascii_translation() -> bytes:
    classes = char_classes()
    return bytes(32 if classes[b] == SEPARATOR else b for b in range(128)) + bytes(range(128, 256))


def _points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _text(points: np.ndarray) -> str:
    return points.astype(np.uint32).tobytes().decode("utf-32-le", "surrogatepass")


def fold_many(texts: Sequence[str]) -> list[str]:
    """`fold` of each text, checking for NFKC-unstable characters in one pass over the batch."""
    out = [t.lower() if t.isascii() else "" for t in texts]  # NFKC is the identity on ASCII
    rest = [i for i, t in enumerate(texts) if not t.isascii()]
    if rest:
        points = _points("".join(texts[i] for i in rest))
        starts = np.zeros(len(rest), dtype=np.int64)
        np.cumsum([len(texts[i]) for i in rest[:-1]], out=starts[1:])
        unstable = np.add.reduceat(nfkc_unstable()[points], starts, dtype=np.int64)  # non-ASCII: never empty
        for i, changes in zip(rest, unstable.tolist(), strict=True):
            out[i] = (unicodedata.normalize("NFKC", texts[i]) if changes else texts[i]).casefold()
    return out


def fold(text: str) -> str:
    """NFKC then case folding: full-width forms, ligatures and case variants become one form."""
    return fold_many([text])[0]


def words_text(text: str) -> str:
    """`fold`, then separators to single spaces and dropped characters removed; no leading or
    trailing space.

    Args:
        text: any string, including lone surrogates.
    """
    folded = fold(text)
    if folded.isascii():
        # bytes.translate is a C loop, far faster than str.translate with a dict.
        folded = folded.encode("ascii").translate(_ascii_translation()).decode("ascii")
    else:
        points = _points(folded)
        classes = char_classes()[points]
        folded = _text(np.where(classes == SEPARATOR, 32, points)[classes != DROPPED])
    return " ".join(folded.split())


def normalize_for_key(text: str) -> str:
    """The form two texts must share to be exact duplicates: `words_text`, with the spaces next to
    characters of unspaced scripts removed (Chinese punctuation turned to spaces must not split
    "你好，世界" from "你好世界")."""
    normal = words_text(text)
    if normal.isascii():
        return normal
    points = _points(normal)
    unspaced = char_classes()[points] == UNSPACED
    near = np.zeros(len(points), dtype=bool)  # words_text leaves no space at either end
    near[1:-1] = unspaced[:-2] | unspaced[2:]
    return _text(points[~((points == 32) & near)])


def is_unspaced(normal: str) -> bool:
    """Whether the dominant script of a `words_text` string is written without spaces: it has more
    such characters than other non-separator characters."""
    if normal.isascii():
        return False
    counts = np.bincount(char_classes()[_points(normal)], minlength=4)
    return bool(counts[UNSPACED] > counts[OTHER])


def shingles(text: str, ngram: int) -> list[str]:
    """The shingles of a text as strings: the plain reference for what `MinHasher` hashes.

    Word n-grams for space-delimited text; character n-grams (separators removed) when the dominant
    script is written without spaces. Units are joined by a space in both cases, so equal strings
    mean equal unit sequences (a character unit equals the one-character word). A text with fewer
    units than `ngram` gives one shingle of all its units; an empty text gives none.

    Args:
        text: the document.
        ngram: units per shingle.
    """
    normal = words_text(text)
    units = list(normal.replace(" ", "")) if is_unspaced(normal) else normal.split()
    if not units:
        return []
    if len(units) < ngram:
        return [" ".join(units)]
    return [" ".join(units[i : i + ngram]) for i in range(len(units) - ngram + 1)]


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: an avalanching bijection on uint64 (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(33))
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def derived_constants(seed: int, purpose: str, count: int, odd: bool = False) -> np.ndarray:
    """`count` uint64 constants derived from (seed, purpose) with BLAKE2b: the same on every
    platform and numpy version, unlike a random generator's stream."""
    out = np.empty(count, dtype=np.uint64)
    for i in range(count):
        digest = hashlib.blake2b(f"puyu.dedup:{purpose}:{seed}:{i}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") | (1 if odd else 0)
    return out
