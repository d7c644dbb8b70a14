"""`train_bpe(max_digits=...)`: how many digits one token may hold, with transformers loading the same ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from puyu.errors import PuyuError
from puyu.tokenizer import Tokenizer, train_bpe

CORPUS = "The answer is 189. Then 869 minus 189 is 680, and 12345 is larger than 189 or 869.\n" * 50


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("digits") / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


def _train(corpus: Path, out: Path, max_digits: int) -> Tokenizer:
    return train_bpe([corpus], 400, out, max_digits=max_digits, show_progress=False)


def _pieces(tok: Tokenizer, text: str) -> list[str]:
    return [tok.decode([i]) for i in tok.encode(text, add_special_tokens=False)]


def test_default_splits_every_digit(corpus: Path, tmp_path: Path) -> None:
    tok = _train(corpus, tmp_path, 1)
    digits = [p for p in _pieces(tok, "869 minus 189 is 680 and 12345") if any(c.isdigit() for c in p)]
    assert digits == list("869189680") + list("12345")


def test_three_digits_keep_numbers_whole_and_match_transformers(corpus: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tok = _train(corpus, tmp_path, 3)
    text = "869 minus 189 is 680 and 12345"
    digits = [p for p in _pieces(tok, text) if any(c.isdigit() for c in p)]
    # Frequent numbers are single tokens; longer runs split left to right into groups of at most three.
    assert digits[:3] == ["869", "189", "680"]
    assert "".join(digits[3:]) == "12345"
    assert all(len(p) <= 3 for p in digits)
    assert len(digits[3]) == 3
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False)


def test_max_digits_must_be_positive(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(PuyuError, match="max_digits"):
        _train(corpus, tmp_path, 0)


def test_digit_space_joins_a_number_to_its_space_and_matches_transformers(corpus: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tok = train_bpe([corpus], 400, tmp_path, digit_space=True, show_progress=False)
    text = "869 minus 189 is 680 and 12345"
    digits = [p for p in _pieces(tok, text) if any(c.isdigit() for c in p)]
    assert digits == ["8", "6", "9", " 1", "8", "9", " 6", "8", "0", " 1", "2", "3", "4", "5"]
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False)
