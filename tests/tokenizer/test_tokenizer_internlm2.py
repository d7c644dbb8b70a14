"""The real InternLM2 tokenizer: SentencePiece BPE with byte fallback, chat tokens from tokenizer_config.json."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from puyu.tokenizer import IncrementalDetokenizer, Tokenizer

INTERNLM2_DIR = Path(__file__).resolve().parents[3] / "shared/data/internlm2"

CHAT_TOKEN_IDS = {
    "<|plugin|>": 92538,
    "<|interpreter|>": 92539,
    "<|action_end|>": 92540,
    "<|action_start|>": 92541,
    "<|im_end|>": 92542,
    "<|im_start|>": 92543,
}
SPECIALS = [*CHAT_TOKEN_IDS, "<s>", "</s>", "<unk>"]
# Strings that tempt a tokenizer into lossy or wrong output: placeholder pieces under the chat tokens,
# SentencePiece's whitespace marker, broken-up special tokens, whitespace runs.
TRICKY = ["[UNUSED_TOKEN_146]", "[UNUSED_TOKEN_141]", "\u2581", "\u2581\u2581", "<|im_start", "im_end|>", "<|", "|>"]
TRICKY += [" ", "  ", "\n", "\t", "\r\n", "\x00", "e\u0301", "👩\u200d👩\u200d👧", "ｆｕｌｌ ｗｉｄｔｈ"]
SNIPPETS = ["def foo(x):\n    return x + 1\n", "你好，世界！", "Hello, world!", "for (i = 0; i < n; ++i) {}"]

chars = st.one_of(
    st.sampled_from(string.printable),  # English and code
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # common CJK
    st.characters(min_codepoint=0x20000, max_codepoint=0x2A6DF),  # CJK extension B: mostly byte fallback
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji: byte fallback
    st.characters(codec="utf-8"),  # anything
)
texts = st.lists(
    st.one_of(st.text(chars, min_size=1, max_size=10), st.sampled_from(SPECIALS + TRICKY + SNIPPETS)),
    max_size=10,
).map("".join)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    if not (INTERNLM2_DIR / "tokenizer.model").is_file():
        pytest.skip(f"{INTERNLM2_DIR}: InternLM2 tokenizer not available")
    return Tokenizer.from_pretrained(INTERNLM2_DIR)


@pytest.fixture(scope="module")
def sp(tok: Tokenizer):
    import sentencepiece as spm

    spm.set_min_log_level(2)
    return spm.SentencePieceProcessor(model_file=str(INTERNLM2_DIR / "tokenizer.model"))


def test_metadata(tok: Tokenizer) -> None:
    assert tok.backend_kind == "sentencepiece"
    assert tok.vocab_size == 92544
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<s>", "</s>", "</s>", "<unk>")
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, 2)
    assert tok.add_bos and not tok.add_eos
    assert tok.chat_template is not None and "<|im_start|>" in tok.chat_template


def test_chat_token_ids(tok: Tokenizer) -> None:
    for content, token_id in CHAT_TOKEN_IDS.items():
        assert tok.token_to_id(content) == token_id
        assert tok.id_to_token(token_id) == content
        assert tok.encode(content, add_special_tokens=False) == [token_id]
        assert tok.decode([token_id]) == content
    assert tok.added_tokens == {"<unk>": 0, "<s>": 1, "</s>": 2, **CHAT_TOKEN_IDS}
    assert tok.special_ids == {0, 1, 2, *CHAT_TOKEN_IDS.values()}


@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_chat_string(tok: Tokenizer, add_special_tokens: bool) -> None:
    text = "<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(text, add_special_tokens=add_special_tokens)
    plain = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    expected = [1, 92543, *plain("user\nhi"), 92542, *plain("\n"), 92543, *plain("assistant\n")]
    assert ids == expected
    assert ids.count(1) == 1  # the BOS written in the text is not doubled
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi\nassistant\n"


def test_bos_and_no_dummy_prefix(tok: Tokenizer) -> None:
    assert tok.encode("hi")[0] == 1
    assert tok.encode("hi", add_special_tokens=False)[0] != 1
    ids = tok.encode("hello", add_special_tokens=False)
    assert not tok.id_to_token(ids[0]).startswith("\u2581")
    assert tok.decode(ids) == "hello"
    assert tok.encode("") == [1] and tok.encode("", add_special_tokens=False) == []


@pytest.mark.parametrize(
    "text", ["<|im_start|>user\n hello", " hello", "<|im_end|> x", "a  <|im_end|>  b ", "<s> </s>  <unk>"]
)
def test_spaces_around_special_tokens_survive(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text


def test_placeholder_pieces_are_not_chat_tokens(tok: Tokenizer) -> None:
    # The raw model has "[UNUSED_TOKEN_146]" at id 92543; typed as text it must not become <|im_start|>.
    ids = tok.encode("x[UNUSED_TOKEN_146]y", add_special_tokens=False)
    assert not set(ids) & set(CHAT_TOKEN_IDS.values())
    assert tok.decode(ids) == "x[UNUSED_TOKEN_146]y"


def test_byte_fallback(tok: Tokenizer) -> None:
    text = "😀𠀀"
    ids = tok.encode(text, add_special_tokens=False)
    assert all(tok.id_to_token(i).startswith("<0x") for i in ids)
    assert len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.decode(ids[:2]) == "\ufffd" * len(tok.decode(ids[:2]))  # a broken character shows as U+FFFD


def test_same_ids_as_raw_sentencepiece_for_plain_text(tok: Tokenizer, sp) -> None:
    for text in ["Hello, world!", "你好，世界！", "def foo(x):\n    return x + 1\n", " leading", "😀 emoji"]:
        assert tok.encode(text, add_special_tokens=False) == sp.encode(text)


def test_out_of_range_ids_decode_to_nothing(tok: Tokenizer) -> None:
    assert tok.decode([15115, 92544, 100000, -1]) == "hello"
    assert tok.id_to_token(92544) is None
    assert tok.token_to_id("definitely not a piece") is None


@settings(max_examples=300, deadline=None)
@given(texts)
def test_round_trip(tok: Tokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


@settings(max_examples=150, deadline=None)
@given(st.text(st.one_of(st.sampled_from(string.printable), st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF))))
def test_plain_text_matches_raw_sentencepiece(tok: Tokenizer, sp, text: str) -> None:
    assume(not any(special in text for special in SPECIALS))
    assert tok.encode(text, add_special_tokens=False) == sp.encode(text)


@settings(max_examples=150, deadline=None)
@given(texts, st.booleans())
def test_streaming_matches_decode(tok: Tokenizer, text: str, skip: bool) -> None:
    ids = tok.encode(text)
    detok = IncrementalDetokenizer(tok, skip_special_tokens=skip)
    pieces = [detok.push(i) for i in ids]
    pieces.append(detok.flush())
    full = tok.decode(ids, skip_special_tokens=skip)
    assert "".join(pieces) == full
    if "\ufffd" not in full:
        assert not any("\ufffd" in p for p in pieces)


# Arbitrary id sequences, weighted towards byte pieces (ids 3-258) and the added tokens.
any_ids = st.lists(
    st.one_of(
        st.integers(3, 258),
        st.integers(0, 92543),
        st.sampled_from([0, 1, 2, *CHAT_TOKEN_IDS.values()]),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(any_ids, st.booleans())
def test_streaming_arbitrary_ids(tok: Tokenizer, ids: list[int], skip: bool) -> None:
    detok = IncrementalDetokenizer(tok, skip_special_tokens=skip)
    pieces = [detok.push(i) for i in ids]
    pieces.append(detok.flush())
    full = tok.decode(ids, skip_special_tokens=skip)
    assert "".join(pieces) == full
    if "\ufffd" not in full:
        assert not any("\ufffd" in p for p in pieces)


@settings(max_examples=150, deadline=None)
@given(texts, st.booleans())
def test_offsets(tok: Tokenizer, text: str, add_special_tokens: bool) -> None:
    ids, offsets = tok.encode_with_offsets(text, add_special_tokens=add_special_tokens)
    assert ids == tok.encode(text, add_special_tokens=add_special_tokens)
    assert len(offsets) == len(ids)
    covered = [False] * len(text)
    previous_end = 0
    for token_id, (start, end) in zip(ids, offsets, strict=True):
        assert 0 <= start <= end <= len(text)
        assert start >= previous_end  # SentencePiece spans do not overlap
        previous_end = end
        piece_text = tok.decode([token_id])
        if end > start and "\ufffd" not in piece_text:
            assert text[start:end] == piece_text
        for k in range(start, end):
            covered[k] = True
    assert all(covered)
    if add_special_tokens:
        assert ids[0] == 1
        assert offsets[0] == ((0, 3) if text.startswith("<s>") else (0, 0))


def test_offsets_label_mask(tok: Tokenizer) -> None:
    prompt = "<s><|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    answer = "Hi! 😀<|im_end|>\n"
    text = prompt + answer
    ids, offsets = tok.encode_with_offsets(text)
    mask = [start >= len(prompt) for start, _ in offsets]
    assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == answer


def test_save_and_reload(tok: Tokenizer, tmp_path: Path) -> None:
    tok.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    for text in ["<s><|im_start|>user\nhi<|im_end|>\n", "中文 😀 code()", "[UNUSED_TOKEN_146] \u2581"]:
        assert again.encode(text) == tok.encode(text)
        assert again.decode(again.encode(text)) == tok.decode(tok.encode(text))
    assert again.added_tokens == tok.added_tokens
    assert again.chat_template == tok.chat_template
    assert (again.add_bos, again.add_eos, again.bos_id, again.eos_id, again.pad_id) == (True, False, 1, 2, 2)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    original = json.loads((INTERNLM2_DIR / "tokenizer_config.json").read_text())
    assert config["added_tokens_decoder"] == original["added_tokens_decoder"]
    assert config["tokenizer_class"] == original["tokenizer_class"]
    assert config["auto_map"] == original["auto_map"]
    assert not list(tmp_path.glob(".*.tmp"))
