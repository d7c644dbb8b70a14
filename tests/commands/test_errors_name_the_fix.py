"""Mistakes a newcomer makes get one line that names the fix, and leave nothing half-written behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli_support import chat_rows_file, checked, run_puyu
from puyu.cli import build_parser, main
from puyu.finetune.config import FinetuneConfig, FinetuneData
from puyu.model.checkpoint import parse_device
from puyu.model.init import init_model_folder
from puyu.quant.quantize import quantize_folder


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_model_folder("internlm2-tiny", tmp_path_factory.mktemp("errors") / "base")


@pytest.fixture(scope="module")
def lora_run(base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("lora")
    data = chat_rows_file(root / "chat.jsonl")
    result = checked(
        "finetune", "--method", "lora", "--model", str(base), "--data", str(data), "--out", str(root / "run"),
        "--max-steps", "3", "--seq-len", "64", "--no-progress",
    )  # fmt: skip
    return root / "run", result.stdout


def test_export_of_a_lora_run_names_merge(base: Path, lora_run: tuple[Path, str], tmp_path: Path):
    run, _ = lora_run
    result = run_puyu("export", str(run), "--out", str(tmp_path / "exported"))
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert "LoRA" in message and f"puyu merge {base} {run / 'adapter'}" in message
    assert not (tmp_path / "exported").exists()


def test_short_runs_log_every_step_in_xtuner_lines_and_plot_marks_points(
    lora_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    _, stdout = lora_run
    lines = [line for line in stdout.splitlines() if line.startswith("Iter(train)")]
    assert [line.split("]")[0] for line in lines] == ["Iter(train) [1/3", "Iter(train) [2/3", "Iter(train) [3/3"]
    assert all(" lr: " in line and " eta: " in line and " loss: " in line for line in lines)
    config = FinetuneConfig(run_dir="r", model="m", data=FinetuneData(path="d.jsonl"), max_steps=20).to_train_config()
    assert (config.schedule.warmup_steps, config.log_every) == (2, 2)
    config = FinetuneConfig(run_dir="r", model="m", data=FinetuneData(path="d.jsonl"), max_steps=500).to_train_config()
    assert (config.schedule.warmup_steps, config.log_every) == (10, 10)

    single = tmp_path / "single"
    single.mkdir()
    (single / "metrics.jsonl").write_text(json.dumps({"step": 1, "split": "train", "loss": 2.5, "lr": 1e-4}) + "\n")
    assert main(["plot", str(single)]) == 0
    assert "only 1 logged training step, drawn as a marker" in capsys.readouterr().out
    assert (single / "plots" / "loss.png").is_file()


def test_device_defaults_to_auto_everywhere():
    parser = build_parser()
    for args in (["generate", "m", "--prompt", "x"], ["chat", "m"], ["serve", "m"], ["finetune"]):
        assert parser.parse_args(args).device in ("auto", None), args  # finetune: its config's "auto"
    assert parse_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_convert_of_a_quantized_folder_says_convert_then_quantize(base: Path, tmp_path: Path):
    quantized = quantize_folder(base, tmp_path / "int8", method="int8")
    out = tmp_path / "converted"
    result = run_puyu("convert", str(quantized), "--to", "llama", "--out", str(out))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "an int8 folder" in result.stderr and "convert the unquantized model, then quantize" in result.stderr
    assert not out.exists()


def test_convert_to_qwen2_explains_up_front(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    assert "qwen2 only takes models with q/k/v biases" in " ".join(capsys.readouterr().out.split())
    out = tmp_path / "qwen"
    assert main(["convert", str(base), "--to", "qwen2", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "Qwen2 layout always has them" in error and "--to llama" in error
    assert not out.exists()


def test_mistyped_serve_flag_shows_serve_usage_and_a_suggestion(base: Path):
    result = run_puyu("serve", str(base), "--prot", "8001")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: puyu serve ")
    assert "--prot (did you mean --port?)" in result.stderr


def test_template_whose_markers_are_not_tokens_warns(base: Path, capsys: pytest.CaptureFixture[str]):
    args = ["generate", str(base), "--chat", "--prompt", "hi", "--max-tokens", "2", "--temperature", "0"]
    assert main([*args, "--template", "llama3"]) == 0
    error = capsys.readouterr().err
    assert "warning: the llama3 template's markers" in error and "<|start_header_id|>" in error
    assert main([*args, "--template", "internlm2"]) == 0
    assert "warning" not in capsys.readouterr().err
