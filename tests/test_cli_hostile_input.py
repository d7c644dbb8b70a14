"""CLI mistakes end with one line on stderr and exit status 2: no traceback, nothing half-printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from puyu.cli import main
from puyu.model.init import init_model_folder


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_model_folder("internlm2-tiny", tmp_path_factory.mktemp("cli") / "m", overrides={"num_layers": 1})


def _fails(args: list[str], capsys: pytest.CaptureFixture[str], expected: str) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("puyu: error: ") and expected in lines[0], captured.err


def test_model_mistakes(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init = ["model", "init", "--preset", "internlm2-tiny", "--out", str(tmp_path / "x")]
    _fails([*init, "--set", "num_layers=abc"], capsys, "--set num_layers=abc: expected int")
    _fails([*init, "--set", "rope_theta=[1]"], capsys, "expected float")
    _fails(["model", "info", str(model / "config.json")], capsys, "is a file")
    _fails(["model", "info", str(model / "model.safetensors")], capsys, "takes the model folder")


def test_serve_port_out_of_range(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["serve", str(model), "--port", "99999"], capsys, "--port must be in 0..65535")


def test_binary_judge_input(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "answers.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)
    _fails(
        ["eval", "judge", "--judge", str(model), "--input", str(binary), "--out", str(tmp_path / "j")],
        capsys,
        "not UTF-8",
    )


def test_tokenizer_training_needs_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("  \n\n")
    args = ["tokenizer", "train", str(tmp_path / "empty.txt"), str(tmp_path / "blank.txt"), "--vocab-size", "300"]
    _fails([*args, "--out", str(tmp_path / "tok")], capsys, "no text to train on")
    assert not (tmp_path / "tok").exists()


def test_a_bad_quickstart_override_is_blamed_on_the_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fails(
        ["quickstart", "pretrain.max_steps=abc", "--out", str(tmp_path / "q")],
        capsys,
        "override pretrain.max_steps=abc",
    )
    assert not (tmp_path / "q").exists()
