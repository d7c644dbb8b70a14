"""Trainable token rows beside LoRA: the forward equals the merged matrix, PEFT reads and writes the same
folders, InternLM2 folders use their own matrix names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from puyu.errors import PuyuError
from puyu.finetune.adapter import load_adapter, merge_adapter, save_adapter
from puyu.finetune.lora import LoraConfig, apply_lora, lora_disabled, lora_parameters, merge_lora
from puyu.finetune.trainable_tokens import token_modules
from puyu.model import load_model
from puyu.model.init import init_model_folder

IDS = torch.tensor([[1, 5, 9, 7, 5, 40, 9, 3], [9, 9, 2, 5, 11, 7, 300, 5]])


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Random adapter weights and token rows, so that every part visibly changes the logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in lora_parameters(model):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_model_folder("llama-tiny", tmp_path_factory.mktemp("llama") / "base", seed=3)


def test_rows_train_alone_and_merge_into_the_same_logits(llama: Path) -> None:
    model = load_model(llama, dtype="float32")
    with torch.no_grad():
        base_logits = model(IDS)
    lora = LoraConfig(r=2, alpha=4.0, trainable_token_indices={"embed_tokens": [5, 9], "lm_head": [5, 7]})
    apply_lora(model, lora)
    _randomise(model, seed=1)

    logits = model(IDS)
    logits[..., [5, 7]].sum().backward()
    embed, head = model.model.embed_tokens, model.lm_head
    assert embed.trainable_tokens_delta.grad is not None and head.trainable_tokens_delta.grad is not None
    assert embed.base_layer.weight.grad is None and head.base_layer.weight.grad is None
    with torch.no_grad(), lora_disabled(model):
        assert torch.equal(model(IDS), base_logits)

    before = embed.base_layer.weight.detach().clone()
    merge_lora(model)
    assert not list(token_modules(model))
    with torch.no_grad():
        assert (model(IDS) - logits.detach()).abs().max().item() <= 1e-4
    changed = (model.model.embed_tokens.weight != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [5, 9]


def test_tied_head_shares_the_embedding_rows(tmp_path: Path) -> None:
    base = init_model_folder("llama-tiny", tmp_path / "tied", overrides={"tie_word_embeddings": True}, seed=2)
    model = load_model(base, dtype="float32")
    apply_lora(model, LoraConfig(r=2, trainable_token_indices=[4, 6]))
    assert model.lm_head.trainable_tokens_delta is model.model.embed_tokens.trainable_tokens_delta
    assert sum(p.numel() for p in lora_parameters(model)) == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    _randomise(model, seed=4)
    with torch.no_grad():
        logits = model(IDS)
    adapter = save_adapter(model, tmp_path / "adapter", LoraConfig(r=2, trainable_token_indices=[4, 6]), base)
    assert json.loads((adapter / "adapter_config.json").read_text())["trainable_token_indices"] == [4, 6]
    again = load_model(base, dtype="float32")
    load_adapter(again, adapter)
    with torch.no_grad():
        assert (again(IDS) - logits).abs().max().item() <= 1e-4
    with pytest.raises(PuyuError, match="tied"):
        apply_lora(load_model(base, dtype="float32"), LoraConfig(trainable_token_indices={"lm_head": [4]}))


def test_peft_reads_and_writes_the_same_rows(llama: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    lora = LoraConfig(r=2, alpha=4.0, trainable_token_indices={"embed_tokens": [5, 9], "lm_head": [5, 7]})
    model = load_model(llama, dtype="float32")
    apply_lora(model, lora, seed=1)
    _randomise(model, seed=2)
    with torch.no_grad():
        ours = model(IDS)
    adapter = save_adapter(model, tmp_path / "adapter", lora, llama)
    names = set(load_file(adapter / "adapter_model.safetensors"))
    assert "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta" in names
    assert "base_model.model.lm_head.token_adapter.trainable_tokens_delta" in names

    hf = transformers.AutoModelForCausalLM.from_pretrained(llama, dtype=torch.float32)
    peft_model = peft.PeftModel.from_pretrained(hf, adapter).eval()
    with torch.no_grad():
        theirs = peft_model(input_ids=IDS).logits
    assert (ours - theirs).abs().max().item() <= 1e-4

    # The other direction: rows PEFT trained (random here) and saved, read by puyu.
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "trainable_tokens_delta" in name:
                param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(5)))
        expected = peft_model(input_ids=IDS).logits
    peft_model.save_pretrained(tmp_path / "from_peft")
    loaded = load_model(llama, dtype="float32")
    load_adapter(loaded, tmp_path / "from_peft")
    with torch.no_grad():
        assert (loaded(IDS) - expected).abs().max().item() <= 1e-4
        assert (expected - theirs).abs().max().item() > 1e-2


def test_internlm2_names_round_trip_and_merge(tmp_path: Path) -> None:
    base = init_model_folder("internlm2-tiny", tmp_path / "base", seed=4)
    lora = LoraConfig(r=2, trainable_token_indices={"tok_embeddings": [3, 8], "output": [8]})
    model = load_model(base, dtype="float32")
    apply_lora(model, lora, seed=1)
    _randomise(model, seed=6)
    with torch.no_grad():
        ours = model(IDS)
    adapter = save_adapter(model, tmp_path / "adapter", lora, base)
    tensors = load_file(adapter / "adapter_model.safetensors")
    assert tensors["base_model.model.model.tok_embeddings.token_adapter.trainable_tokens_delta"].shape == (2, 64)
    assert tensors["base_model.model.output.token_adapter.trainable_tokens_delta"].shape == (1, 64)
    written = json.loads((adapter / "adapter_config.json").read_text())
    assert written["trainable_token_indices"] == {"tok_embeddings": [3, 8], "output": [8]}

    again = load_model(base, dtype="float32")
    load_adapter(again, adapter)
    merged = load_model(merge_adapter(base, adapter, tmp_path / "merged"), dtype="float32")
    with torch.no_grad():
        assert (again(IDS) - ours).abs().max().item() <= 1e-4
        assert (merged(IDS) - ours).abs().max().item() <= 1e-4


def test_bad_token_settings_are_refused(llama: Path, tmp_path: Path) -> None:
    with pytest.raises(PuyuError, match="unknown matrix"):
        LoraConfig(trainable_token_indices={"norm": [1]})
    with pytest.raises(PuyuError, match="outside the vocabulary"):
        apply_lora(load_model(llama, dtype="float32"), LoraConfig(trainable_token_indices=[10**6]))
    model = load_model(llama, dtype="float32")
    lora = LoraConfig(r=2, trainable_token_indices=[5, 9])
    apply_lora(model, lora)
    adapter = save_adapter(model, tmp_path / "adapter", lora, llama)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "trainable_token_indices": [5, 9, 11]}))
    with pytest.raises(PuyuError, match=r"token rows \(2, 64\) do not fit 3 ids"):
        load_adapter(load_model(llama, dtype="float32"), adapter)
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "trainable_token_indices": None}))
    with pytest.raises(PuyuError, match="trainable_token_indices names no matrix"):
        load_adapter(load_model(llama, dtype="float32"), adapter)
