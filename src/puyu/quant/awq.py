"""AWQ-style activation-aware scaling (Lin et al., 2023) before weight-only quantization.

Weights that multiply large activations matter most. For each group of linears that read the same input
(q/k/v after `input_layernorm`; gate/up after `post_attention_layernorm`; o_proj; down_proj), the mean
|activation| of every input channel is measured on calibration text; per-channel scales s = mean^α
(α on a grid in [0, 1]) multiply the weight columns before quantization and divide the input, and the α
whose quantized outputs are closest (MSE) to the float outputs wins. Dividing the input is free: it folds
into the preceding RMSNorm weight, or into the rows of v_proj (for o_proj, when there is no GQA) and
up_proj (for down_proj). An optional clipping search then shrinks each int4 group's range where that
lowers the output error. Layers are processed in order, each on the float outputs of the one before.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from puyu.errors import PuyuError
from puyu.model.decoder import CausalLM, DecoderLayer
from puyu.quant.loading import QuantSpec
from puyu.quant.weight_only import dequantize_int4, dequantize_int8, int4_round_trip, quantize_int4, quantize_int8
from puyu.tokenizer import Tokenizer

GRID = 20
# Tokens whose outputs are compared in the searches (a sample keeps the search cost bounded).
SEARCH_TOKENS = 4096
CLIP_TOKENS = 512
CLIP_RATIOS = tuple(1.0 - 0.025 * i for i in range(20))  # 1.0 … 0.525

FakeQuant = Callable[[torch.Tensor], torch.Tensor]


def fake_quantizer(spec: QuantSpec) -> FakeQuant:
    """weight → dequantize(quantize(weight)) under `spec` (the error the search minimises)."""
    if spec.method == "int8":
        return lambda w: dequantize_int8(*quantize_int8(w))
    return lambda w: int4_round_trip(w, spec.group_size)


def calibration_batches(tokenizer: Tokenizer, texts: list[str], samples: int, seq_len: int) -> torch.Tensor:
    """Calibration tokens [B, T]: the concatenated texts cut into at most `samples` blocks of `seq_len`
    (one shorter block when there is less text than that)."""
    ids: list[int] = []
    for text in texts:
        if text.strip():
            ids.extend(tokenizer.encode(text, add_special_tokens=False))
        if len(ids) >= samples * seq_len:
            break
    if len(ids) < 2:
        raise PuyuError("the calibration text is too short (fewer than 2 tokens)")
    if len(ids) < seq_len:
        return torch.tensor([ids])
    blocks = min(samples, len(ids) // seq_len)
    return torch.tensor(ids[: blocks * seq_len]).reshape(blocks, seq_len)


def _sample_rows(x: torch.Tensor, limit: int) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    if rows.shape[0] <= limit:
        return rows
    step = rows.shape[0] / limit
    return rows[(torch.arange(limit) * step).long()]


@torch.no_grad()
def search_scales(x: torch.Tensor, linears: list[nn.Linear], quant: FakeQuant, grid: int = GRID) -> torch.Tensor:
    """Per-input-channel scales for `linears` (which all read `x` [tokens, in]) minimising the quantized
    outputs' MSE; all ones when no α beats plain rounding."""
    act_mean = x.abs().mean(dim=0)
    weight = torch.cat([linear.weight.float() for linear in linears], dim=0)
    reference = x @ weight.t()
    best_error, best = float("inf"), torch.ones_like(act_mean)
    for i in range(grid):
        alpha = i / grid
        scales = act_mean.pow(alpha).clamp(min=1e-4)
        scales = scales / (scales.max() * scales.min()).sqrt()
        approx = x @ (quant(weight * scales) / scales).t()
        error = (approx - reference).pow(2).mean().item()
        if error < best_error:
            best_error, best = error, scales
    return best


@torch.no_grad()
def search_clip(x: torch.Tensor, linear: nn.Linear, group_size: int) -> torch.Tensor:
    """The int4 weight with each (output channel, group) range clipped by the ratio that minimises that
    group's output error on `x` [tokens, in]."""
    w = linear.weight.float()
    n, k = w.shape
    groups = k // group_size
    xg = x.reshape(-1, groups, group_size).transpose(0, 1)  # [G, T, gs]
    wg = w.reshape(n, groups, group_size).transpose(0, 1)  # [G, N, gs]
    reference = xg @ wg.transpose(1, 2)  # [G, T, N]
    limit = wg.abs().amax(dim=-1, keepdim=True)  # [G, N, 1]
    best_error = torch.full((groups, n), float("inf"))
    best = wg.clone()
    for ratio in CLIP_RATIOS:
        bound = limit * ratio
        clipped = wg.clamp(-bound, bound)
        q = dequantize_int4(*quantize_int4(clipped.transpose(0, 1).reshape(n, k), group_size))
        qg = q.reshape(n, groups, group_size).transpose(0, 1)
        error = (xg @ qg.transpose(1, 2) - reference).pow(2).mean(dim=1)  # [G, N]
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best = torch.where(better[..., None], clipped, best)
    return best.transpose(0, 1).reshape(n, k)


def _scale_into_inputs(linears: list[nn.Linear], scales: torch.Tensor) -> None:
    for linear in linears:
        linear.weight.mul_(scales.to(linear.weight.dtype))


def _scale_out_rows(module: nn.Module, scales: torch.Tensor) -> None:
    """Divide the outputs of `module` (an RMSNorm or a linear layer's rows) by `scales`."""
    weight = module.weight
    if weight.dim() == 1:
        weight.div_(scales)
    else:
        weight.div_(scales[:, None])
    bias = getattr(module, "bias", None)
    if bias is not None:
        bias.div_(scales)


@torch.no_grad()
def _scale_layer(layer: DecoderLayer, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], spec: QuantSpec,
                 clip: bool) -> None:  # fmt: skip
    quant = fake_quantizer(spec)
    attn, mlp = layer.self_attn, layer.mlp
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        attn.o_proj.register_forward_pre_hook(lambda _m, args: captured.__setitem__("o", args[0])),
        mlp.down_proj.register_forward_pre_hook(lambda _m, args: captured.__setitem__("down", args[0])),
    ]
    try:
        h = layer.input_layernorm(x)
        if not {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"} & set(spec.skip):
            qkv = [attn.q_proj, attn.k_proj, attn.v_proj]
            scales = search_scales(_sample_rows(h, SEARCH_TOKENS), qkv, quant)
            _scale_out_rows(layer.input_layernorm, scales)
            _scale_into_inputs(qkv, scales)

        mid = x + attn(layer.input_layernorm(x), rope, None, None)
        # v_proj rows line up with o_proj inputs only without GQA.
        if attn.num_heads == attn.num_kv_heads and "self_attn.o_proj" not in spec.skip:
            scales = search_scales(_sample_rows(captured["o"], SEARCH_TOKENS), [attn.o_proj], quant)
            _scale_out_rows(attn.v_proj, scales)
            _scale_into_inputs([attn.o_proj], scales)

        h = layer.post_attention_layernorm(mid)
        if not {"mlp.gate_proj", "mlp.up_proj"} & set(spec.skip):
            gate_up = [mlp.gate_proj, mlp.up_proj]
            scales = search_scales(_sample_rows(h, SEARCH_TOKENS), gate_up, quant)
            _scale_out_rows(layer.post_attention_layernorm, scales)
            _scale_into_inputs(gate_up, scales)

        mlp(layer.post_attention_layernorm(mid))
        if "mlp.down_proj" not in spec.skip:
            scales = search_scales(_sample_rows(captured["down"], SEARCH_TOKENS), [mlp.down_proj], quant)
            _scale_out_rows(mlp.up_proj, scales)
            _scale_into_inputs([mlp.down_proj], scales)

        if clip and spec.method == "int4":
            h_attn = _sample_rows(layer.input_layernorm(x), CLIP_TOKENS)
            attn(layer.input_layernorm(x), rope, None, None)
            h_mlp = _sample_rows(layer.post_attention_layernorm(mid), CLIP_TOKENS)
            mlp(layer.post_attention_layernorm(mid))
            # q/k are left unclipped, as in AWQ: attention scores are sensitive to their outliers.
            inputs = {"self_attn.v_proj": (attn.v_proj, h_attn),
                      "self_attn.o_proj": (attn.o_proj, _sample_rows(captured["o"], CLIP_TOKENS)),
                      "mlp.gate_proj": (mlp.gate_proj, h_mlp), "mlp.up_proj": (mlp.up_proj, h_mlp),
                      "mlp.down_proj": (mlp.down_proj, _sample_rows(captured["down"], CLIP_TOKENS))}  # fmt: skip
            for name, (linear, inp) in inputs.items():
                if name not in spec.skip and linear.in_features % spec.group_size == 0:  # padded layers: no clip
                    linear.weight.copy_(search_clip(inp, linear, spec.group_size))
    finally:
        for hook in hooks:
            hook.remove()


@torch.no_grad()
def apply_awq(model: CausalLM, tokens: torch.Tensor, spec: QuantSpec, *, clip: bool = True) -> CausalLM:
    """Search and fold AWQ scales (and clip int4 ranges) in place on an fp32 model; quantize afterwards.

    Args:
        model: the float model (fp32 recommended: the search compares small differences).
        tokens: calibration token ids [B, T].
        spec: the quantization that will follow.
        clip: also search int4 clipping ranges.
    """
    if tokens.numel() == 0:
        raise PuyuError("AWQ needs at least one calibration token")
    device = model.device
    tokens = tokens.to(device)
    x = model.model.embed_tokens(tokens).float()
    rope = model.rotary(torch.arange(tokens.shape[1], device=device).expand(tokens.shape[0], -1), torch.float32)
    for layer in tqdm(model.model.layers, desc="AWQ search", unit="layer", leave=False):
        _scale_layer(layer, x, rope, spec, clip)
        x = layer(x, rope, None, None)
    return model


def output_error(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Relative L2 error ‖approx - reference‖ / ‖reference‖."""
    return (F.mse_loss(approx.float(), reference.float(), reduction="sum").sqrt() / reference.float().norm()).item()
