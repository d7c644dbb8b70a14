from __future__ import annotations

import math

import pytest

from puyu.eval.extract import extract_choice, extract_number, flexible_number, normalize_number, strict_number
from puyu.eval.metrics import accuracy, argmax, contains, exact_match, numeric_match, perplexity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so she has 9 * 2 = 18 dollars.\n#### 18", "18"),
        ("#### 1,234", "1234"),
        ("It costs $5.00 in total.", "5"),
        ("The answer is 7.", "7"),
        ("First 3, then 4, the answer is 12 apples", "12"),
        ("#### -3.50", "-3.5"),
        ("no digits here", None),
    ],
)
def test_extract_number(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected


def test_strict_and_flexible_follow_lm_eval_filters() -> None:
    text = "We get 10 then 20.\n#### 30\nQuestion: next 40"
    assert strict_number(text) == "30"  # the first '#### N'
    assert flexible_number(text) == "40"  # the last number
    assert strict_number("The answer is 7.") is None


def test_normalize_number() -> None:
    assert normalize_number("1,234") == "1234"
    assert normalize_number("$5.00") == "5"
    assert normalize_number("7.") == "7"
    assert normalize_number("0.25") == "0.25"
    assert normalize_number("abc") is None


@pytest.mark.parametrize(
    ("text", "count", "expected"),
    [
        ("B", 4, 1),
        (" (C) Paris", 4, 2),
        ("The answer is D.", 4, 3),
        ("答案是A", 4, 0),
        ("I think B is right", 4, 1),
        ("none", 2, None),
    ],
)
def test_extract_choice(text: str, count: int, expected: int | None) -> None:
    assert extract_choice(text, count) == expected


def test_accuracy_and_text_metrics_on_hand_computed_values() -> None:
    assert accuracy([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5
    assert accuracy([], []) == 0.0
    assert exact_match("  Paris. ", "paris")
    assert not exact_match("Paris, France", "Paris")
    assert contains("It is Paris, France", "paris")
    assert numeric_match("She pays $1,234.00 in all.", "1234")
    assert numeric_match("reasoning...\n#### 1,234", "#### 1234")
    assert not numeric_match("The answer is 7.", "8")
    assert argmax([0.1, 0.5, 0.5]) == 1  # first maximum, as numpy
    assert math.isclose(perplexity(2 * math.log(4.0), 2), 4.0)
