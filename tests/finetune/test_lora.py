"""LoRA layers: PEFT's initialisation and arithmetic, freezing, disabling and merging."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from puyu.errors import PuyuError
from puyu.finetune.lora import LoraConfig, LoRALinear, apply_lora, lora_disabled, lora_modules, lora_parameters
from puyu.model.config import ModelConfig
from puyu.model.init import random_model

IDS = torch.randint(3, 512, (2, 10), generator=torch.Generator().manual_seed(0))


def _model(preset: str = "llama-tiny") -> torch.nn.Module:
    return random_model(ModelConfig.from_name(preset), seed=0)


@pytest.mark.parametrize("preset", ["llama-tiny", "qwen2-tiny", "internlm2-tiny"])
def test_fresh_adapter_gives_exactly_the_base_logits(preset: str) -> None:
    model = _model(preset)
    with torch.no_grad():
        base = model(IDS)
    apply_lora(model, LoraConfig(r=4, alpha=8.0, dropout=0.1))
    with torch.no_grad():
        assert torch.equal(model(IDS), base)  # eval mode: no dropout, B = 0


def test_lora_disabled_gives_base_logits_after_training_changes_b() -> None:
    model = _model()
    with torch.no_grad():
        base = model(IDS)
    apply_lora(model, LoraConfig(r=2))
    with torch.no_grad():
        for param in lora_parameters(model):
            param.normal_(0, 0.2)
        adapted = model(IDS)
        with lora_disabled(model):
            disabled = model(IDS)
        again = model(IDS)
    assert (adapted - base).abs().max() > 1e-2
    assert torch.equal(disabled, base)
    assert torch.equal(again, adapted)


def test_apply_lora_wraps_targets_and_freezes_the_base() -> None:
    model = _model()
    apply_lora(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    names = [name for name, _ in lora_modules(model)]
    assert names == [
        f"model.layers.{i}.{m}" for i in range(2) for m in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")
    ]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in lora_parameters(model)}
    assert len(trainable) == 2 * len(names)
    assert isinstance(model.model.layers[0].self_attn.k_proj, torch.nn.Linear)


def test_initialisation_and_scaling_match_peft() -> None:
    layer = LoRALinear(torch.nn.Linear(40, 24), r=4, alpha=6.0, generator=torch.Generator().manual_seed(1))
    bound = 1 / math.sqrt(40)  # kaiming_uniform_(a=sqrt(5)) on [r, in]: U(-1/sqrt(in), 1/sqrt(in))
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.abs().max() > 0.8 * bound
    assert torch.count_nonzero(layer.lora_B) == 0
    assert layer.scaling == 1.5
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 5, 40)
    expected = layer.base_layer(x) + F.linear(F.linear(x, layer.lora_A), layer.lora_B) * 1.5
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert torch.allclose(layer.delta_weight(), layer.lora_B @ layer.lora_A * 1.5)


def test_gradients_match_the_plain_formula() -> None:
    layer = LoRALinear(torch.nn.Linear(16, 12), r=3, alpha=3.0, generator=torch.Generator().manual_seed(0))
    layer.base_layer.requires_grad_(False)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(2, 7, 16, requires_grad=True)
    layer(x).square().sum().backward()
    ours = (x.grad.clone(), layer.lora_A.grad.clone(), layer.lora_B.grad.clone())
    a = layer.lora_A.detach().clone().requires_grad_(True)
    b = layer.lora_B.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    (layer.base_layer(x2) + (x2 @ a.t()) @ b.t()).square().sum().backward()
    for got, want in zip(ours, (x2.grad, a.grad, b.grad), strict=True):
        assert torch.allclose(got, want, atol=1e-4)


def test_dropout_applies_in_training_only() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(torch.nn.Linear(32, 8), r=4, alpha=4.0, dropout=0.5)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 32)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    assert not torch.equal(layer(x), layer(x))


def test_same_seed_same_adapter() -> None:
    first, second = _model(), _model()
    apply_lora(first, LoraConfig(), seed=7)
    apply_lora(second, LoraConfig(), seed=7)
    assert all(torch.equal(a, b) for a, b in zip(lora_parameters(first), lora_parameters(second), strict=True))


def test_config_checks_and_internlm2_names() -> None:
    assert LoraConfig(target_modules=["wqkv", "w2"]).target_modules == ["q_proj", "k_proj", "v_proj", "down_proj"]
    assert LoraConfig(target_modules=["all-linear"]).target_modules == LoraConfig().target_modules
    with pytest.raises(PuyuError, match="unknown module 'lm_head'"):
        LoraConfig(target_modules=["lm_head"])
    with pytest.raises(PuyuError, match="r must be positive"):
        LoraConfig(r=0)
    with pytest.raises(PuyuError, match="dropout"):
        LoraConfig(dropout=1.0)
    model = _model()
    apply_lora(model, LoraConfig(r=2))
    with pytest.raises(PuyuError, match="already has a LoRA adapter"):
        apply_lora(model, LoraConfig(r=2))


def test_training_moves_only_the_adapter() -> None:
    model = _model("qwen2-tiny")
    frozen = {name: p.detach().clone() for name, p in model.named_parameters()}
    apply_lora(model, LoraConfig(r=4, alpha=8.0))
    model.train()
    optimizer = torch.optim.AdamW(lora_parameters(model), lr=1e-2)
    losses = []
    for _ in range(5):
        logits = model(IDS[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), IDS[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for name, p in model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, frozen[name.replace(".base_layer", "")])


def test_adapter_stays_float32_over_a_bf16_base() -> None:
    base = torch.nn.Linear(16, 8).to(torch.bfloat16)
    layer = LoRALinear(base, r=2, alpha=2.0)
    assert layer.lora_A.dtype == torch.float32 and layer.lora_B.dtype == torch.float32
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 16, dtype=torch.bfloat16)
    out = layer(x)
    assert out.dtype == torch.bfloat16
    expected = base(x).float() + (x.float() @ layer.lora_A.t()) @ layer.lora_B.t()
    assert torch.allclose(out.float(), expected, atol=0.1)
