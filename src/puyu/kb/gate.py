"""The refuse-to-answer gate, calibrated per knowledge base.

HuixiangDou's gate compares the top-1 embedding similarity with one threshold, picked on labelled good
and bad questions as the point of the precision-recall curve where precision + recall is highest. Here
a logistic regression reads several signals (BM25 score and term coverage, dense similarity and its
margin, and any reranker or LLM relevance score given), is fitted on the same kind of labelled questions,
with its probability cut-off chosen for F1 on held-out predictions of the training questions, and
reports its precision, recall and F1 by stratified cross-validation, next to the single threshold scored
on the same folds. The fitted model is stored as plain numbers (no pickle) and applied here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import PuyuError

# The order features are stored and read in; a calibration uses those every labelled question has.
FEATURES = ("bm25_top", "bm25_coverage", "known_terms", "dense_top", "dense_margin", "rerank", "llm")
FOLDS = 5
BOOTSTRAP = 1000


def _matrix(signals: Sequence[dict[str, float]], features: Sequence[str]) -> np.ndarray:
    return np.asarray([[float(row[name]) for name in features] for row in signals], dtype=np.float64)


def scores_of(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of the "answer" decision (label 1 = a question the knowledge base should take)."""
    true_positive = int(np.sum((y_pred == 1) & (y_true == 1)))
    predicted, actual = int(np.sum(y_pred == 1)), int(np.sum(y_true == 1))
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _f1_interval(y_true: np.ndarray, y_pred: np.ndarray, seed: int) -> list[float]:
    """A 95% bootstrap interval of F1 over the questions."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(y_true), len(y_true))
        values.append(scores_of(y_true[pick], y_pred[pick])["f1"])
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def best_single_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """HuixiangDou's calibration: the precision-recall-curve threshold where precision + recall is highest,
    floored at 0."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    best = int(np.argmax(precision[:-1] + recall[:-1]))
    return max(0.0, float(thresholds[best]))


def _fit_logistic(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(class_weight="balanced", C=1.0, max_iter=1000)
    model.fit((x - mean) / scale, y)
    return {
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "coef": model.coef_[0].tolist(),
        "intercept": float(model.intercept_[0]),
    }


def _f1_threshold(probabilities: np.ndarray, y: np.ndarray) -> float:
    """The probability cut-off with the best F1 (ties: the middle of the best range)."""
    candidates = np.unique(probabilities)
    f1 = [scores_of(y, (probabilities >= t).astype(int))["f1"] for t in candidates]
    best = np.flatnonzero(np.isclose(f1, max(f1)))
    return float(candidates[best[len(best) // 2]])


def _fit_gate(x: np.ndarray, y: np.ndarray, features: list[str], seed: int) -> dict[str, Any]:
    """The logistic model on all of (x, y), and its cut-off: the one with the best F1 on out-of-fold
    probabilities of (x, y) alone (the gate is judged by F1, so it is not left at 0.5)."""
    from sklearn.model_selection import StratifiedKFold

    fitted: dict[str, Any] = {"features": features, "threshold": 0.5, **_fit_logistic(x, y)}
    folds = min(3, int(y.sum()), int(len(y) - y.sum()))
    if folds < 2:
        return fitted
    held_out = np.zeros(len(y))
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y):
        inner = {"features": features, **_fit_logistic(x[train], y[train])}
        held_out[test] = [probability(inner, dict(zip(features, row, strict=True))) for row in x[test]]
    fitted["threshold"] = _f1_threshold(held_out, y)
    return fitted


def probability(calibration: dict[str, Any], signals: dict[str, float]) -> float:
    """The stored model's probability that a question belongs to the knowledge base."""
    try:
        x = np.asarray([float(signals[name]) for name in calibration["features"]])
    except KeyError as exc:
        raise PuyuError(f"the gate needs the signal {exc.args[0]!r}, which this search did not give") from None
    z = float(
        (x - np.asarray(calibration["mean"])) / np.asarray(calibration["scale"]) @ np.asarray(calibration["coef"])
    )
    z += float(calibration["intercept"])
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def accepts(calibration: dict[str, Any], signals: dict[str, float]) -> tuple[bool, float]:
    """(answer or not, probability) for a question's signals."""
    p = probability(calibration, signals)
    return p >= float(calibration["threshold"]), p


def calibrate(
    good: Sequence[dict[str, float]], bad: Sequence[dict[str, float]], *, folds: int = FOLDS, seed: int = 0
) -> dict[str, Any]:
    """Fit the gate on the signals of good (on-topic) and bad (off-topic) questions.

    Args:
        good: signals of questions the knowledge base should answer.
        bad: signals of questions it should stay silent on.
        folds: cross-validation folds (fewer when a class has fewer questions).
        seed: fold shuffling and bootstrap seed.

    Returns:
        The calibration: features, the fitted model, "cv" (precision, recall, F1 and its 95% interval of
        the gate) and "single_threshold" (the same for HuixiangDou's top-1 threshold, on the same folds).

    Raises:
        PuyuError: fewer than 2 questions in a class.
    """
    from sklearn.model_selection import StratifiedKFold

    if len(good) < 2 or len(bad) < 2:
        raise PuyuError(f"calibration needs at least 2 good and 2 bad questions, got {len(good)} and {len(bad)}")
    rows = [*good, *bad]
    features = [name for name in FEATURES if all(name in row for row in rows)]
    x = _matrix(rows, features)
    y = np.asarray([1] * len(good) + [0] * len(bad))
    baseline_feature = "dense_top" if "dense_top" in features else "bm25_top"
    column = features.index(baseline_feature)
    splitter = StratifiedKFold(n_splits=min(folds, len(good), len(bad)), shuffle=True, random_state=seed)
    gate_pred = np.zeros_like(y)
    single_pred = np.zeros_like(y)
    for train, test in splitter.split(x, y):
        fitted = _fit_gate(x[train], y[train], features, seed)
        for i in test:
            gate_pred[i] = accepts(fitted, dict(zip(features, x[i], strict=True)))[0]
        threshold = best_single_threshold(x[train, column], y[train])
        single_pred[test] = (x[test, column] >= threshold).astype(int)
    return {
        **_fit_gate(x, y, features, seed),
        "good": len(good),
        "bad": len(bad),
        "folds": splitter.get_n_splits(),
        "cv": {**scores_of(y, gate_pred), "f1_95": _f1_interval(y, gate_pred, seed)},
        "single_threshold": {
            "feature": baseline_feature,
            "threshold": best_single_threshold(x[:, column], y),
            **scores_of(y, single_pred),
            "f1_95": _f1_interval(y, single_pred, seed),
        },
    }
