"""Weight-only int8 / int4 quantization: quantizers, packing, and the `Int8Linear` / `Int4Linear` modules.

int8: symmetric, one scale per output channel: w ≈ q · s, q ∈ [-127, 127], s = max|w_row| / 127.
int4: asymmetric per group of `group_size` inputs (AWQ's scheme): w ≈ (q - z) · s, q, z ∈ [0, 15],
s = (max - min) / 15 rounded to fp16 (the on-disk precision), z = round(-min / s).

In memory the modules hold the layout the C++ kernels read (see kernels/weight_only.cpp); on CPU,
inputs of up to 64 token rows (decoding, short prompts) run those kernels 8 rows at a time; longer
inputs (prefill) dequantize tile by tile and use F.linear. Elsewhere (CUDA), int8 uses torch's
`_weight_int8pack_mm` and int4 dequantizes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from puyu.errors import PuyuError
from puyu.quant.kernels import load_kernels

# Token rows per kernel call, and the input length up to which running the kernels in chunks of that many
# rows beats dequantizing the whole weight to fp32 first (each chunk re-reads the packed weight).
KERNEL_MAX_ROWS = 8
KERNEL_CHUNKED_ROWS = 64
# Output channels dequantized at once on the long-input path (bounds the fp32 temporary).
DEQUANT_TILE_ROWS = 2048
INT4_BLOCK = 32  # values per 16-byte nibble block of the kernel layout


# ---- int8 ---------------------------------------------------------------------------------------


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: (q int8 [N, K], scales fp32 [N]) with weight ≈ q · scales[:, None]."""
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-10)
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scales


def dequantize_int8(q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return q.float() * scales[:, None]


# ---- int4 ---------------------------------------------------------------------------------------


def quantize_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric group-wise int4 as AWQ computes it.

    Returns:
        q uint8 [N, K] (values 0..15), zeros uint8 [N, G] (0..15), scales fp32 [N, G] holding fp16 values;
        weight ≈ (q - zeros) · scales per group of `group_size` columns.
    """
    n, k = weight.shape
    check_int4_shape(k, group_size)
    w = weight.detach().float().reshape(n, k // group_size, group_size)
    w_max, w_min = w.amax(dim=-1), w.amin(dim=-1)
    scales = ((w_max - w_min).clamp(min=1e-5) / 15.0).half().float()
    zeros = torch.round(-w_min / scales).clamp(0, 15)
    q = (torch.round(w / scales[..., None]) + zeros[..., None]).clamp(0, 15)
    return q.reshape(n, k).to(torch.uint8), zeros.to(torch.uint8), scales


def dequantize_int4(q: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(q - zeros) · scales per group → fp32 [N, K] (q unpacked uint8 [N, K])."""
    n, k = q.shape
    groups = scales.shape[1]
    w = (q.reshape(n, groups, k // groups).float() - zeros.float()[..., None]) * scales[..., None]
    return w.reshape(n, k)


def padded_width(in_features: int, group_size: int) -> int:
    """The input width rounded up to whole groups: a layer whose width `group_size` does not divide (a 688-wide
    down projection with groups of 128) is stored with its last group padded."""
    return -(-in_features // group_size) * group_size


def pad_columns(weight: torch.Tensor, width: int) -> torch.Tensor:
    """`weight` [N, K] widened to `width` columns by repeating its last column: the padding multiplies zero
    inputs, and repeating a value already in the last group leaves that group's min/max (its scale) unchanged."""
    extra = width - weight.shape[1]
    return weight if extra == 0 else torch.cat([weight, weight[:, -1:].expand(-1, extra)], dim=1)


def int4_round_trip(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """dequantize(quantize(weight)) at any input width (padded to whole groups and cut back)."""
    k = weight.shape[1]
    padded = pad_columns(weight.detach().float(), padded_width(k, group_size))
    return dequantize_int4(*quantize_int4(padded, group_size))[:, :k]


def check_int4_shape(in_features: int, group_size: int) -> None:
    if group_size <= 0 or group_size % INT4_BLOCK:
        raise PuyuError(f"int4 group size must be a positive multiple of {INT4_BLOCK}, got {group_size}")
    if in_features % group_size:
        raise PuyuError(
            f"int4 needs input widths divisible by the group size: {in_features} is not a multiple of {group_size}"
            " (choose another --group-size)"
        )


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """uint8 [N, K] values 0..15 → kernel layout uint8 [N, K/2]: per 32 values, byte j = v[j] | v[j + 16] << 4."""
    n, k = q.shape
    blocks = q.reshape(n, k // INT4_BLOCK, 2, INT4_BLOCK // 2)
    return (blocks[:, :, 0] | (blocks[:, :, 1] << 4)).reshape(n, k // 2).contiguous()


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_int4`."""
    n, half = packed.shape
    blocks = packed.reshape(n, half // (INT4_BLOCK // 2), 1, INT4_BLOCK // 2)
    return torch.cat([blocks & 0x0F, blocks >> 4], dim=2).reshape(n, half * 2)


# AutoAWQ "GEMM" layout: 8 output channels per int32, nibble i holding channel AWQ_ORDER[i] of the eight.
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def awq_pack(values: torch.Tensor) -> torch.Tensor:
    """[R, C] values 0..15 (C output channels, a multiple of 8) → int32 [R, C/8] in AWQ's nibble order."""
    rows, cols = values.shape
    grouped = values.to(torch.int32).reshape(rows, cols // 8, 8)[:, :, list(AWQ_ORDER)]
    shifts = torch.arange(0, 32, 4, dtype=torch.int32)
    return (grouped << shifts).sum(dim=-1, dtype=torch.int32)  # disjoint bits: the sum is an OR


def awq_unpack(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `awq_pack`: int32 [R, C/8] → uint8 [R, C]."""
    rows, cols8 = packed.shape
    shifts = torch.arange(0, 32, 4, dtype=torch.int32)
    nibbles = (packed.to(torch.int32)[..., None] >> shifts) & 0x0F  # [R, C/8, 8] in AWQ order
    inverse = [AWQ_ORDER.index(c) for c in range(8)]
    return nibbles[:, :, inverse].reshape(rows, cols8 * 8).to(torch.uint8)


# ---- modules ------------------------------------------------------------------------------------


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


def _use_kernel(x2: torch.Tensor) -> bool:
    return x2.device.type == "cpu" and 0 < x2.shape[0] <= KERNEL_CHUNKED_ROWS


def _chunked(kernel: Callable[[torch.Tensor], torch.Tensor], x2: torch.Tensor) -> torch.Tensor:
    """The kernel over blocks of at most KERNEL_MAX_ROWS token rows."""
    x2 = x2.contiguous()
    if x2.shape[0] <= KERNEL_MAX_ROWS:
        return kernel(x2)
    return torch.cat([kernel(x2[i : i + KERNEL_MAX_ROWS]) for i in range(0, x2.shape[0], KERNEL_MAX_ROWS)])


class QuantLinear(nn.Module):
    """Base of the weight-only linear layers: frozen quantized weight, optional float bias."""

    bits: int

    def __init__(self, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    def dequantize(self) -> torch.Tensor:
        """The fp32 weight [out, in] these quantized values stand for."""
        return self._dequantize_rows(0, self.out_features)

    def _dequantize_rows(self, start: int, stop: int) -> torch.Tensor:
        """Output channels [start, stop) of `dequantize()`."""
        raise NotImplementedError

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain torch: dequantize, then F.linear (the definition the kernels are tested against)."""
        y = F.linear(x.float(), self.dequantize())
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype)

    def _tiled_linear(self, x2: torch.Tensor) -> torch.Tensor:
        """Long inputs: dequantize a tile of output channels at a time into fp32 and multiply."""
        if self.out_features <= DEQUANT_TILE_ROWS:
            return F.linear(x2, self.dequantize())
        parts = [
            F.linear(x2, self._dequantize_rows(start, min(start + DEQUANT_TILE_ROWS, self.out_features)))
            for start in range(0, self.out_features, DEQUANT_TILE_ROWS)
        ]
        return torch.cat(parts, dim=-1)

    def _matmul(self, x2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = _flatten(x).float()
        y = self._matmul(x2)
        if self.bias is not None:
            y = y + self.bias.float()
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def weight_bytes(self) -> int:
        """Bytes of quantized weights, scales and zeros (what a decode step streams)."""
        return sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}"


class Int8Linear(QuantLinear):
    """Weight-only int8 linear layer: per-output-channel symmetric scales.

    Buffers: `qweight` int8 [out, in], `scales` fp32 [out].
    """

    bits = 8

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__(in_features, out_features, bias)
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        q, scales = quantize_int8(linear.weight)
        module.set_quantized(q, scales, linear.bias)
        return module

    def set_quantized(self, q: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Install quantized values (shapes as the buffers)."""
        if tuple(q.shape) != (self.out_features, self.in_features) or scales.numel() != self.out_features:
            raise PuyuError(
                f"int8 weight of shape {tuple(q.shape)} / scales {tuple(scales.shape)} do not fit a "
                f"{self.in_features}→{self.out_features} layer"
            )
        self.qweight = q.to(torch.int8).contiguous()
        self.scales = scales.float().reshape(-1).contiguous()
        if bias is not None and self.bias is not None:
            self.bias = nn.Parameter(bias.detach().float().clone(), requires_grad=False)

    def _dequantize_rows(self, start: int, stop: int) -> torch.Tensor:
        return dequantize_int8(self.qweight[start:stop], self.scales[start:stop].float())

    def _matmul(self, x2: torch.Tensor) -> torch.Tensor:
        if _use_kernel(x2):
            kernels = load_kernels()
            if kernels is not None:
                scales = self.scales.float()
                return _chunked(lambda rows: kernels.int8_matmul(rows, self.qweight, scales), x2)
        elif x2.device.type == "cuda":
            try:
                return torch._weight_int8pack_mm(x2, self.qweight, self.scales.float())
            except (AttributeError, NotImplementedError, RuntimeError):
                pass  # builds without the CUDA kernel: dequantize instead
        return self._tiled_linear(x2)


class Int4Linear(QuantLinear):
    """Weight-only int4 linear layer: asymmetric scales and zero points per group of `group_size` inputs.

    Buffers: `qweight` uint8 [out, in/2] (kernel nibble layout), `scales` fp32 [out, in/group],
    `zeros` uint8 [out, in/group]; `szeros` = scales · zeros is derived (not saved).
    """

    bits = 4

    def __init__(self, in_features: int, out_features: int, bias: bool = False, group_size: int = 128) -> None:
        super().__init__(in_features, out_features, bias)
        check_int4_shape(group_size, group_size)
        self.group_size = group_size
        # Inputs padded to whole groups; the padding's weights meet zero inputs.
        self.padded_in = padded_width(in_features, group_size)
        groups = self.padded_in // group_size
        self.register_buffer("qweight", torch.zeros(out_features, self.padded_in // 2, dtype=torch.uint8))
        self.register_buffer("scales", torch.ones(out_features, groups))
        self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=torch.uint8))
        self.register_buffer("szeros", torch.zeros(out_features, groups), persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 128) -> Int4Linear:
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, group_size=group_size)
        q, zeros, scales = quantize_int4(pad_columns(linear.weight.detach(), module.padded_in), group_size)
        module.set_quantized(q, zeros, scales, linear.bias)
        return module

    def set_quantized(
        self, q: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None
    ) -> None:
        """Install unpacked values: q uint8 [out, padded in], zeros uint8 [out, G], scales [out, G]."""
        groups = self.padded_in // self.group_size
        if (
            tuple(q.shape) != (self.out_features, self.padded_in)
            or tuple(zeros.shape) != (self.out_features, groups)
            or tuple(scales.shape) != (self.out_features, groups)
        ):
            raise PuyuError(
                f"int4 weight {tuple(q.shape)}, zeros {tuple(zeros.shape)}, scales {tuple(scales.shape)} do not fit "
                f"a {self.in_features}→{self.out_features} layer with group size {self.group_size} "
                f"(inputs padded to {self.padded_in})"
            )
        self.qweight = pack_int4(q.to(torch.uint8))
        self.scales = scales.float().contiguous()
        self.zeros = zeros.to(torch.uint8).contiguous()
        self.szeros = (self.scales * self.zeros.float()).contiguous()
        if bias is not None and self.bias is not None:
            self.bias = nn.Parameter(bias.detach().float().clone(), requires_grad=False)

    def unpacked(self) -> torch.Tensor:
        """The int4 values as uint8 [out, padded in]."""
        return unpack_int4(self.qweight)

    def _dequantize_rows(self, start: int, stop: int) -> torch.Tensor:
        q = unpack_int4(self.qweight[start:stop])
        return dequantize_int4(q, self.zeros[start:stop], self.scales[start:stop].float())[:, : self.in_features]

    def _matmul(self, x2: torch.Tensor) -> torch.Tensor:
        if _use_kernel(x2):
            if self.padded_in != self.in_features:
                x2 = F.pad(x2, (0, self.padded_in - self.in_features))
            kernels = load_kernels()
            if kernels is not None:
                scales, szeros = self.scales.float(), self.szeros.float()
                return _chunked(
                    lambda rows: kernels.int4_matmul(rows, self.qweight, scales, szeros, self.group_size), x2
                )
        return self._tiled_linear(x2)

    def weight_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for n, b in self.named_buffers(recurse=False) if n != "zeros")

    def extra_repr(self) -> str:
        padded = f", padded_in={self.padded_in}" if self.padded_in != self.in_features else ""
        return super().extra_repr() + f", group_size={self.group_size}{padded}"
