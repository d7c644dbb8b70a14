"""NF4: code values, packing, error bounds, double quantization, NF4Linear and QLoRA gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from puyu.finetune.lora import LoraConfig, apply_lora, lora_parameters
from puyu.model.config import ModelConfig
from puyu.model.init import random_model
from puyu.quant import nf4
from puyu.quant.nf4 import (
    NF4_CODE,
    NF4Linear,
    dequantize_absmax,
    dequantize_nf4,
    dequantize_nf4_torch,
    pack_nibbles,
    quantize_absmax,
    quantize_model_nf4,
    quantize_nf4,
    unpack_nibbles,
)

HALF_LARGEST_GAP = max(b - a for a, b in itertools.pairwise(NF4_CODE)) / 2


def test_code_table_is_bitsandbytes_nf4() -> None:
    assert len(NF4_CODE) == 16 and NF4_CODE[0] == -1.0 and NF4_CODE[7] == 0.0 and NF4_CODE[15] == 1.0
    assert list(NF4_CODE) == sorted(NF4_CODE)
    assert NF4_CODE[8] == pytest.approx(0.07958029955625534) and NF4_CODE[1] == pytest.approx(-0.6961928009986877)


def test_packing_layout() -> None:
    codes = torch.tensor([1, 2, 3, 4, 15, 0], dtype=torch.uint8)
    packed = pack_nibbles(codes)
    assert packed.tolist() == [0x12, 0x34, 0xF0]  # first code of a pair in the high nibble
    assert torch.equal(unpack_nibbles(packed), codes)


def test_code_values_round_trip_exactly() -> None:
    scale = 0.25  # a power of two: code × scale is exact in fp32
    values = torch.tensor(NF4_CODE * 8) * scale  # 128 values = 2 blocks, each holding ±1 × scale
    packed, absmax = quantize_nf4(values, block_size=64)
    assert torch.equal(absmax, torch.full((2,), scale))
    assert torch.equal(unpack_nibbles(packed)[:16], torch.arange(16, dtype=torch.uint8))
    assert torch.equal(dequantize_nf4_torch(packed, absmax, 128), values)
    assert torch.equal(dequantize_nf4(packed, absmax, 128), values)


@pytest.mark.parametrize("shape", [(96, 64), (33, 7)], ids=["whole-blocks", "padded"])
def test_error_within_format_bound(shape: tuple[int, int]) -> None:
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.05
    weight[0, 0] = 3.0  # an outlier: only its own block loses precision
    packed, absmax = quantize_nf4(weight, block_size=64)
    restored = dequantize_nf4_torch(packed, absmax, weight.numel()).view(shape)
    flat = F.pad(weight.reshape(-1), (0, -weight.numel() % 64)).view(-1, 64)
    assert torch.equal(absmax, flat.abs().amax(dim=1))
    bound = (HALF_LARGEST_GAP * absmax).repeat_interleave(64)[: weight.numel()].view(shape)
    error = (restored - weight).abs()
    assert (error <= bound * (1 + 1e-6)).all()
    # Each value is the *nearest* code: no other code times the absmax is closer.
    per_block = absmax.repeat_interleave(64)[: weight.numel()]
    candidates = torch.tensor(NF4_CODE).unsqueeze(0) * per_block.unsqueeze(1)
    best = (candidates - weight.reshape(-1, 1)).abs().min(dim=1).values
    assert torch.allclose(error.reshape(-1), best, atol=1e-7)


def test_double_quantization_error_bound() -> None:
    absmax = torch.rand(700, generator=torch.Generator().manual_seed(1)) * 0.1 + 0.01
    codes, scales, offset = quantize_absmax(absmax)
    assert codes.dtype == torch.int8 and scales.shape == (3,) and offset.item() == pytest.approx(absmax.mean().item())
    restored = dequantize_absmax(codes, scales, offset)
    per_value_scale = scales.repeat_interleave(256)[:700]
    assert ((restored - absmax).abs() <= per_value_scale / 2 * (1 + 1e-5) + 1e-9).all()


def test_nf4_linear_error_bound_with_double_quantization() -> None:
    linear = torch.nn.Linear(128, 48, bias=False)
    layer = NF4Linear.from_linear(linear, double_quant=True)
    absmax = linear.weight.detach().reshape(-1, 64).abs().amax(dim=1)
    _, scales, _ = quantize_absmax(absmax)
    dq_error = scales.repeat_interleave(256)[: absmax.numel()] / 2
    bound = (HALF_LARGEST_GAP * absmax + dq_error).repeat_interleave(64).view(48, 128)
    assert ((layer.dequantize() - linear.weight).abs() <= bound * (1 + 1e-5)).all()
    assert layer.absmax_codes.dtype == torch.int8 and not hasattr(layer, "absmax")


@pytest.mark.parametrize("bias", [False, True])
def test_nf4_linear_forward_is_linear_on_the_dequantized_weight(bias: bool) -> None:
    linear = torch.nn.Linear(64, 40, bias=bias)
    layer = NF4Linear.from_linear(linear, double_quant=False)
    x = torch.randn(3, 5, 64)
    assert torch.allclose(layer(x), F.linear(x, layer.dequantize(), linear.bias), atol=1e-6)
    floats = [t for t in (*layer.buffers(), *layer.parameters()) if t.is_floating_point()]
    assert all(t.numel() < 64 * 40 for t in floats)  # no full-precision matrix is stored


def test_backward_keeps_no_dequantized_weight_and_matches_linear() -> None:
    layer = NF4Linear.from_linear(torch.nn.Linear(64, 96, bias=False))
    x = torch.randn(4, 64, requires_grad=True)
    saved: list[tuple[int, ...]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(x)
    assert (96, 64) not in saved
    grad = torch.randn_like(y)
    y.backward(grad)
    assert torch.allclose(x.grad, grad @ layer.dequantize(), atol=1e-6)


def test_qlora_gradients_reach_lora_only() -> None:
    model = random_model(ModelConfig.from_name("qwen2-tiny"), seed=0)
    ids = torch.randint(3, 512, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids)
    quantize_model_nf4(model, double_quant=True)
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.q_proj, NF4Linear) and isinstance(model.lm_head, torch.nn.Linear)
    assert layer.self_attn.q_proj.bias is not None  # Qwen2's qkv bias survives
    with torch.no_grad():
        quantized = model(ids)
    assert (quantized - full).abs().max() < 0.1 * full.abs().max()

    apply_lora(model, LoraConfig(r=4, alpha=8.0))
    with torch.no_grad():
        assert torch.equal(model(ids), quantized)
        for p in lora_parameters(model):
            p.normal_(0, 0.1)
    model.train()
    model(ids).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_parameters(model))
    assert all(p.grad is None for name, p in model.named_parameters() if "lora_" not in name)
    assert [p for p in model.parameters() if p.requires_grad] == lora_parameters(model)


def test_own_kernel_matches_bitsandbytes() -> None:
    functional = pytest.importorskip("bitsandbytes.functional")
    weight = torch.randn(80, 128, generator=torch.Generator().manual_seed(2))
    packed, absmax = quantize_nf4(weight, block_size=64)
    theirs, state = functional.quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=False)
    assert torch.equal(packed, theirs.view(-1)) and torch.equal(absmax, state.absmax)
    ours = dequantize_nf4_torch(packed, absmax, weight.numel())
    assert torch.equal(ours, functional.dequantize_4bit(theirs, state).view(-1))
    # Rows that are not a whole number of blocks: puyu hands bitsandbytes' kernel the flat tensor.
    odd = torch.randn(80, 96, generator=torch.Generator().manual_seed(3))
    packed, absmax = quantize_nf4(odd, block_size=64)
    assert torch.equal(dequantize_nf4(packed, absmax, odd.numel()), dequantize_nf4_torch(packed, absmax, odd.numel()))


def test_kernel_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUYU_NF4_KERNEL", "torch")
    nf4.bitsandbytes_kernel.cache_clear()
    try:
        assert nf4.nf4_kernel_name() == "torch"
    finally:
        monkeypatch.delenv("PUYU_NF4_KERNEL")
        nf4.bitsandbytes_kernel.cache_clear()


def test_merging_an_adapter_over_nf4_gives_plain_linear_layers() -> None:
    from puyu.finetune.lora import merge_lora

    model = quantize_model_nf4(random_model(ModelConfig.from_name("llama-tiny"), seed=1))
    apply_lora(model, LoraConfig(r=2))
    ids = torch.randint(3, 512, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in lora_parameters(model):
            p.normal_(0, 0.1)
        adapted = model(ids)
        merge_lora(model)
        assert type(model.model.layers[0].mlp.up_proj) is torch.nn.Linear
        assert (model(ids) - adapted).abs().max() <= 1e-5
