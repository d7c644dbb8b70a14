"""Word lists the filters ship with, and the one matcher for "find these terms in a text".

The English stop words are the Gopher paper's eight. The Chinese list holds function characters that any
running Chinese prose uses (particles, pronouns, conjunctions, copula) and that keyword lists, menus and
spam titles mostly lack. The default blocklist is deliberately small and unambiguous (adult-site and
gambling-spam terms that ordinary news or encyclopedic text does not use); a project with its own policy
passes a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from puyu.data.filters.words import CJK, CJK_RE

# Gopher (Rae et al. 2021, appendix A): English documents must contain at least two of these.
EN_STOP_WORDS: tuple[str, ...] = ("the", "be", "to", "of", "and", "that", "have", "with")

# Function characters of written Chinese: structural particles, aspect markers, copula, prepositions,
# conjunctions and pronouns.
ZH_STOP_WORDS: tuple[str, ...] = tuple("的了是在和与也就都着把被而之其但或我你他她它们这那不")

DEFAULT_BLOCKLIST: tuple[str, ...] = (
    "porn",
    "porno",
    "pornhub",
    "xvideos",
    "xhamster",
    "xxx videos",
    "free sex cams",
    "hentai",
    "online casino bonus",
    "色情网站",
    "色情视频",
    "成人视频",
    "成人电影",
    "裸聊",
    "约炮",
    "av女优",
    "六合彩",
    "时时彩",
    "百家乐",
    "网上赌场",
    "澳门葡京",
)


def compile_terms(terms: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching any of `terms`; None when there are none.

    Terms in CJK script match as substrings (Chinese has no spaces to bound a word); other terms match as
    whole words, where a CJK character next to the term also counts as a boundary ("用porn网站" matches).

    Args:
        terms: words or phrases; blank ones are ignored.
    """
    cleaned = sorted({t.strip().lower() for t in terms if t.strip()}, key=len, reverse=True)
    if not cleaned:
        return None
    cjk = [re.escape(t) for t in cleaned if CJK_RE.search(t)]
    other = [re.escape(t) for t in cleaned if not CJK_RE.search(t)]
    # A word character that is not CJK: letters, digits and underscore of space-delimited scripts.
    word_char = rf"[^\W{CJK}]"
    parts = []
    if other:
        parts.append(rf"(?<!{word_char})(?:{'|'.join(other)})(?!{word_char})")
    if cjk:
        parts.append("|".join(cjk))
    return re.compile("|".join(parts), re.IGNORECASE)


def count_matches(pattern: re.Pattern[str], text: str, stop_at: int | None = None) -> int:
    """Occurrences of `pattern` in `text`, counting no further than `stop_at` when given.

    Args:
        pattern: from `compile_terms`.
        text: the document text.
        stop_at: stop counting once this many are found (the caller only needs to know "at least").
    """
    found = 0
    for _ in pattern.finditer(text):
        found += 1
        if stop_at is not None and found >= stop_at:
            break
    return found
