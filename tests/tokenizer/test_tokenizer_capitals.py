"""`train_bpe(split_capitalized=True)`: a capitalised word is the same tokens wherever it stands."""

from __future__ import annotations

from pathlib import Path

import pytest

from puyu.tokenizer import Tokenizer, train_bpe

CORPUS = 'Dime Butokil lives in Zebite. The friend of Dime Butokil is Donbi Funva, who says "Dime" often.\n' * 50


def _tokenizer(tmp_path: Path, split_capitalized: bool) -> Tokenizer:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    return train_bpe([corpus], 400, tmp_path / "tok", split_capitalized=split_capitalized, show_progress=False)


def _ids(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("split_capitalized", [False, True])
def test_a_name_mid_sentence_and_at_a_line_start(tmp_path: Path, split_capitalized: bool) -> None:
    tok = _tokenizer(tmp_path, split_capitalized)
    mid, start, quoted = _ids(tok, "of Dime Butokil"), _ids(tok, "\nDime Butokil"), _ids(tok, '"Dime Butokil')
    name = _ids(tok, "Dime Butokil")
    if split_capitalized:
        # The name keeps its tokens; only what stands before it differs.
        assert mid[-len(name) :] == start[-len(name) :] == quoted[-len(name) :] == name
        assert [tok.decode([i]) for i in mid[: -len(name)]] == ["of", " "]
    else:
        assert mid[-len(name) :] != name  # " Dime" is a token of its own
    for text in ("of Dime Butokil", "\nDime Butokil", 'says "Dime" often.', "the friend"):
        assert tok.decode(_ids(tok, text)) == text


def test_lower_case_words_keep_their_space_and_transformers_agrees(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tok = _tokenizer(tmp_path, True)
    text = "The friend of Dime Butokil lives in Zebite."
    pieces = [tok.decode([i]) for i in _ids(tok, text)]
    assert " friend" in pieces and " lives" in pieces
    assert " Dime" not in pieces and "Dime" in "".join(pieces)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert hf.encode(text, add_special_tokens=False) == _ids(tok, text)
