"""`puyu quantize` and quantized folders: save → load_model round trips, accuracy against fp32, CLI errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from puyu.cli import main
from puyu.errors import PuyuError
from puyu.generation.generate import generate_tokens
from puyu.generation.sampling import SamplingParams
from puyu.model import ModelConfig, load_model
from puyu.model.init import init_model_folder
from puyu.quant.loading import QuantSpec
from puyu.quant.quantize import quantize_folder, quantize_model, read_calibration_texts
from puyu.quant.weight_only import Int4Linear, Int8Linear, awq_unpack

# Tiny shapes whose widths split into int4 groups of 32 (the preset's intermediate 176 does not).
OVERRIDES = {"intermediate_size": 256}
TOKENS = torch.randint(3, 500, (2, 48), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("quant")
    return {
        preset: init_model_folder(preset, root / preset, overrides=OVERRIDES)
        for preset in ("internlm2-tiny", "qwen2-tiny", "llama-tiny")
    }


def _perplexity(model, tokens: torch.Tensor) -> float:
    with torch.inference_mode():
        logits = model(tokens)
    return math.exp(F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()).item())


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("preset", ["internlm2-tiny", "qwen2-tiny", "llama-tiny"])
@pytest.mark.parametrize("method", ["int8", "int4"])
def test_saved_folder_reloads_to_the_in_memory_model(folders, tmp_path: Path, preset: str, method: str):
    src = folders[preset]
    out = quantize_folder(src, tmp_path / "q", method=method, group_size=32)
    loaded = load_model(out)
    in_memory = quantize_model(load_model(src, dtype="float32"), QuantSpec(method, group_size=32))
    layer = loaded.model.layers[0]
    assert isinstance(layer.self_attn.q_proj, Int8Linear if method == "int8" else Int4Linear)
    assert isinstance(layer.mlp.down_proj, Int8Linear if method == "int8" else Int4Linear)
    tied = ModelConfig.from_pretrained(src).tie_word_embeddings
    assert isinstance(loaded.lm_head, torch.nn.Linear if tied else Int8Linear)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(TOKENS), in_memory(TOKENS), rtol=0, atol=0)  # prefill (dequantize path)
        torch.testing.assert_close(loaded(TOKENS[:, :3]), in_memory(TOKENS[:, :3]), rtol=0, atol=0)  # kernel path
    assert (out / "tokenizer.json").is_file() and (out / "generation_config.json").is_file()


@pytest.mark.parametrize(("method", "logit_bound", "ppl_bound"), [("int8", 0.03, 0.01), ("int4", 0.2, 0.05)])
def test_quantized_logits_and_perplexity_stay_close_to_fp32(folders, tmp_path: Path, method, logit_bound, ppl_bound):
    # Bounds for the tiny random model (std-0.02 weights, group 32): measured relative logit errors are
    # ~0.008 (int8) and ~0.09 (int4); perplexity (≈ vocab size for a random model) moves < 0.1 % / 1 %.
    src = folders["llama-tiny"]
    reference = load_model(src, dtype="float32")
    quantized = load_model(quantize_folder(src, tmp_path / method, method=method, group_size=32))
    with torch.inference_mode():
        error = _relative_error(quantized(TOKENS), reference(TOKENS))
    assert 0 < error < logit_bound
    ppl_fp, ppl_q = _perplexity(reference, TOKENS), _perplexity(quantized, TOKENS)
    assert abs(ppl_q / ppl_fp - 1) < ppl_bound


def test_int4_folder_is_in_autoawq_gemm_layout(folders, tmp_path: Path):
    src = folders["internlm2-tiny"]
    out = quantize_folder(src, tmp_path / "awq", method="int4", group_size=32)
    config = json.loads((out / "config.json").read_text())
    qc = config["quantization_config"]
    assert (qc["quant_method"], qc["bits"], qc["group_size"], qc["zero_point"], qc["version"]) == (
        "awq", 4, 32, True, "gemm",
    )  # fmt: skip
    tiny = ModelConfig.from_pretrained(src)
    fused = (tiny.num_heads + 2 * tiny.num_kv_heads) * (tiny.head_dim or 0)
    with safe_open(out / "model.safetensors", framework="pt") as f:
        names = set(f.keys())
        qweight = f.get_tensor("model.layers.0.attention.wqkv.qweight")
        qzeros = f.get_tensor("model.layers.0.attention.wqkv.qzeros")
        scales = f.get_tensor("model.layers.0.attention.wqkv.scales")
        down = f.get_tensor("model.layers.0.feed_forward.w2.qweight")
        head = f.get_tensor("output.weight")
    assert qweight.dtype == torch.int32 and qweight.shape == (64, fused // 8)
    assert qzeros.dtype == torch.int32 and qzeros.shape == (2, fused // 8)
    assert scales.dtype == torch.float16 and scales.shape == (2, fused)
    assert down.shape == (256, 8) and head.dtype == torch.float32  # the head stays unquantized on disk
    assert not any(n.endswith("wqkv.weight") for n in names)
    # AWQ's dequantization of the stored tensors reproduces the original weight within half a step.
    fp = load_model(src, dtype="float32").model.layers[0].self_attn.q_proj.weight
    w = (
        awq_unpack(qweight).float() - awq_unpack(qzeros).float().repeat_interleave(32, 0)
    ) * scales.float().repeat_interleave(32, 0)
    q_rows = w.t()[: tiny.num_heads * (tiny.head_dim or 0) // tiny.num_kv_heads]  # first KV group's query heads
    half_step = scales.float().t()[: q_rows.shape[0]].repeat_interleave(32, 1) * 0.51
    assert torch.all((q_rows - fp[: q_rows.shape[0]]).abs() <= half_step)


def test_int8_without_quantized_head(folders, tmp_path: Path):
    out = quantize_folder(folders["llama-tiny"], tmp_path / "q", method="int8", lm_head=False)
    model = load_model(out)
    assert type(model.lm_head) is torch.nn.Linear
    assert json.loads((out / "config.json").read_text())["quantization_config"]["lm_head"] is False


def test_quantized_model_generates_like_the_fp32_model_at_first(folders, tmp_path: Path):
    src = folders["llama-tiny"]
    params = SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)
    prompt = TOKENS[0, :8].tolist()
    reference = generate_tokens(load_model(src, dtype="float32"), prompt, params)
    int8 = generate_tokens(load_model(quantize_folder(src, tmp_path / "q", method="int8")), prompt, params)
    assert int8[:1] == reference[:1] and len(int8) == 4


# ---- CLI ------------------------------------------------------------------------------------------


def test_cli_awq_end_to_end(folders, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    calib = tmp_path / "calib.jsonl"
    calib.write_text("\n".join(json.dumps({"text": f"calibration line {i} about models"}) for i in range(30)) + "\n")
    out = tmp_path / "awq"
    argv = ["quantize", str(folders["internlm2-tiny"]), "--method", "int4", "--group-size", "32", "--awq"]
    assert main([*argv, "--calib", str(calib), "--calib-samples", "4", "--out", str(out)]) == 0
    assert "int4 (AWQ)" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["puyu"]["awq_search"] is True
    model = load_model(out)
    reference = load_model(folders["internlm2-tiny"], dtype="float32")
    with torch.inference_mode():
        assert _relative_error(model(TOKENS), reference(TOKENS)) < 0.2


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_cli_rejects_bad_input(folders, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    src = str(folders["llama-tiny"])
    out = str(tmp_path / "out")
    assert "unknown --method 'int3'" in _error(["quantize", src, "--method", "int3", "--out", out], capsys)
    assert "--awq needs calibration text" in _error(
        ["quantize", src, "--method", "int4", "--awq", "--out", out], capsys
    )
    assert "not a model folder" in _error(
        ["quantize", str(tmp_path / "nope"), "--method", "int8", "--out", out], capsys
    )
    assert "multiple of 32" in _error(["quantize", src, "--method", "int4", "--group-size", "40", "--out", out], capsys)
    assert not Path(out).exists()
    assert main(["quantize", src, "--method", "int8", "--out", out]) == 0
    assert "already quantized" in _error(["quantize", out, "--method", "int4", "--out", str(tmp_path / "o2")], capsys)
    assert "must differ" in _error(["quantize", src, "--method", "int8", "--out", src], capsys)
    bad = tmp_path / "calib.csv"
    bad.write_text("a,b\n")
    argv = ["quantize", src, "--method", "int4", "--group-size", "32", "--awq", "--calib", str(bad), "--out", out]
    assert ".txt or .jsonl" in _error(argv, capsys)


def test_read_calibration_texts(tmp_path: Path):
    txt = tmp_path / "c.txt"
    txt.write_text("some text\n")
    assert read_calibration_texts(txt) == ["some text\n"]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert read_calibration_texts(jsonl) == ["a", "b"]
    jsonl.write_text('{"text": "a"}\n{"content": "b"}\n')
    with pytest.raises(PuyuError, match=r"c.jsonl:2: expected an object with a string field 'text'"):
        read_calibration_texts(jsonl)
    with pytest.raises(PuyuError, match="not found"):
        read_calibration_texts(tmp_path / "missing.txt")


def test_unsupported_quantization_config_is_a_clear_error(folders, tmp_path: Path):
    out = quantize_folder(folders["llama-tiny"], tmp_path / "q", method="int8")
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(PuyuError, match="unsupported quantization_config"):
        load_model(out)


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_bf16_folder_round_trips_exactly(tmp_path: Path, method: str):
    src = init_model_folder("llama-tiny", tmp_path / "bf16", overrides=OVERRIDES, dtype="bfloat16")
    out = quantize_folder(src, tmp_path / "q", method=method, group_size=32)
    with safe_open(out / "model.safetensors", framework="pt") as f:
        assert f.get_tensor("model.norm.weight").dtype == torch.bfloat16
    reference = quantize_model(load_model(src, dtype="float32"), QuantSpec(method, group_size=32))
    with torch.inference_mode():
        torch.testing.assert_close(load_model(out)(TOKENS), reference(TOKENS), rtol=0, atol=0)


def test_int4_pads_layers_whose_width_does_not_split_into_groups(tmp_path: Path):
    src = init_model_folder("internlm2-tiny", tmp_path / "m")  # intermediate 176: down_proj cannot use groups of 32
    calib = ["a short calibration text for the search " * 8]
    out = quantize_folder(src, tmp_path / "q", method="int4", group_size=32, awq=True, calib_texts=calib)
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert "modules_to_not_convert" not in qc and qc["puyu"]["skip"] == []
    with safe_open(out / "model.safetensors", framework="pt") as f:  # AWQ layout, inputs padded to 192
        assert f.get_tensor("model.layers.0.feed_forward.w2.qweight").shape == (192, 8)
        assert f.get_tensor("model.layers.0.feed_forward.w2.scales").shape == (6, 64)
    model = load_model(out)
    down = model.model.layers[0].mlp.down_proj
    assert isinstance(down, Int4Linear) and (down.in_features, down.padded_in) == (176, 192)
    reference = load_model(src, dtype="float32")
    with torch.inference_mode():
        assert _relative_error(model(TOKENS), reference(TOKENS)) < 0.2
