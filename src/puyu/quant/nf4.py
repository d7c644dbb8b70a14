"""NF4 weights for QLoRA (Dettmers et al., 2023): 4-bit NormalFloat codes, blockwise absmax, double quantization.

A weight matrix is flattened and cut into blocks of `block_size` (64) values. Each block is divided by its
absolute maximum and every value is rounded to the nearest of the 16 NF4 code values (quantiles of a normal
distribution, exactly bitsandbytes' table), two 4-bit codes per byte, the first in the high nibble, as
bitsandbytes packs them. With double quantization the per-block absmax values (one fp32 per 64 weights,
0.5 bit per weight) are themselves quantized: their mean is subtracted and the rest is stored as 8-bit
integers in blocks of 256 with one fp32 scale per block (bitsandbytes uses its dynamic 8-bit map there;
puyu uses a linear map, whose error bound is simply half a step), leaving ~0.127 bit per weight.

`NF4Linear` keeps only the packed weight. Its forward dequantizes to the compute dtype and calls
`F.linear`; its backward dequantizes again rather than keeping the full-precision matrix alive between
forward and backward, so a model's worth of fp32 weights never exists at once.

Dequantization has two kernels with bit-identical results: puyu's own (a byte → two-values table lookup and
one multiply, in plain torch) and, where the optional `bitsandbytes` package is installed, its native CPU/CUDA
`dequantize_4bit`, which measured 4-6x faster on a 4864 x 896 matrix (1.0 vs 3.9 ms, 2 cores, and
0.5 vs 3.3 ms on a quiet machine; benchmarks/finetune.py) and is used when importable. The packed layout
is bitsandbytes' own, so its kernel reads puyu's buffers as they are; puyu hands it the flat tensor, since its
CPU kernel misreads blocks that straddle rows (in_features not a multiple of the block size).
`PUYU_NF4_KERNEL=torch` forces puyu's kernel.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from puyu.errors import PuyuError

# bitsandbytes' NF4 code values (ascending): code i is what 4-bit value i stands for, times the block absmax.
NF4_CODE = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)  # fmt: skip
ABSMAX_BLOCK = 256  # absmax values per second-level block (double quantization)
QUANTIZED_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

_CODE = torch.tensor(NF4_CODE, dtype=torch.float32)
_MIDPOINTS = (_CODE[1:] + _CODE[:-1]) / 2
# Both values a packed byte stands for, in order: one table lookup decodes two weights.
_PAIRS = torch.stack([_CODE.repeat_interleave(16), _CODE.repeat(16)], dim=1)


def nf4_code(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 16 NF4 values as a tensor."""
    return _CODE.to(dtype)


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes 0..15 (even count) → bytes, the first code of each pair in the high nibble."""
    codes = codes.to(torch.uint8)
    return (codes[0::2] << 4) | codes[1::2]


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_nibbles`: bytes → uint8 codes, twice as many."""
    return torch.stack([packed >> 4, packed & 0xF], dim=-1).reshape(-1)


def quantize_nf4(weight: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise NF4 quantization of any tensor (flattened; the last block is zero-padded).

    Returns:
        (packed uint8 [ceil(n / block_size) · block_size / 2], absmax fp32 [blocks]).
    """
    if block_size <= 0 or block_size % 2:
        raise PuyuError(f"NF4 block_size must be a positive even number, got {block_size}")
    flat = weight.detach().reshape(-1).float()
    pad = -flat.numel() % block_size
    blocks = F.pad(flat, (0, pad)).view(-1, block_size)
    absmax = blocks.abs().amax(dim=1)
    # Nearest code: count the midpoints below each normalised value (ties go to the lower code, as bitsandbytes).
    scaled = (blocks / absmax.clamp(min=1e-38).unsqueeze(1)).clamp_(-1.0, 1.0)
    codes = torch.bucketize(scaled.reshape(-1), _MIDPOINTS, out_int32=True)
    return pack_nibbles(codes), absmax


@functools.cache
def bitsandbytes_kernel() -> Callable[..., torch.Tensor] | None:
    """bitsandbytes' `dequantize_4bit` op where the package is installed (and not disabled), else None."""
    if os.environ.get("PUYU_NF4_KERNEL", "auto") == "torch":
        return None
    quiet = logging.getLogger("bitsandbytes")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns about optional GEMM kernels puyu does not use
    try:
        import bitsandbytes  # noqa: F401

        return torch.ops.bitsandbytes.dequantize_4bit.default
    except Exception:  # not installed, or no backend for this platform
        return None
    finally:
        quiet.setLevel(level)


def nf4_kernel_name() -> str:
    return "bitsandbytes" if bitsandbytes_kernel() is not None else "torch"


def dequantize_nf4(
    packed: torch.Tensor, absmax: torch.Tensor, numel: int, block_size: int = 64, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Inverse of `quantize_nf4` up to rounding: the first `numel` values, flat, in `dtype`."""
    kernel = bitsandbytes_kernel()
    if kernel is not None and numel == packed.numel() * 2 and absmax.dtype == torch.float32:
        return kernel(packed, absmax, block_size, "nf4", [numel], torch.float32).reshape(-1).to(dtype)
    return dequantize_nf4_torch(packed, absmax, numel, block_size, dtype)


def dequantize_nf4_torch(
    packed: torch.Tensor, absmax: torch.Tensor, numel: int, block_size: int = 64, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """puyu's own kernel for `dequantize_nf4`."""
    pairs = _PAIRS if _PAIRS.device == packed.device else _PAIRS.to(packed.device)
    values = F.embedding(packed.int(), pairs).view(-1, block_size)
    values.mul_(absmax.unsqueeze(1))
    return values.view(-1)[:numel].to(dtype)


def quantize_absmax(absmax: torch.Tensor, block: int = ABSMAX_BLOCK) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Double quantization: absmax − mean as symmetric int8 in blocks of `block`, one fp32 scale per block.

    Returns:
        (codes int8 [n], scales fp32 [ceil(n / block)], offset fp32 scalar).
    """
    offset = absmax.mean()
    centred = absmax - offset
    pad = -centred.numel() % block
    blocks = F.pad(centred, (0, pad)).view(-1, block)
    scales = blocks.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    codes = torch.round(blocks / scales.unsqueeze(1)).clamp_(-127, 127).to(torch.int8)
    return codes.view(-1)[: absmax.numel()].clone(), scales, offset


def dequantize_absmax(
    codes: torch.Tensor, scales: torch.Tensor, offset: torch.Tensor, block: int = ABSMAX_BLOCK
) -> torch.Tensor:
    """Inverse of `quantize_absmax` up to rounding (error ≤ scale / 2 per value)."""
    n = codes.numel()
    pad = -n % block
    values = F.pad(codes.float(), (0, pad)).view(-1, block) * scales.unsqueeze(1)
    return values.view(-1)[:n] + offset


class _NF4Matmul(torch.autograd.Function):
    """y = x @ dequantize(W).T + b with a frozen W: the backward dequantizes again instead of saving W."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: NF4Linear) -> torch.Tensor:  # type: ignore[override]
        ctx.layer = layer
        return F.linear(x, layer.dequantize(x.dtype), None if layer.bias is None else layer.bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None
        return grad @ ctx.layer.dequantize(grad.dtype), None


class NF4Linear(nn.Module):
    """A frozen linear layer stored as NF4 (≈ 4.13 bits per weight with double quantization).

    Build one with `NF4Linear.from_linear`. The forward computes in `compute_dtype` (or the input's dtype).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = False,
        block_size: int = 64,
        double_quant: bool = True,
        compute_dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.block_size, self.double_quant, self.compute_dtype = block_size, double_quant, compute_dtype
        numel = in_features * out_features
        blocks = -(-numel // block_size)
        self.register_buffer("packed", torch.zeros(blocks * block_size // 2, dtype=torch.uint8, device=device))
        if double_quant:
            self.register_buffer("absmax_codes", torch.zeros(blocks, dtype=torch.int8, device=device))
            self.register_buffer("absmax_scales", torch.zeros(-(-blocks // ABSMAX_BLOCK), device=device))
            self.register_buffer("absmax_offset", torch.zeros((), device=device))
        else:
            self.register_buffer("absmax", torch.zeros(blocks, device=device))
        self.bias = (
            nn.Parameter(torch.zeros(out_features, dtype=compute_dtype, device=device), requires_grad=False)
            if bias
            else None
        )

    @classmethod
    @torch.no_grad()
    def from_linear(
        cls,
        linear: nn.Linear,
        *,
        block_size: int = 64,
        double_quant: bool = True,
        compute_dtype: torch.dtype = torch.float32,
    ) -> NF4Linear:
        """Quantize an `nn.Linear` (its weight is not modified)."""
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            block_size=block_size,
            double_quant=double_quant,
            compute_dtype=compute_dtype,
            device=linear.weight.device,
        )
        packed, absmax = quantize_nf4(linear.weight, block_size)
        layer.packed.copy_(packed)
        if double_quant:
            codes, scales, offset = quantize_absmax(absmax)
            layer.absmax_codes.copy_(codes)
            layer.absmax_scales.copy_(scales)
            layer.absmax_offset.copy_(offset)
        else:
            layer.absmax.copy_(absmax)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.to(compute_dtype))
        return layer

    def block_absmax(self) -> torch.Tensor:
        """The per-block scales as used (after double dequantization)."""
        if self.double_quant:
            return dequantize_absmax(self.absmax_codes, self.absmax_scales, self.absmax_offset)
        return self.absmax

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The weight [out, in] in `dtype` (default the compute dtype)."""
        flat = dequantize_nf4(
            self.packed,
            self.block_absmax(),
            self.in_features * self.out_features,
            self.block_size,
            dtype or self.compute_dtype,
        )
        return flat.view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point() or x.dtype != self.compute_dtype:
            x = x.to(self.compute_dtype)
        return _NF4Matmul.apply(x, self)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"block_size={self.block_size}, double_quant={self.double_quant}, compute_dtype={self.compute_dtype}"
        )


@torch.no_grad()
def quantize_model_nf4(
    model: nn.Module,
    *,
    double_quant: bool = True,
    block_size: int = 64,
    compute_dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """Replace the decoder layers' projections with frozen `NF4Linear`, in place; returns the model.

    The embeddings, norms and `lm_head` stay as they are (copied out of a memory-mapped checkpoint, so that
    the mapping is released). Each original weight is released as soon as its layer is quantized, so peak
    memory is the model plus one layer's temporaries. `apply_lora` afterwards
    wraps the NF4 layers like any linear layer.
    """
    replaced = 0
    for name, module in list(model.named_modules()):
        attr = name.rpartition(".")[2]
        if not (name.startswith("model.layers.") and attr in QUANTIZED_PROJECTIONS and isinstance(module, nn.Linear)):
            continue
        quantized = NF4Linear.from_linear(
            module, block_size=block_size, double_quant=double_quant, compute_dtype=compute_dtype
        )
        setattr(model.get_submodule(name.rpartition(".")[0]), attr, quantized)
        module.weight = None  # drop the full-precision matrix now, not when the loop ends
        replaced += 1
    if not replaced:
        raise PuyuError("quantize_model_nf4: the model has no decoder projections to quantize")
    for param in model.parameters():
        # `load_model` leaves fp32 weights as views of the memory-mapped checkpoint, and the mapping, with every
        # page quantization read through it, stays resident while any view lives: own copies release it.
        param.data = param.data.clone()
        param.requires_grad_(False)
    return model
