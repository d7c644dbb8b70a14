"""IncrementalDetokenizer on byte-level BPE: pieces join to decode() and never show a broken character."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from puyu.tokenizer import IncrementalDetokenizer, Tokenizer, byte_level_tokenizer

CORPUS = "语言模型 language model 😀 emoji, 中文和English混合 text. " * 50


@pytest.fixture(scope="module")
def bytes_only() -> Tokenizer:
    return byte_level_tokenizer()


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    from puyu.tokenizer import train_bpe

    folder = tmp_path_factory.mktemp("stream-bpe")
    (folder / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    # Merges across character boundaries appear: tokens that end or start in the middle of a character.
    return train_bpe([folder / "corpus.txt"], 400, folder / "tok", min_frequency=1, show_progress=False)


def _stream(tok: Tokenizer, ids: list[int], skip: bool) -> list[str]:
    detok = IncrementalDetokenizer(tok, skip_special_tokens=skip)
    pieces = [detok.push(i) for i in ids]
    pieces.append(detok.flush())
    return pieces


def _check(tok: Tokenizer, ids: list[int], skip: bool) -> None:
    pieces = _stream(tok, ids, skip)
    full = tok.decode(ids, skip_special_tokens=skip)
    assert "".join(pieces) == full
    if "\ufffd" not in full:
        assert not any("\ufffd" in p for p in pieces)


texts = st.lists(
    st.one_of(
        st.text(st.one_of(st.sampled_from(string.printable), st.characters(codec="utf-8")), max_size=8),
        st.sampled_from(["语言", "😀", "<|im_start|>", "<|im_end|>", "<s>", " model", "👩\u200d👩\u200d👧"]),
    ),
    max_size=10,
).map("".join)


def test_multibyte_characters_come_out_whole(bytes_only: Tokenizer) -> None:
    ids = bytes_only.encode("a中😀", add_special_tokens=False)
    assert len(ids) == 1 + 3 + 4
    assert _stream(bytes_only, ids, False) == ["a", "", "", "中", "", "", "", "😀", ""]


def test_flush_returns_incomplete_tail(bytes_only: Tokenizer) -> None:
    ids = bytes_only.encode("ok中", add_special_tokens=False)[:-1]
    detok = IncrementalDetokenizer(bytes_only)
    assert "".join(detok.push(i) for i in ids) == "ok"
    assert detok.flush() == bytes_only.decode(ids)[2:] == "\ufffd"
    # After flush the detokenizer starts a new stream.
    assert detok.push(bytes_only.token_to_id("<s>")) == "<s>"
    assert detok.flush() == ""


def test_skip_special_tokens(bytes_only: Tokenizer) -> None:
    ids = bytes_only.encode("<|im_start|>hi<|im_end|>")
    assert "".join(_stream(bytes_only, ids, True)) == "hi"
    assert "".join(_stream(bytes_only, ids, False)) == "<s><|im_start|>hi<|im_end|>"


def test_window_stays_small(bytes_only: Tokenizer) -> None:
    detok = IncrementalDetokenizer(bytes_only)
    for i in bytes_only.encode("long text 长文本 " * 200):
        detok.push(i)
        assert len(detok._ids) <= 8  # never the whole sequence


@settings(max_examples=150, deadline=None)
@given(texts, st.booleans())
def test_bytes_only_encoded_text(bytes_only: Tokenizer, text: str, skip: bool) -> None:
    _check(bytes_only, bytes_only.encode(text), skip)


@settings(max_examples=150, deadline=None)
@given(texts, st.booleans())
def test_merged_encoded_text(merged: Tokenizer, text: str, skip: bool) -> None:
    _check(merged, merged.encode(text), skip)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.booleans())
def test_arbitrary_ids(merged: Tokenizer, data: st.DataObject, skip: bool) -> None:
    # Any id sequence, valid UTF-8 or not (ids past the vocabulary included).
    ids = data.draw(st.lists(st.integers(0, merged.vocab_size + 2), max_size=30))
    _check(merged, ids, skip)
