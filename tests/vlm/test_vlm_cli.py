"""`puyu chat MODEL --image FILE` on a tiny random InternVL folder."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from puyu.cli import main
from puyu.engine.llm import LLM
from puyu.generation.sampling import SamplingParams
from puyu.model.init import init_model_folder
from puyu.model.vision.init import init_vlm_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_vlm_folder(tmp_path_factory.mktemp("cli-vlm") / "tiny", seed=1)


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "red.png"
    Image.new("RGB", (80, 30), (220, 20, 20)).save(path)
    return path


def test_chat_with_an_image_prints_what_the_library_answers(
    folder: Path, picture: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setattr(sys, "stdin", io.StringIO("What colour is it?\nAnd now?\n"))
    argv = ["chat", str(folder), "--image", str(picture), "--temperature", "0", "--max-tokens", "6"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    llm = LLM(folder)
    first = [
        {
            "role": "user",
            "content": [{"type": "image", "image": str(picture)}, {"type": "text", "text": "What colour is it?"}],
        }
    ]
    expected = llm.chat(first, SamplingParams(max_tokens=6, temperature=0))[0]
    second = [*first, {"role": "assistant", "content": expected.text}, {"role": "user", "content": "And now?"}]
    reply = llm.chat(second, SamplingParams(max_tokens=6, temperature=0))[0].text
    assert printed == f"{expected.text}\n{reply}\n"


def test_image_errors_are_one_line(folder: Path, picture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    text_only = init_model_folder("qwen2-tiny", tmp_path / "text")
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    for argv, message in [
        (["chat", str(text_only), "--image", str(picture)], "has no vision encoder"),
        (["chat", str(folder), "--image", str(tmp_path / "missing.png")], "no such image file"),
        (["chat", str(folder), "--image", str(not_image)], "not an image"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("puyu: error: ") and message in err and err.count("\n") == 1


def test_vlm_init_and_world_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["vlm", "init", "--out", str(tmp_path / "m"), "--layout", "original"]) == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text())["architectures"] == ["InternVLChatModel"]
    assert main(["vlm", "world", "--out", str(tmp_path / "w"), "--count", "3"]) == 0
    assert len((tmp_path / "w" / "qa.jsonl").read_text().splitlines()) == 3
    assert main(["vlm", "world", "--out", str(tmp_path / "w"), "--count", "0"]) == 2
    assert "count must be at least 1" in capsys.readouterr().err
