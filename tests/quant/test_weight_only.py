"""Weight-only int8/int4: quantizers, packings (puyu's kernel layout and AutoAWQ's), modules and C++ kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from puyu.errors import PuyuError
from puyu.quant import weight_only
from puyu.quant.kernels import load_kernels
from puyu.quant.weight_only import (
    AWQ_ORDER,
    Int4Linear,
    Int8Linear,
    awq_pack,
    awq_unpack,
    dequantize_int4,
    dequantize_int8,
    pack_int4,
    quantize_int4,
    quantize_int8,
    unpack_int4,
)


def _linear(n: int, k: int, bias: bool = False, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        layer.weight.normal_(0, 0.05)
        if bias:
            layer.bias.normal_(0, 0.1)
    return layer


# ---- packing --------------------------------------------------------------------------------------


def test_int4_kernel_packing_round_trips_and_puts_value_j_plus_16_in_the_high_nibble():
    q = torch.randint(0, 16, (5, 96), dtype=torch.uint8)
    packed = pack_int4(q)
    assert packed.shape == (5, 48) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int4(packed), q)
    assert int(packed[2, 16 + 3]) == int(q[2, 32 + 3]) | (int(q[2, 32 + 16 + 3]) << 4)


def test_awq_packing_matches_autoawq_loop_and_round_trips():
    torch.manual_seed(0)
    values = torch.randint(0, 16, (6, 24), dtype=torch.int32)
    # AutoAWQ's WQLinear_GEMM.from_linear packing, written out as its loop over 8-channel packs.
    expected = torch.zeros(6, 3, dtype=torch.int32)
    for col in range(3):
        for i, channel in enumerate([0, 2, 4, 6, 1, 3, 5, 7]):
            expected[:, col] |= values[:, col * 8 + channel] << (i * 4)
    assert AWQ_ORDER == (0, 2, 4, 6, 1, 3, 5, 7)
    assert torch.equal(awq_pack(values), expected)
    assert torch.equal(awq_unpack(expected), values.to(torch.uint8))


def test_awq_pack_handles_the_sign_bit():
    values = torch.full((1, 8), 15, dtype=torch.int32)
    packed = awq_pack(values)
    assert int(packed) == -1  # 0xFFFFFFFF as int32
    assert torch.equal(awq_unpack(packed), values.to(torch.uint8))


# ---- quantizers -----------------------------------------------------------------------------------


def test_int8_error_is_at_most_half_a_step():
    w = torch.randn(33, 70)
    q, scales = quantize_int8(w)
    assert q.dtype == torch.int8 and int(q.abs().max()) <= 127
    err = (dequantize_int8(q, scales) - w).abs()
    assert torch.all(err <= scales[:, None] * 0.5 + 1e-7)
    assert torch.equal(q.abs().amax(dim=1), torch.full((33,), 127, dtype=torch.int8))


def test_int4_error_is_at_most_half_a_step_and_scales_are_fp16_values():
    w = torch.randn(17, 128) * 0.1
    q, zeros, scales = quantize_int4(w, 32)
    assert q.shape == (17, 128) and zeros.shape == scales.shape == (17, 4)
    assert int(q.max()) <= 15 and int(zeros.max()) <= 15
    assert torch.equal(scales.half().float(), scales)
    err = (dequantize_int4(q, zeros, scales) - w).abs().reshape(17, 4, 32)
    # Half a step, plus the fp16 rounding of the scale stretched over 15 steps (< 1 % of a step).
    assert torch.all(err <= scales[..., None] * 0.51)


def test_int4_rejects_bad_group_sizes():
    with pytest.raises(PuyuError, match="multiple of 32"):
        quantize_int4(torch.randn(4, 64), 48)
    with pytest.raises(PuyuError, match="not a multiple of 128"):
        quantize_int4(torch.randn(4, 96), 128)


# ---- modules against fp32 -------------------------------------------------------------------------


def _bound(x: torch.Tensor, half_step: torch.Tensor) -> torch.Tensor:
    """|y_q - y| ≤ Σ_k |x_k| · max|w_q - w|_{n,k} (+ fp32 round-off)."""
    return x.abs() @ half_step.t() + 1e-5


@pytest.mark.parametrize("bias", [False, True])
def test_int8_linear_output_within_the_quantization_bound(bias: bool):
    layer = _linear(40, 96, bias)
    module = Int8Linear.from_linear(layer)
    x = torch.randn(5, 96)
    half_step = (module.scales[:, None] * 0.5).expand(40, 96)
    assert torch.all((module(x) - layer(x)).abs() <= _bound(x, half_step))


@pytest.mark.parametrize("bias", [False, True])
def test_int4_linear_output_within_the_quantization_bound(bias: bool):
    layer = _linear(40, 128, bias)
    module = Int4Linear.from_linear(layer, group_size=32)
    x = torch.randn(5, 128)
    half_step = (module.scales * 0.51).repeat_interleave(32, dim=1)
    assert torch.all((module(x) - layer(x)).abs() <= _bound(x, half_step))


def test_modules_keep_leading_dims_and_dtype():
    layer = _linear(24, 64)
    for module in (Int8Linear.from_linear(layer), Int4Linear.from_linear(layer, group_size=32)):
        x = torch.randn(2, 3, 64)
        y = module(x)
        assert y.shape == (2, 3, 24) and y.dtype == torch.float32
        torch.testing.assert_close(y, module.reference_forward(x), rtol=1e-5, atol=1e-5)


def test_long_inputs_use_tiled_dequantization(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(weight_only, "DEQUANT_TILE_ROWS", 7)
    layer = _linear(30, 64, bias=True)
    for module in (Int8Linear.from_linear(layer), Int4Linear.from_linear(layer, group_size=32)):
        x = torch.randn(70, 64)  # more rows than the chunked kernels take
        torch.testing.assert_close(module(x), module.reference_forward(x), rtol=1e-5, atol=1e-6)


def test_inputs_of_up_to_64_rows_run_the_kernels_in_chunks_of_8(kernels):
    layer = _linear(30, 64, bias=True)
    for module in (Int8Linear.from_linear(layer), Int4Linear.from_linear(layer, group_size=32)):
        x = torch.randn(19, 64)
        torch.testing.assert_close(module(x), module.reference_forward(x), rtol=1e-5, atol=1e-5)


def test_plain_torch_fallback_without_kernels(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(weight_only, "load_kernels", lambda: None)
    layer = _linear(16, 64)
    module = Int4Linear.from_linear(layer, group_size=32)
    x = torch.randn(1, 64)
    torch.testing.assert_close(module(x), F.linear(x, module.dequantize()), rtol=1e-6, atol=1e-6)


# ---- C++ kernels ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernels():
    module = load_kernels()
    if module is None:
        pytest.skip("the quantized matmul extension could not be built here")
    yield module
    module.set_isa("auto")


def _isas(kernels) -> list[str]:
    best = kernels.set_isa("auto")
    return {"avx512": ["avx512", "avx2", "scalar"], "avx2": ["avx2", "scalar"]}.get(best, ["scalar"])


SHAPES = [(1, 37, 96), (3, 64, 256), (8, 130, 512), (5, 11, 64), (2, 259, 160)]


@pytest.mark.parametrize(("m", "n", "k"), SHAPES)
def test_int8_kernel_matches_the_reference(kernels, m: int, n: int, k: int):
    module = Int8Linear.from_linear(_linear(n, k))
    x = torch.randn(m, k)
    reference = F.linear(x, module.dequantize())
    for isa in _isas(kernels):
        kernels.set_isa(isa)
        out = kernels.int8_matmul(x, module.qweight, module.scales)
        torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5 * reference.abs().max().item())
    kernels.set_isa("auto")


@pytest.mark.parametrize(("m", "n", "k"), SHAPES)
def test_int4_kernel_matches_the_reference(kernels, m: int, n: int, k: int):
    module = Int4Linear.from_linear(_linear(n, k), group_size=32)
    x = torch.randn(m, k)
    reference = F.linear(x, module.dequantize())
    for isa in _isas(kernels):
        kernels.set_isa(isa)
        out = kernels.int4_matmul(x, module.qweight, module.scales, module.szeros, 32)
        torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5 * reference.abs().max().item())
    kernels.set_isa("auto")


def test_int4_kernel_with_group_128(kernels):
    module = Int4Linear.from_linear(_linear(96, 384), group_size=128)
    x = torch.randn(1, 384)
    torch.testing.assert_close(module(x), module.reference_forward(x), rtol=1e-5, atol=1e-5)


def test_kernels_reject_bad_inputs(kernels):
    module = Int8Linear.from_linear(_linear(8, 32))
    with pytest.raises(RuntimeError, match="1 to 8 rows"):
        kernels.int8_matmul(torch.randn(9, 32), module.qweight, module.scales)
    with pytest.raises(RuntimeError, match="columns"):
        kernels.int8_matmul(torch.randn(1, 16), module.qweight, module.scales)


def test_a_failed_build_warns_once_and_falls_back(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    import torch.utils.cpp_extension

    from puyu.quant import kernels as kernel_loader

    def broken(**_kwargs):
        raise RuntimeError("g++: not found")

    monkeypatch.setattr(kernel_loader, "_state", {})
    monkeypatch.setattr(torch.utils.cpp_extension, "load", broken)
    with caplog.at_level("WARNING", logger="puyu.quant.kernels"):
        assert kernel_loader.load_kernels() is None
        assert kernel_loader.load_kernels() is None
    warnings = [r for r in caplog.records if "plain-torch path" in r.getMessage()]
    assert len(warnings) == 1 and "g++: not found" in warnings[0].getMessage()


def test_kernels_can_be_switched_off(monkeypatch: pytest.MonkeyPatch):
    from puyu.quant import kernels as kernel_loader

    monkeypatch.setattr(kernel_loader, "_state", {})
    monkeypatch.setenv("PUYU_QUANT_KERNELS", "0")
    assert kernel_loader.load_kernels() is None
