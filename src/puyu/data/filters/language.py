"""Language identification, offline: a script shortcut for Chinese, py3langid (its own bundled model) otherwise.

Text whose dominant script is Han, with kana at most a fifth of its CJK characters, is Chinese: no other
living language is written so, and counting scripts costs 1/14 to 1/24 of the classifier (measured).
Everything else goes to py3langid (langid.py's naive Bayes model over byte n-grams, about 140 languages;
ISO 639-1 codes where one exists).

py3langid walks the text byte by byte in Python (~1.3 MB/s), so it reads only `SAMPLE_CHARS` characters from
the middle of a document (away from headers and footers): on 400 long English documents the label and the
keep/remove decision from a 1,000-, 2,000- or 4,000-character middle matched the full text every time.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from puyu.data.document import Document
from puyu.data.filters.config import LanguageConfig
from puyu.data.filters.words import count_scripts

SAMPLE_CHARS = 2_000
# Japanese prose is 30-60% kana even when dense with kanji; up to a fifth is a Chinese text quoting a Japanese name.
MAX_KANA_SHARE_FOR_ZH = 0.2
UNKNOWN = "unknown"

_identifier: Any = None
_lock = threading.Lock()


def _get_identifier() -> Any:
    """The py3langid model, loaded once per process (about a second) on first use."""
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier


def known_languages() -> set[str]:
    """Codes `detect_language` can return (py3langid's labels, plus "unknown")."""
    return {*_get_identifier().labels, UNKNOWN}


def detect_language(text: str) -> tuple[str, float]:
    """The language of `text` and the confidence in it.

    Args:
        text: any text.

    Returns:
        (ISO 639-1 code, score in 0..1); ("unknown", 0.0) for text without letters, or when the model
        finds nothing that favours one language (one short word, a number).
    """
    scripts = count_scripts(text)
    if not scripts.has_letters:
        return UNKNOWN, 0.0
    cjk = scripts.han + scripts.kana
    if cjk and scripts.han >= scripts.other_words and scripts.kana <= MAX_KANA_SHARE_FOR_ZH * cjk:
        # Confidence that it is not Japanese: the share of Han among CJK characters.
        return "zh", scripts.han / cjk
    start = max(0, (len(text) - SAMPLE_CHARS) // 2)
    ranked = _get_identifier().rank(text[start : start + SAMPLE_CHARS])
    (best, score), (_, runner_up) = ranked[0], ranked[1]
    if score == runner_up:  # a flat distribution: no n-gram of the text is in the model
        return UNKNOWN, 0.0
    return best, float(score)


def annotate_language(doc: Document) -> str:
    """The document's language, detected once and kept in `doc.meta["language"]` (and "language_score").

    A language already in the metadata (from an earlier run, or a reader that knows it) is used as it is.

    Args:
        doc: the document; its meta is updated in place.
    """
    known = doc.meta.get("language")
    if isinstance(known, str) and known:
        return known
    language, score = detect_language(doc.text)
    doc.meta["language"] = language
    doc.meta["language_score"] = round(score, 4)
    return language


class LanguageFilter:
    """Keeps documents in the configured languages, detected with at least `min_score` confidence."""

    name = "language"

    def __init__(self, config: LanguageConfig) -> None:
        self.languages = set(config.languages)
        self.min_score = config.min_score

    def __call__(self, doc: Document) -> str | None:
        language = annotate_language(doc)
        if language == UNKNOWN:
            return "no language: no letters or no known words"
        # A reader may have stored a regional tag ("en-US", "zh_Hans"); the primary subtag decides.
        if language not in self.languages and re.split(r"[-_]", language)[0].lower() not in self.languages:
            return f"language not kept: {language}"
        score = doc.meta.get("language_score")
        if isinstance(score, (int, float)) and score < self.min_score:
            return f"language score too low: {language} {score:.3f} < {self.min_score:g}"
        return None
