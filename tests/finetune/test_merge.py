"""Merging adapters: in memory (`merge_lora`), into a folder (`merge_adapter`) and through `puyu merge`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from puyu.cli import main
from puyu.errors import PuyuError
from puyu.finetune.adapter import merge_adapter, save_adapter
from puyu.finetune.lora import LoraConfig, LoRALinear, apply_lora, lora_modules, merge_lora
from puyu.model import load_model
from puyu.model.init import init_model_folder
from puyu.tokenizer import Tokenizer

IDS = torch.randint(3, 512, (2, 9), generator=torch.Generator().manual_seed(1))


def _trained_adapter(base: Path, out: Path, lora: LoraConfig) -> tuple[Path, torch.Tensor]:
    """An adapter with random non-zero weights, and the logits of base + adapter."""
    model = load_model(base, dtype="float32")
    apply_lora(model, lora, seed=0)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _, layer in lora_modules(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.1)
        logits = model(IDS)
    return save_adapter(model, out, lora, base), logits


def test_merge_lora_equals_adapter_model() -> None:
    from puyu.model.config import ModelConfig
    from puyu.model.init import random_model

    model = random_model(ModelConfig.from_name("qwen2-tiny"), seed=0)
    apply_lora(model, LoraConfig(r=4, alpha=4.0), seed=0)
    with torch.no_grad():
        for _, layer in lora_modules(model):
            layer.lora_B.normal_(0, 0.1)
        adapted = model(IDS)
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert isinstance(model.model.layers[0].self_attn.q_proj, torch.nn.Linear)
    with torch.no_grad():
        assert (model(IDS) - adapted).abs().max().item() <= 1e-5


@pytest.mark.parametrize("preset", ["llama-tiny", "internlm2-tiny"])
def test_merge_adapter_folder(tmp_path: Path, preset: str) -> None:
    base = init_model_folder(preset, tmp_path / "base", seed=5)
    adapter, adapted = _trained_adapter(base, tmp_path / "adapter", LoraConfig(r=2, alpha=3.0))
    out = merge_adapter(base, adapter, tmp_path / "merged")

    merged = load_model(out, dtype="float32")
    with torch.no_grad():
        assert (merged(IDS) - adapted).abs().max().item() <= 1e-5
    # Same layout and tokenizer as the base.
    assert (
        json.loads((out / "config.json").read_text())["architectures"]
        == json.loads((base / "config.json").read_text())["architectures"]
    )
    assert Tokenizer.from_pretrained(out).encode("hello") == Tokenizer.from_pretrained(base).encode("hello")


def test_merged_folder_loads_in_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    base = init_model_folder("qwen2-tiny", tmp_path / "base", seed=5)
    adapter, adapted = _trained_adapter(base, tmp_path / "adapter", LoraConfig(r=4, alpha=8.0))
    out = merge_adapter(base, adapter, tmp_path / "merged")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        assert (hf(input_ids=IDS).logits - adapted).abs().max().item() <= 1e-4
    assert transformers.AutoTokenizer.from_pretrained(out) is not None


def test_cli_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = init_model_folder("llama-tiny", tmp_path / "base", seed=6)
    adapter, adapted = _trained_adapter(base, tmp_path / "adapter", LoraConfig(r=2, alpha=4.0))
    code = main(["merge", str(base), str(adapter), "--out", str(tmp_path / "merged"), "--dtype", "bfloat16"])
    assert code == 0
    assert str(tmp_path / "merged") in capsys.readouterr().out
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    merged = load_model(tmp_path / "merged", dtype="float32")
    with torch.no_grad():
        assert (merged(IDS) - adapted).abs().max().item() <= 0.05  # bf16 storage rounding only


def test_cli_merge_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = init_model_folder("llama-tiny", tmp_path / "base")
    other = init_model_folder("llama-tiny", tmp_path / "other", overrides={"intermediate_size": 128})
    adapter, _ = _trained_adapter(other, tmp_path / "adapter", LoraConfig(r=2, target_modules=["up_proj"]))
    assert main(["merge", str(base), str(adapter), "--out", str(tmp_path / "merged")]) == 2
    assert "was trained for" in capsys.readouterr().err
    assert main(["merge", str(base), str(tmp_path / "nothing"), "--out", str(tmp_path / "merged")]) == 2
    assert "not an adapter folder" in capsys.readouterr().err
    with pytest.raises(PuyuError, match="must differ"):
        merge_adapter(base, adapter, base)
