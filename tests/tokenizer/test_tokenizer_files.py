"""Loading and saving tokenizer folders: side files, chat templates, BOS handling, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from puyu.errors import PuyuError
from puyu.tokenizer import Tokenizer, byte_level_tokenizer

TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


def _folder(tmp_path: Path, name: str = "tok", family: str = "internlm2") -> Path:
    folder = tmp_path / name
    byte_level_tokenizer(family).save_pretrained(folder)
    return folder


def _edit_config(folder: Path, **changes: object) -> None:
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def test_save_round_trip_keeps_ids(tmp_path: Path) -> None:
    tok = byte_level_tokenizer("qwen2")
    tok.save_pretrained(tmp_path / "a")
    again = Tokenizer.from_pretrained(tmp_path / "a")
    text = "<|im_start|>system\nBe brief.<|im_end|>\n中文 😀"
    assert again.encode(text) == tok.encode(text)
    assert again.added_tokens == tok.added_tokens
    assert again.special_ids == tok.special_ids
    assert (again.bos_token, again.eos_token, again.pad_token) == (None, "<|endoftext|>", "<|endoftext|>")
    assert again.chat_template == tok.chat_template
    # Saving again over the same folder works and leaves no temporary files behind.
    again.save_pretrained(tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]


def test_chat_template_from_config_string(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _edit_config(folder, chat_template=TEMPLATE)
    assert Tokenizer.from_pretrained(folder).chat_template == TEMPLATE


def test_chat_template_from_config_list(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    templates = [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": TEMPLATE}]
    _edit_config(folder, chat_template=templates)
    tok = Tokenizer.from_pretrained(folder)
    assert tok.chat_template == TEMPLATE
    tok.chat_template = "changed"
    tok.save_pretrained(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())["chat_template"]
    assert {t["name"]: t["template"] for t in saved} == {"default": "changed", "tool_use": "tools"}


def test_chat_template_from_jinja_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _edit_config(folder, chat_template=None)
    assert Tokenizer.from_pretrained(folder).chat_template is None
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    tok = Tokenizer.from_pretrained(folder)
    assert tok.chat_template == TEMPLATE
    tok.save_pretrained(tmp_path / "out")
    assert Tokenizer.from_pretrained(tmp_path / "out").chat_template == TEMPLATE


def test_add_bos_from_config(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _edit_config(folder, add_bos_token=False, add_eos_token=True)
    tok = Tokenizer.from_pretrained(folder)
    assert tok.encode("a") == [*tok.encode("a", add_special_tokens=False), tok.eos_id]
    ids, offsets = tok.encode_with_offsets("ab", add_special_tokens=True)
    assert ids[-1] == tok.eos_id and offsets[-1] == (2, 2)
    # The saved tokenizer.json agrees, so transformers adds the same tokens.
    tok.save_pretrained(tmp_path / "out")
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    assert hf.encode("a").ids == tok.encode("a")


def test_add_bos_from_post_processor(tmp_path: Path) -> None:
    # Llama-3 style: the config says nothing, tokenizer.json's post-processor adds BOS.
    folder = _folder(tmp_path, family="llama3")
    _edit_config(folder, add_bos_token=None, add_eos_token=None, bos_token=None)
    (folder / "special_tokens_map.json").unlink()
    tok = Tokenizer.from_pretrained(folder)
    assert tok.add_bos and not tok.add_eos
    assert tok.bos_token == "<|begin_of_text|>"
    ids = tok.encode("hi")
    assert ids[0] == tok.bos_id and ids.count(tok.bos_id) == 1
    assert tok.encode("<|begin_of_text|>hi") == ids


def test_config_added_tokens_join_tokenizer_json(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"]["265"] = {"content": "<|new|>", "special": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    tok = Tokenizer.from_pretrained(folder)
    assert tok.token_to_id("<|new|>") == 265
    assert tok.encode("a<|new|>b", add_special_tokens=False)[1] == 265
    assert 265 in tok.special_ids
    assert tok.vocab_size == 266


def test_special_tokens_map_fills_missing_config(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "tokenizer_config.json").unlink()
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "</s>"})
    )
    tok = Tokenizer.from_pretrained(folder)
    assert (tok.bos_id, tok.eos_id) == (1, 2)
    assert tok.encode("x")[0] == 1  # from the post-processor


def test_tokenizer_json_preferred_and_file_paths(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "tokenizer.model").write_bytes(b"not looked at")
    assert Tokenizer.from_pretrained(folder).backend_kind == "tokenizers"
    assert Tokenizer.from_pretrained(folder / "tokenizer.json").vocab_size == 265
    with pytest.raises(PuyuError, match=r"tokenizer\.model"):
        Tokenizer.from_pretrained(folder / "tokenizer.model")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(PuyuError, match="nowhere: no such folder"):
        Tokenizer.from_pretrained(tmp_path / "nowhere")


def test_folder_without_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(PuyuError) as err:
        Tokenizer.from_pretrained(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "no tokenizer found" in message
    assert "tokenizer.json" in message and "tokenizer.model" in message
    assert "\n" not in message


@pytest.mark.parametrize("content", ["{not json", "[]", '{"model": 3}', ""])
def test_corrupt_tokenizer_json(tmp_path: Path, content: str) -> None:
    (tmp_path / "tokenizer.json").write_text(content)
    with pytest.raises(PuyuError) as err:
        Tokenizer.from_pretrained(tmp_path)
    assert str(tmp_path / "tokenizer.json") in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage" * 100, b'{"json": "is not a model"}'])
def test_corrupt_tokenizer_model(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "tokenizer.model").write_bytes(content)
    with pytest.raises(PuyuError) as err:
        Tokenizer.from_pretrained(tmp_path)
    assert str(tmp_path / "tokenizer.model") in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"])
def test_corrupt_side_file(tmp_path: Path, name: str) -> None:
    folder = _folder(tmp_path)
    (folder / name).write_text('{"bos_token": ')
    with pytest.raises(PuyuError, match=re.escape(name)):
        Tokenizer.from_pretrained(folder)


def test_tokenizer_config_must_be_object(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "tokenizer_config.json").write_text("[1, 2]")
    with pytest.raises(PuyuError, match=r"tokenizer_config\.json: expected a JSON object"):
        Tokenizer.from_pretrained(folder)
