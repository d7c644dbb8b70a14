"""SentencePiece folders built in the test: a Llama-2 style model (dummy prefix) and one with chat tokens."""

from __future__ import annotations

import io
import json
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from puyu.tokenizer import IncrementalDetokenizer, Tokenizer

LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Language models read tokens, not characters.",
    "大型语言模型通过预测下一个词来学习语言。",
    "def tokenize(text):\n    return text.split()",
    "Mixed 中英文 text with numbers 12345.",
] * 20


def _train_sentencepiece(add_dummy_prefix: bool) -> bytes:
    import sentencepiece as spm

    spm.set_min_log_level(2)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(LINES),
        model_writer=model,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=add_dummy_prefix,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return model.getvalue()


@pytest.fixture(scope="module")
def llama_style(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """No config at all: BOS/EOS/UNK come from the model, BOS is added by default (as LlamaTokenizer does)."""
    folder = tmp_path_factory.mktemp("sp-llama")
    (folder / "tokenizer.model").write_bytes(_train_sentencepiece(add_dummy_prefix=True))
    return Tokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def chat_sp(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """No dummy prefix, chat tokens appended after the model's pieces via added_tokens.json and the config."""
    folder = tmp_path_factory.mktemp("sp-chat")
    (folder / "tokenizer.model").write_bytes(_train_sentencepiece(add_dummy_prefix=False))
    (folder / "added_tokens.json").write_text(json.dumps({"<|im_start|>": 400, "<|im_end|>": 401, "<tool>": 402}))
    config = {
        "add_bos_token": False,
        "add_eos_token": True,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "added_tokens_decoder": {"403": {"content": "<sep>", "special": False, "lstrip": True, "rstrip": True}},
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return Tokenizer.from_pretrained(folder)


def test_llama_style_defaults(llama_style: Tokenizer) -> None:
    tok = llama_style
    assert (tok.bos_token, tok.eos_token, tok.unk_token, tok.pad_token) == ("<s>", "</s>", "<unk>", None)
    assert tok.add_bos and not tok.add_eos
    assert tok.encode("hello")[0] == 1
    # The dummy prefix: "hello" is encoded as "▁hello" and decoded back without the space.
    first = tok.id_to_token(tok.encode("hello", add_special_tokens=False)[0])
    assert first.startswith("\u2581")
    assert tok.decode(tok.encode("hello")) == "<s>hello"
    assert tok.decode(tok.encode("hello"), skip_special_tokens=True) == "hello"


def test_chat_sp_added_tokens(chat_sp: Tokenizer) -> None:
    tok = chat_sp
    assert tok.vocab_size == 404
    assert tok.added_tokens["<|im_start|>"] == 400 and tok.added_tokens["<sep>"] == 403
    assert {400, 401} <= tok.special_ids and not {402, 403} & tok.special_ids
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == 400 and ids[-2:] == [401, tok.eos_id]
    # lstrip/rstrip: <sep> swallows the whitespace around it.
    assert tok.encode("a <sep> b", add_special_tokens=False) == tok.encode("a<sep>b", add_special_tokens=False)
    assert tok.decode(tok.encode("a <sep> b", add_special_tokens=False)) == "a<sep>b"
    assert tok.decode(tok.encode("<tool>x<|im_end|>"), skip_special_tokens=True) == "<tool>x"


def test_chat_sp_save_round_trip(chat_sp: Tokenizer, tmp_path: Path) -> None:
    chat_sp.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    text = "<|im_start|>user\n 中文 <sep> x<tool><|im_end|>\n"
    assert again.encode(text) == chat_sp.encode(text)
    assert again.added_tokens == chat_sp.added_tokens
    assert again.special_ids == chat_sp.special_ids
    # A stale tokenizer.json in the target would shadow tokenizer.model, so it goes.
    (tmp_path / "tokenizer.json").write_text("{}")
    chat_sp.save_pretrained(tmp_path)
    assert not (tmp_path / "tokenizer.json").exists()


chars = st.one_of(
    st.sampled_from(string.printable),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),
    st.characters(codec="utf-8", exclude_characters="\u2581"),
)
texts = st.lists(
    st.one_of(st.text(chars, min_size=1, max_size=10), st.sampled_from(["<s>", "</s>", " ", "  ", "\n"])),
    max_size=8,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(texts)
def test_llama_style_round_trip(llama_style: Tokenizer, text: str) -> None:
    # With a dummy prefix "▁" itself cannot round-trip (SentencePiece reads it as a space); all else does.
    assert llama_style.decode(llama_style.encode(text, add_special_tokens=False)) == text


@settings(max_examples=150, deadline=None)
@given(texts.map(lambda t: t.replace("<sep>", "")), st.sampled_from(["", "<|im_start|>", "\u2581", "<tool>"]))
def test_chat_sp_round_trip(chat_sp: Tokenizer, text: str, extra: str) -> None:
    text = extra + text + extra
    assert chat_sp.decode(chat_sp.encode(text, add_special_tokens=False)) == text


@settings(max_examples=150, deadline=None)
@given(texts, st.booleans())
def test_llama_style_streaming(llama_style: Tokenizer, text: str, skip: bool) -> None:
    ids = llama_style.encode(text)
    detok = IncrementalDetokenizer(llama_style, skip_special_tokens=skip)
    pieces = [detok.push(i) for i in ids]
    pieces.append(detok.flush())
    full = llama_style.decode(ids, skip_special_tokens=skip)
    assert "".join(pieces) == full
    if "\ufffd" not in full:
        assert not any("\ufffd" in p for p in pieces)


@settings(max_examples=100, deadline=None)
@given(texts)
def test_llama_style_offsets(llama_style: Tokenizer, text: str) -> None:
    ids, offsets = llama_style.encode_with_offsets(text)
    assert ids == llama_style.encode(text, add_special_tokens=False)
    for start, end in offsets:
        assert 0 <= start <= end <= len(text)
