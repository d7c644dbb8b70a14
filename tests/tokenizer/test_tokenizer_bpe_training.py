"""Byte-level BPE: training with `train_bpe`, the instant `byte_level_tokenizer`, parity with transformers."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from puyu.chat import BUILTINS, ChatTemplate
from puyu.errors import PuyuError
from puyu.tokenizer import Tokenizer, byte_level_tokenizer, train_bpe

CORPUS = """\
The quick brown fox jumps over the lazy dog. Language models read tokens, not characters.
def tokenize(text: str) -> list[int]:
    return [ord(c) for c in text if c.isprintable()]
大型语言模型通过预测下一个词来学习语言。今天天气很好，我们去公园散步吧。
书生·浦语是一个开源的大语言模型。模型的训练需要大量的数据和计算资源。
for i in range(10):
    print(f"step {i}: loss={1.0 / (i + 1):.3f}")
Mixed 中英文 text with numbers 12345 and emoji 😀🎉 appears here too.
"""

SAMPLES = [
    "hello world",
    "The quick brown fox 跳过了 the lazy dog.",
    "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n",
    "def f(x):\n    return x  # 注释\n",
    "emoji 😀🎉 and rare 𠀀 chars",
    "  leading and trailing spaces  ",
    "</s> in the middle <s> and <unk> text",
    "",
]

FAMILY_TOKENS = {
    "internlm2": ["<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>", "<|interpreter|>", "<|plugin|>"],
    "qwen2": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
    "llama3": [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
    ],
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(CORPUS * 20, encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=list(FAMILY_TOKENS))
def trained(request: pytest.FixtureRequest, corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp(f"bpe-{request.param}")
    tok = train_bpe([corpus], 600, out, chat_tokens=request.param, show_progress=False)
    return request.param, out, tok


@pytest.fixture(scope="module")
def internlm2_bpe(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    out = tmp_path_factory.mktemp("bpe-extra")
    return train_bpe([corpus], 500, out, special_tokens=["<pad>", "<|extra|>"], show_progress=False)


def test_trained_files_and_vocab(trained) -> None:
    family, out, tok = trained
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {p.name for p in out.iterdir()}
    assert tok.backend_kind == "tokenizers"
    assert 256 < tok.vocab_size <= 600
    for content in FAMILY_TOKENS[family]:
        assert content in tok.added_tokens
        assert tok.token_to_id(content) in tok.special_ids
        assert tok.encode(content, add_special_tokens=False) == [tok.token_to_id(content)]
    # Merges were learned: frequent words take fewer tokens than bytes.
    assert len(tok.encode(" language", add_special_tokens=False)) < len(" language")
    assert tok.chat_template == BUILTINS[family].source  # the family's built-in template from puyu.chat


def test_family_special_tokens(trained) -> None:
    family, _, tok = trained
    if family == "internlm2":
        assert (tok.bos_id, tok.eos_id, tok.unk_token) == (1, 2, "<unk>")
        assert tok.add_bos and tok.encode("hi")[0] == 1
    elif family == "qwen2":
        assert tok.bos_id is None and not tok.add_bos
        assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    else:
        assert tok.bos_token == "<|begin_of_text|>" and tok.add_bos
        assert tok.encode("hi")[0] == tok.bos_id
    assert not tok.add_eos


def test_transformers_parity(trained) -> None:
    transformers = pytest.importorskip("transformers")
    _, out, tok = trained
    hf = transformers.AutoTokenizer.from_pretrained(str(out))
    for text in SAMPLES:
        assert hf.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False), text
        assert hf(text)["input_ids"] == tok.encode(text), text
        ids = tok.encode(text)
        assert hf.decode(ids, skip_special_tokens=False) == tok.decode(ids), text
        assert hf.decode(ids, skip_special_tokens=True) == tok.decode(ids, skip_special_tokens=True), text
    assert hf.bos_token_id == tok.bos_id
    assert hf.eos_token_id == tok.eos_id
    assert hf.pad_token_id == tok.pad_id
    assert len(hf) == tok.vocab_size


CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi! 你好"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Count to three."},
]


def test_chat_template_matches_transformers(trained) -> None:
    transformers = pytest.importorskip("transformers")
    family, out, tok = trained
    config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["chat_template"] == BUILTINS[family].source
    template = ChatTemplate.for_model(tok, family)
    assert template.name == family
    ours = template.render(CHAT, add_generation_prompt=True).text
    hf = transformers.AutoTokenizer.from_pretrained(str(out))
    assert hf.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True) == ours
    assert "Count to three." in ours


def test_bos_written_in_text_is_not_doubled(trained) -> None:
    transformers = pytest.importorskip("transformers")
    _, out, tok = trained
    hf = transformers.AutoTokenizer.from_pretrained(str(out))
    if tok.add_bos:
        text = f"{tok.bos_token}hello"
        # transformers would prepend a second BOS here; this tokenizer keeps the one in the text.
        assert tok.encode(text) == hf.encode(text, add_special_tokens=False)
        assert tok.encode(text).count(tok.bos_id) == 1
    else:
        assert tok.encode("<|im_start|>hello") == hf.encode("<|im_start|>hello")


def test_extra_special_tokens(internlm2_bpe: Tokenizer) -> None:
    tok = internlm2_bpe
    for content in ["<pad>", "<|extra|>"]:
        token_id = tok.token_to_id(content)
        assert token_id is not None and token_id in tok.special_ids
        assert tok.encode(f"a{content}b", add_special_tokens=False)[1] == token_id
        assert tok.decode(tok.encode(f"a{content}b"), skip_special_tokens=True) == "ab"


chars = st.one_of(
    st.sampled_from(string.printable),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.characters(codec="utf-8"),
)
texts = st.lists(
    st.one_of(st.text(chars, max_size=10), st.sampled_from(["<|im_start|>", "<|im_end|>", "<s>", "</s>", " ", "\n"])),
    max_size=8,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_trained_round_trip(internlm2_bpe: Tokenizer, text: str) -> None:
    tok = internlm2_bpe
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    ids, offsets = tok.encode_with_offsets(text)
    assert ids == tok.encode(text, add_special_tokens=False)
    for token_id, (start, end) in zip(ids, offsets, strict=True):
        assert 0 <= start <= end <= len(text)
        piece = tok.decode([token_id])
        if "\ufffd" not in piece:
            assert text[start:end] == piece


def test_training_reads_folders(corpus: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.txt").write_text(CORPUS, encoding="utf-8")
    (data / "b.md").write_text(CORPUS, encoding="utf-8")
    (data / ".hidden").write_bytes(b"\xff\xfe not utf-8")
    tok = train_bpe([data], 400, tmp_path / "out", chat_tokens="qwen2", show_progress=False)
    assert tok.decode(tok.encode("quick 语言")) == "quick 语言"


def test_training_errors(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(PuyuError, match=r"missing\.txt: no such file"):
        train_bpe([tmp_path / "missing.txt"], 500, tmp_path / "out", show_progress=False)
    with pytest.raises(PuyuError, match="vocab_size=100: too small"):
        train_bpe([corpus], 100, tmp_path / "out", show_progress=False)
    with pytest.raises(PuyuError, match="unknown chat token family"):
        train_bpe([corpus], 500, tmp_path / "out", chat_tokens="gpt9", show_progress=False)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\xff\xfe\xfa binary")
    with pytest.raises(PuyuError, match=r"bad\.bin"):
        train_bpe([bad], 500, tmp_path / "out", show_progress=False)


@pytest.mark.parametrize("family", list(FAMILY_TOKENS))
def test_byte_level_tokenizer(family: str) -> None:
    tok = byte_level_tokenizer(family)
    n_special = len(tok.added_tokens)
    assert tok.vocab_size == 256 + n_special
    text = "Any text: 中文, emoji 😀, bytes \x00\x7f."
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) == len(text.encode("utf-8"))  # no merges: one token per byte
    assert tok.decode(ids) == text
    for content in FAMILY_TOKENS[family]:
        assert tok.token_to_id(content) in tok.special_ids
    # Deterministic: the same ids every time.
    assert byte_level_tokenizer(family).encode(text) == tok.encode(text)
    # Byte b is id n_special + b.
    assert tok.encode("A", add_special_tokens=False) == [n_special + ord("A")]
    assert tok.chat_template == BUILTINS[family].source
    assert ChatTemplate.for_model(tok, family).name == family


def test_byte_level_tokenizer_saves_for_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tok = byte_level_tokenizer()
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["add_bos_token"] is True and config["bos_token"] == "<s>"
    again = Tokenizer.from_pretrained(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    for text in SAMPLES:
        assert again.encode(text) == tok.encode(text) == hf(text)["input_ids"]
        assert again.decode(tok.encode(text)) == hf.decode(tok.encode(text))
