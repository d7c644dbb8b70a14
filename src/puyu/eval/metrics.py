"""Per-sample scores and their aggregation."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence

from puyu.eval.extract import extract_number, normalize_number


def normalize_text(text: str, *, ignore_punctuation: bool = False) -> str:
    """Lower case, collapsed whitespace (and optionally no ASCII punctuation), for exact match."""
    text = text.strip().lower()
    if ignore_punctuation:
        text = text.translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\s+", " ", text).strip()


def exact_match(prediction: str, reference: str) -> bool:
    """Equal after `normalize_text` (a trailing period is ignored)."""
    return normalize_text(prediction).rstrip(".") == normalize_text(reference).rstrip(".")


def contains(prediction: str, reference: str) -> bool:
    """The normalised reference occurs in the normalised prediction."""
    return normalize_text(reference) in normalize_text(prediction)


def numeric_match(prediction: str, reference: str) -> bool:
    """The number extracted from the prediction equals the reference number ('#### 1,234' matches '1234')."""
    predicted = extract_number(prediction)
    expected = normalize_number(reference)
    if expected is None:
        expected = extract_number(reference)
    if predicted is None or expected is None:
        return False
    return math.isclose(float(predicted), float(expected), rel_tol=0, abs_tol=1e-6)


GENERATION_METRICS = {"exact_match": exact_match, "contains": contains, "numeric_match": numeric_match}


def accuracy(predictions: Sequence[int | str | None], golds: Sequence[int | str | None]) -> float:
    """Share of equal pairs, 0..1 (0 for no samples)."""
    if not predictions:
        return 0.0
    return sum(p == g for p, g in zip(predictions, golds, strict=True)) / len(predictions)


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value (the first on ties, as numpy's argmax)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(mean negative log-likelihood per token)."""
    return math.exp(nll_sum / tokens) if tokens else float("nan")
