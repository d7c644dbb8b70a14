"""Words for BM25 in any language: Latin-script words lowercased (English stop words dropped), and Chinese
cut either into character bigrams or into jieba's words (`benchmarks/kb_tokenizers.py` measures both)."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable

from bm25s.stopwords import STOPWORDS_EN

TOKENIZERS = ("bigram", "jieba")
DEFAULT_TOKENIZER = "bigram"
# CJK ideographs, kana and Hangul: scripts written without spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_RUNS = re.compile(rf"[{_CJK}]+|[^\W{_CJK}]+", re.UNICODE)
_IS_CJK = re.compile(rf"[{_CJK}]")
_STOPWORDS = frozenset(STOPWORDS_EN)


def _bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


@functools.cache
def _jieba_cut() -> Callable[[str], list[str]]:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return lambda run: [word for word in jieba.cut_for_search(run) if word.strip()]


def tokenize(text: str, method: str = DEFAULT_TOKENIZER) -> list[str]:
    """The BM25 terms of a text.

    Args:
        text: any language.
        method: "bigram" (overlapping character pairs for CJK runs) or "jieba" (jieba's search-mode words).
    """
    if method not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {method!r} (known: {', '.join(TOKENIZERS)})")
    cut = _jieba_cut() if method == "jieba" else _bigrams
    terms: list[str] = []
    for run in _RUNS.findall(text.lower()):
        if _IS_CJK.match(run):
            terms.extend(cut(run))
        elif run not in _STOPWORDS:
            terms.append(run)
    return terms
