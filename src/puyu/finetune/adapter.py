"""LoRA adapters on disk in PEFT's format, and merging one into its base model.

An adapter folder holds `adapter_config.json` (PEFT's `LoraConfig` fields) and `adapter_model.safetensors`
with PEFT's tensor names (`base_model.model.<module>.lora_A.weight`, no adapter name), so
`peft.PeftModel.from_pretrained(base, folder)` loads it. Module names follow the base's own checkpoint
layout: Llama and Qwen2 use puyu's names as they are; for InternLM2 the projections are renamed
(`attention.wo`, `feed_forward.w1/w3/w2`) and the q/k/v adapters become one exact adapter on the fused
`attention.wqkv`: A stacks A_q, A_k, A_v, and B is block-diagonal with its rows arranged like wqkv's
([q × G, k, v] per key/value head), so B @ A equals the three separate updates. Its rank is the sum of
theirs, recorded with `rank_pattern`/`alpha_pattern` so the scale stays alpha / r. Loading reads both
forms; a fused adapter trained elsewhere splits exactly into q/k/v adapters that share its A.

Trained token rows (`LoraConfig.trainable_token_indices`) are stored as PEFT stores them: the rows' values in
`base_model.model.<matrix>.token_adapter.trainable_tokens_delta` and their ids in the config's
`trainable_token_indices`, with the matrices in the base's names (`model.tok_embeddings` and `output` for
InternLM2).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from puyu.errors import PuyuError, one_line
from puyu.finetune.lora import LoraConfig, LoRALinear, apply_lora, lora_modules, merge_lora
from puyu.finetune.trainable_tokens import TOKEN_MATRICES, normalize_token_indices, token_modules
from puyu.io import atomic_path, atomic_write_text
from puyu.model.config import ModelConfig
from puyu.model.weight_names import fuse_wqkv, split_wqkv

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_BIN = "adapter_model.bin"
PREFIX = "base_model.model."

# puyu module suffix → InternLM2 module suffix (q/k/v go through the fused wqkv).
_TO_INTERNLM2 = {
    "self_attn.o_proj": "attention.wo",
    "mlp.gate_proj": "feed_forward.w1",
    "mlp.up_proj": "feed_forward.w3",
    "mlp.down_proj": "feed_forward.w2",
}
_FROM_INTERNLM2 = {v: k for k, v in _TO_INTERNLM2.items()}
_TARGET_NAME = {"o_proj": "wo", "gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}
_KEY_RE = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])(?:\.default)?\.weight$")
_TOKEN_KEY_RE = re.compile(r"^(?P<module>.+)\.token_adapter\.trainable_tokens_delta(?:\.default)?$")
# Where each family's checkpoints keep the matrices whose token rows can be trained.
_INTERNLM2_MATRICES = {"model.embed_tokens": "model.tok_embeddings", "lm_head": "output"}
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_QKV = ("q_proj", "k_proj", "v_proj")


@dataclass
class _Update:
    """One low-rank update as stored: A [r, in], B [out, r], scale alpha / r."""

    a: torch.Tensor
    b: torch.Tensor
    alpha: float

    @property
    def rank(self) -> int:
        return self.a.shape[0]


# ---- saving -------------------------------------------------------------------------------------


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def save_adapter(model: nn.Module, out_dir: str | os.PathLike[str], config: LoraConfig, base_model: str | Path) -> Path:
    """Write the model's LoRA adapters as a PEFT adapter folder (atomically, file by file).

    Args:
        model: a `CausalLM` with `LoRALinear` layers (from `apply_lora` or `load_adapter`).
        out_dir: the folder to write.
        config: the settings the adapters were made with (r, alpha, dropout, targets).
        base_model: the base model's folder or name, recorded as `base_model_name_or_path`: a folder that exists
            as its absolute path (so the adapter names its base from any working directory), a hub-style name
            as given.

    Returns:
        The folder.
    """
    model_config: ModelConfig = model.config
    updates = {name: _Update(m.lora_A.detach(), m.lora_B.detach(), m.alpha) for name, m in lora_modules(model)}
    if not updates:
        raise PuyuError("save_adapter: the model has no LoRA layers")
    if model_config.family == "internlm2":
        updates = _to_internlm2(updates, model_config)
        targets = list(dict.fromkeys("wqkv" if t in _QKV else _TARGET_NAME[t] for t in config.target_modules))
    else:
        targets = list(config.target_modules)
    tensors: dict[str, torch.Tensor] = {}
    token_indices = _token_tensors(model, tensors)
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, int | float] = {}
    for name, update in updates.items():
        tensors[f"{PREFIX}{name}.lora_A.weight"] = update.a.to("cpu").contiguous()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = update.b.to("cpu").contiguous()
        if update.rank != config.r or update.alpha != config.alpha:
            rank_pattern[name] = update.rank
            alpha_pattern[name] = _number(update.alpha)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / ADAPTER_WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    (folder / ADAPTER_BIN).unlink(missing_ok=True)  # PEFT would read a stale .bin only without the safetensors
    peft_config = {
        "alpha_pattern": alpha_pattern,
        "auto_mapping": None,
        "base_model_name_or_path": str(Path(base_model).resolve()) if Path(base_model).exists() else str(base_model),
        "bias": "none",
        "exclude_modules": None,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_pattern": None,
        "layers_to_transform": None,
        "lora_alpha": _number(config.alpha),
        "lora_bias": False,
        "lora_dropout": config.dropout,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": config.r,
        "rank_pattern": rank_pattern,
        "revision": None,
        "target_modules": targets,
        "task_type": "CAUSAL_LM",
        "trainable_token_indices": token_indices,
        "use_dora": False,
        "use_rslora": False,
    }
    atomic_write_text(folder / ADAPTER_CONFIG, json.dumps(peft_config, indent=2) + "\n")
    return folder


def _token_tensors(model: nn.Module, tensors: dict[str, torch.Tensor]) -> list[int] | dict[str, list[int]] | None:
    """Add the trained token rows to `tensors` under PEFT's names; returns `trainable_token_indices` as PEFT
    writes it (a list for the embedding alone, else ids per matrix name)."""
    rows = dict(token_modules(model))
    if getattr(model.config, "tie_word_embeddings", False):
        rows.pop(TOKEN_MATRICES[1], None)  # the tied head reads the embedding's rows
    internlm2 = model.config.family == "internlm2"
    indices: dict[str, list[int]] = {}
    for name, module in rows.items():
        stored = _INTERNLM2_MATRICES[name] if internlm2 else name
        tensors[f"{PREFIX}{stored}.token_adapter.trainable_tokens_delta"] = (
            module.trainable_tokens_delta.detach().to("cpu").contiguous()
        )
        indices[stored.rpartition(".")[2]] = module.token_ids.tolist()
    if not indices:
        return None
    if list(rows) == [TOKEN_MATRICES[0]]:
        return next(iter(indices.values()))
    return indices


def _to_internlm2(updates: dict[str, _Update], config: ModelConfig) -> dict[str, _Update]:
    """puyu-named updates → InternLM2-named ones, q/k/v fused into one exact wqkv update per layer."""
    out: dict[str, _Update] = {}
    layers: dict[str, dict[str, _Update]] = {}
    for name, update in updates.items():
        layer, module = _LAYER_RE.match(name).groups()  # type: ignore[union-attr]
        prefix = f"model.layers.{layer}."
        if module.startswith("self_attn.") and module[10:] in _QKV:
            layers.setdefault(prefix, {})[module[10:]] = update
        else:
            out[prefix + _TO_INTERNLM2[module]] = update
    hd = config.head_dim or 0
    rows = {"q_proj": config.num_heads * hd, "k_proj": config.num_kv_heads * hd, "v_proj": config.num_kv_heads * hd}
    for prefix, parts in layers.items():
        first = next(iter(parts.values()))
        scale = first.alpha / first.rank
        rank = sum(u.rank for u in parts.values())
        ref = first.a
        blocks, column = {}, 0
        for x in _QKV:
            block = torch.zeros(rows[x], rank, dtype=ref.dtype, device=ref.device)
            if x in parts:
                u = parts[x]
                # A different scale than the fused one is folded into this block of B.
                block[:, column : column + u.rank] = u.b * ((u.alpha / u.rank) / scale)
                column += u.rank
            blocks[x] = block
        a = torch.cat([parts[x].a for x in _QKV if x in parts])
        b = fuse_wqkv(blocks["q_proj"], blocks["k_proj"], blocks["v_proj"], config)
        out[prefix + "attention.wqkv"] = _Update(a, b, scale * rank)
    return dict(sorted(out.items(), key=lambda item: _module_order(item[0])))


def _module_order(name: str) -> tuple[int, str]:
    match = _LAYER_RE.match(name)
    return (int(match.group(1)), match.group(2)) if match else (-1, name)


# ---- loading ------------------------------------------------------------------------------------


def read_adapter_config(adapter_dir: str | os.PathLike[str]) -> dict:
    """adapter_config.json of a LoRA adapter folder, checked for settings puyu cannot reproduce."""
    folder = Path(adapter_dir)
    path = folder / ADAPTER_CONFIG
    if not path.is_file():
        raise PuyuError(f"{folder}: not an adapter folder (no {ADAPTER_CONFIG})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as bad:
        raise PuyuError(f"{path}: not valid JSON ({one_line(bad)})") from None
    if not isinstance(raw, dict) or raw.get("peft_type", "LORA") != "LORA":
        raise PuyuError(f"{path}: peft_type {raw.get('peft_type') if isinstance(raw, dict) else raw!r} is not LORA")
    unsupported = {
        "use_dora": False, "use_rslora": False, "fan_in_fan_out": False, "modules_to_save": None,
        "layer_replication": None, "lora_bias": False, "use_qalora": False, "target_parameters": None,
    }  # fmt: skip
    for key, default in unsupported.items():
        if raw.get(key, default) not in (default, [], {}):
            raise PuyuError(f"{path}: {key}={raw[key]!r} is not supported (puyu loads plain LoRA adapters)")
    if raw.get("bias", "none") != "none":
        raise PuyuError(f"{path}: bias={raw['bias']!r} is not supported (only 'none')")
    return raw


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / ADAPTER_WEIGHTS).is_file():
        try:
            return load_file(str(folder / ADAPTER_WEIGHTS))
        except SafetensorError as bad:
            raise PuyuError(f"{folder / ADAPTER_WEIGHTS}: unreadable ({one_line(bad)})") from None
    if (folder / ADAPTER_BIN).is_file():
        try:
            state = torch.load(folder / ADAPTER_BIN, map_location="cpu", weights_only=True)
        except Exception as bad:  # torch raises many types for a corrupt or unsafe pickle
            raise PuyuError(f"{folder / ADAPTER_BIN}: unreadable ({one_line(bad)[:200]})") from None
        return dict(state)
    raise PuyuError(f"{folder}: no adapter weights ({ADAPTER_WEIGHTS} or {ADAPTER_BIN})")


def _pattern_value(patterns: dict, module: str, default: float) -> float:
    """PEFT's rank/alpha pattern lookup: a key matches a module name ending in it at a '.' boundary."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _read_updates(folder: Path, raw: dict, tensors: dict[str, torch.Tensor]) -> dict[str, _Update]:
    """The adapter's updates by module name as stored (the checkpoint layout's names)."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if _TOKEN_KEY_RE.match(key.removeprefix(PREFIX)):
            continue  # trained token rows: read by `_read_token_rows`
        match = _KEY_RE.match(key.removeprefix(PREFIX))
        if not match:
            raise PuyuError(f"{folder}: unexpected tensor {key} in a LoRA adapter")
        parts.setdefault(match["module"], {})[match["which"]] = tensor
    alpha = float(raw.get("lora_alpha", 8))
    updates = {}
    for module, ab in parts.items():
        if set(ab) != {"A", "B"}:
            raise PuyuError(f"{folder}: {module} has lora_{'A' if 'B' in ab else 'B'} missing")
        a, b = ab["A"], ab["B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise PuyuError(f"{folder}: {module}: lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} do not fit")
        module_alpha = float(_pattern_value(raw.get("alpha_pattern") or {}, module, alpha))
        updates[module] = _Update(a, b, module_alpha)
    if not updates:
        raise PuyuError(f"{folder}: the adapter holds no tensors")
    return updates


def _read_token_rows(
    folder: Path, raw: dict, tensors: dict[str, torch.Tensor], hidden: int
) -> tuple[dict[str, list[int]], dict[str, torch.Tensor]]:
    """The trained token ids and rows by puyu matrix name; PuyuError where ids and rows disagree."""
    indices = normalize_token_indices(raw.get("trainable_token_indices"))
    rows: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        match = _TOKEN_KEY_RE.match(key.removeprefix(PREFIX))
        if match:
            (name,) = normalize_token_indices({match["module"]: []})  # the matrix's puyu name
            rows[name] = tensor
    if set(rows) != set(indices):
        raise PuyuError(
            f"{folder}: trainable_token_indices names {sorted(indices) or 'no matrix'} but the weights hold "
            f"rows for {sorted(rows) or 'none'}"
        )
    for name, tensor in rows.items():
        if tuple(tensor.shape) != (len(indices[name]), hidden):
            shape, count = tuple(tensor.shape), len(indices[name])
            raise PuyuError(f"{folder}: {name} token rows {shape} do not fit {count} ids of width {hidden}")
    return indices, rows


def _from_internlm2(updates: dict[str, _Update], config: ModelConfig, where: str) -> dict[str, _Update]:
    """InternLM2-named updates → puyu-named ones; a wqkv update splits exactly into q/k/v updates."""
    out: dict[str, _Update] = {}
    for name, update in updates.items():
        match = _LAYER_RE.match(name)
        module = match.group(2) if match else ""
        if match is None or (module != "attention.wqkv" and module not in _FROM_INTERNLM2):
            out[name] = update  # reported as unknown by the shape check
            continue
        prefix = f"model.layers.{match.group(1)}."
        if module in _FROM_INTERNLM2:
            out[prefix + _FROM_INTERNLM2[module]] = update
            continue
        fused_rows = (config.num_heads + 2 * config.num_kv_heads) * (config.head_dim or 0)
        if update.b.shape[0] != fused_rows:
            raise PuyuError(
                f"adapter {where} was trained for a wqkv of {update.b.shape[0]} rows, but the base model's "
                f"{name} has {fused_rows} ({config.num_heads} heads, {config.num_kv_heads} KV heads)"
            )
        out.update(_split_wqkv_update(prefix, update, config))
    return out


def _split_wqkv_update(prefix: str, update: _Update, config: ModelConfig) -> dict[str, _Update]:
    """B's rows split like wqkv's; each of q/k/v keeps only the columns of B that are non-zero for it, so an
    adapter written by `save_adapter` comes back at its own rank, and any other splits exactly at full rank."""
    b_parts = dict(zip(_QKV, split_wqkv(update.b, config), strict=True))
    scale = update.alpha / update.rank
    used = {x: (b.abs().sum(dim=0) != 0).nonzero().flatten() for x, b in b_parts.items()}
    if all(len(cols) == 0 for cols in used.values()):
        # An untrained adapter (B = 0): any split is exact; assume the equal blocks save_adapter writes.
        step = update.rank // 3 if update.rank % 3 == 0 else update.rank
        used = {x: torch.arange(i * step, (i + 1) * step) if step < update.rank else torch.arange(step)
                for i, x in enumerate(_QKV)}  # fmt: skip
    out = {}
    for x, cols in used.items():
        if len(cols) == 0:
            continue  # this projection has no update
        rank = len(cols)
        out[prefix + f"self_attn.{x}"] = _Update(update.a[cols], b_parts[x][:, cols], scale * rank)
    return out


def load_adapter(model: nn.Module, adapter_dir: str | os.PathLike[str]) -> LoraConfig:
    """Wrap the model's projections in LoRA layers holding a PEFT adapter's weights, in place.

    Args:
        model: a `CausalLM` without adapters (its projections may be NF4Linear).
        adapter_dir: a PEFT LoRA adapter folder (puyu's or PEFT's, in the base family's module names).

    Returns:
        The adapter's settings.

    Raises:
        PuyuError: the adapter does not fit the base (a module missing, or of other in/out features), or it
            uses a PEFT feature puyu does not implement.
    """
    folder = Path(adapter_dir)
    raw = read_adapter_config(folder)
    config: ModelConfig = model.config
    tensors = _read_tensors(folder)
    updates = _read_updates(folder, raw, tensors)
    token_ids, token_rows = _read_token_rows(folder, raw, tensors, config.hidden_size)
    trained_for = raw.get("base_model_name_or_path") or "another model"
    if any(".attention." in n or ".feed_forward." in n for n in updates):
        updates = _from_internlm2(updates, config, str(folder))
    existing = dict(model.named_modules())
    for name, update in updates.items():
        module = existing.get(name)
        if isinstance(module, LoRALinear):
            raise PuyuError(f"{name} already has a LoRA adapter (load adapters into a plain base model)")
        if module is None or not hasattr(module, "in_features"):
            raise PuyuError(
                f"adapter {folder} was trained for {trained_for}, which has a module {name}, but the base model "
                f"({config.family}, {config.num_layers} layers) has no such projection"
            )
        got = (update.a.shape[1], update.b.shape[0])
        if got != (module.in_features, module.out_features):
            raise PuyuError(
                f"adapter {folder} was trained for {trained_for}, whose {name} maps {got[0]} → {got[1]} features, "
                f"but the base model's maps {module.in_features} → {module.out_features}"
            )
    targets = list(dict.fromkeys(name.rpartition(".")[2] for name in updates))
    lora_config = LoraConfig(
        r=int(raw.get("r", 8)),
        alpha=float(raw.get("lora_alpha", 8)),
        dropout=float(raw.get("lora_dropout", 0.0)),
        target_modules=targets,
        trainable_token_indices=token_ids or None,
    )
    ranks = {name: (u.rank, u.alpha) for name, u in updates.items()}
    apply_lora(model, lora_config, ranks=ranks, modules=set(updates))
    with torch.no_grad():
        for name, update in updates.items():
            layer = model.get_submodule(name)
            layer.lora_A.copy_(update.a)
            layer.lora_B.copy_(update.b)
        for name, rows in token_rows.items():
            model.get_submodule(name).trainable_tokens_delta.copy_(rows)
    return lora_config


# ---- merging ------------------------------------------------------------------------------------


def merge_adapter(
    base_dir: str | os.PathLike[str],
    adapter_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dtype: str = "auto",
) -> Path:
    """Base model + adapter → one HF model folder in the base family's layout, with the base's tokenizer.

    The merge happens in fp32; `dtype` is the storage dtype ("auto" = the base's own).
    """
    from puyu.model.checkpoint import load_model, parse_dtype, save_model
    from puyu.model.generation_config import write_generation_config
    from puyu.tokenizer import Tokenizer

    base, out = Path(base_dir), Path(out_dir)
    if out.resolve() == base.resolve():
        raise PuyuError(f"{out}: the output folder must differ from the base model's")
    store = None if dtype == "auto" else parse_dtype(dtype)
    model = load_model(base, dtype="float32")
    load_adapter(model, adapter_dir)
    merge_lora(model)
    save_model(model, out, dtype=store)
    Tokenizer.from_pretrained(base).save_pretrained(out)
    write_generation_config(out)
    return out
