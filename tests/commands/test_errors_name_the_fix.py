"""Mistakes a newcomer makes get one line that names the fix, and leave nothing half-written behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_support import chat_rows_file, checked, run_puyu


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("errors") / "base"
    checked("model", "init", "--preset", "internlm2-tiny", "--out", str(folder))
    return folder


def test_export_of_a_lora_run_names_merge(base: Path, tmp_path: Path):
    data = chat_rows_file(tmp_path / "chat.jsonl")
    run = tmp_path / "run"
    checked(
        "finetune", "--method", "lora", "--model", str(base), "--data", str(data), "--out", str(run),
        "--max-steps", "1", "--seq-len", "64", "--no-progress",
    )  # fmt: skip
    result = run_puyu("export", str(run), "--out", str(tmp_path / "exported"))
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert "LoRA" in message and f"puyu merge {base} {run / 'adapter'}" in message
    assert not (tmp_path / "exported").exists()


@pytest.mark.parametrize("method", ["int8"])
def test_convert_of_a_quantized_folder_says_convert_then_quantize(base: Path, tmp_path: Path, method: str):
    quantized = tmp_path / method
    extra = ["--group-size", "32"] if method == "int4" else []
    checked("quantize", str(base), "--method", method, *extra, "--out", str(quantized))
    out = tmp_path / "converted"
    result = run_puyu("convert", str(quantized), "--to", "llama", "--out", str(out))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"an {method} folder" in result.stderr and "convert the unquantized model, then quantize" in result.stderr
    assert not out.exists()


def test_convert_to_qwen2_explains_up_front(base: Path, tmp_path: Path):
    assert "qwen2 only takes models with q/k/v biases" in " ".join(checked("convert", "--help").stdout.split())
    out = tmp_path / "qwen"
    result = run_puyu("convert", str(base), "--to", "qwen2", "--out", str(out))
    assert result.returncode == 2 and "Qwen2 layout always has them" in result.stderr and "--to llama" in result.stderr
    assert not out.exists()


def test_mistyped_serve_flag_shows_serve_usage_and_a_suggestion(base: Path):
    result = run_puyu("serve", str(base), "--prot", "8001")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: puyu serve ")
    assert "--prot (did you mean --port?)" in result.stderr


def test_template_whose_markers_are_not_tokens_warns(base: Path):
    args = ["generate", str(base), "--chat", "--prompt", "hi", "--max-tokens", "2", "--temperature", "0"]
    result = checked(*args, "--template", "llama3")
    assert "warning: the llama3 template's markers" in result.stderr and "<|start_header_id|>" in result.stderr
    assert "warning" not in checked(*args, "--template", "internlm2").stderr
