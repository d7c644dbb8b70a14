from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kb_support import OFF_TOPIC, ON_TOPIC, write_corpus

from puyu.cli import main
from puyu.errors import PuyuError
from puyu.kb import KnowledgeBase, build
from puyu.kb.gate import accepts, best_single_threshold, calibrate, probability, scores_of


def _signals(rng: np.random.Generator, n: int, centre: float, spread: float) -> list[dict[str, float]]:
    return [
        {"bm25_top": float(rng.normal(centre * 5, spread * 5)), "bm25_coverage": float(rng.normal(centre, spread)),
         "known_terms": float(rng.normal(centre, spread))}
        for _ in range(n)
    ]  # fmt: skip


def test_separable_sets_are_learned_perfectly() -> None:
    rng = np.random.default_rng(0)
    calibration = calibrate(_signals(rng, 40, 1.0, 0.05), _signals(rng, 40, 0.0, 0.05))
    assert calibration["cv"]["f1"] == 1.0
    # The threshold sits on the lowest good score of the training folds, so an unseen good one can fall below.
    assert calibration["single_threshold"]["f1"] > 0.9
    assert calibration["features"] == ["bm25_top", "bm25_coverage", "known_terms"]


def test_overlapping_sets_score_between_chance_and_perfect() -> None:
    rng = np.random.default_rng(1)
    calibration = calibrate(_signals(rng, 60, 0.6, 0.3), _signals(rng, 60, 0.4, 0.3))
    assert 0.5 < calibration["cv"]["f1"] < 0.95
    low, high = calibration["cv"]["f1_95"]
    assert low <= calibration["cv"]["f1"] <= high


def test_the_stored_model_decides_as_sklearn_does() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    good, bad = _signals(rng, 30, 0.6, 0.3), _signals(rng, 30, 0.4, 0.3)
    calibration = json.loads(json.dumps(calibrate(good, bad)))  # as stored on disk
    x = np.asarray([[row[f] for f in calibration["features"]] for row in good + bad])
    mean, scale = x.mean(0), x.std(0)
    reference = LogisticRegression(class_weight="balanced", C=1.0, max_iter=1000)
    reference.fit((x - mean) / scale, [1] * 30 + [0] * 30)
    expected = reference.predict_proba((x - mean) / scale)[:, 1]
    ours = [probability(calibration, row) for row in good + bad]
    np.testing.assert_allclose(ours, expected, atol=1e-9)
    assert [accepts(calibration, row)[0] for row in good + bad] == list(expected >= calibration["threshold"])
    assert 0 < calibration["threshold"] < 1


def test_single_threshold_maximises_precision_plus_recall() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 0, 1, 0, 0])
    threshold = best_single_threshold(scores, labels)
    best = max(
        scores,
        key=lambda t: sum(scores_of(labels, (scores >= t).astype(int))[m] for m in ("precision", "recall")),
    )
    assert threshold == best == 0.6
    assert best_single_threshold(np.array([-0.5, -0.2, -0.1]), np.array([0, 1, 1])) == 0.0  # floored at 0


def test_too_few_questions_is_an_error() -> None:
    with pytest.raises(PuyuError, match="at least 2"):
        calibrate([{"bm25_top": 1.0}], [{"bm25_top": 0.0}, {"bm25_top": 0.1}])


def test_calibrate_cli_stores_the_gate_with_the_index(tmp_path: Path, capsys) -> None:
    build([write_corpus(tmp_path / "docs")], tmp_path / "kb")
    (tmp_path / "good.json").write_text(json.dumps(ON_TOPIC))
    (tmp_path / "bad.json").write_text(json.dumps(OFF_TOPIC))
    assert main(["kb", "calibrate", str(tmp_path / "kb"), "--good", str(tmp_path / "good.json"),
                 "--bad", str(tmp_path / "bad.json"), "--folds", "3"]) == 0  # fmt: skip
    assert "calibrated gate: precision" in capsys.readouterr().out
    kb = KnowledgeBase.open(tmp_path / "kb")
    assert kb.describe()["calibrated"]
    # A rebuild carries the calibration into the new version.
    (tmp_path / "docs" / "more.md").write_text("# More\n\nAnother page.\n")
    build([tmp_path / "docs"], tmp_path / "kb")
    assert KnowledgeBase.open(tmp_path / "kb").snapshot.calibration["good"] == 6
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    assert main(["kb", "calibrate", str(tmp_path / "kb"), "--good", str(tmp_path / "good.json"),
                 "--bad", str(tmp_path / "bad.json")]) == 2  # fmt: skip
