"""Quantized HF folders: the `quantization_config` they carry, and writing / reading their tensors.

Two on-disk formats, both in each family's own tensor names (InternLM2's fused `wqkv` included):

* int4 — AutoAWQ's "GEMM" layout, which vLLM, LMDeploy and transformers read:
  `quantization_config = {"quant_method": "awq", "bits": 4, "group_size": G, "zero_point": true,
  "version": "gemm"}`; per linear `qweight` int32 [in, out/8] (8 nibbles per int32 in the order
  0, 2, 4, 6, 1, 3, 5, 7 of each 8 output channels), `qzeros` int32 [in/G, out/8] (same packing),
  `scales` fp16 [in/G, out]; w = (q - zero) · scale. Embeddings and the output head stay unquantized
  on disk; puyu quantizes the head to int8 when it loads the folder (`"puyu": {"lm_head": "int8"}`).
* int8 — puyu's own: `{"quant_method": "puyu", "bits": 8, "scheme": "per_channel_symmetric"}`;
  per linear `qweight` int8 [out, in] and `scales` fp32 [out]; w = q · scale. `"lm_head": true`
  when the output head is quantized too.

Loading builds the model on the meta device with quantized modules in place of the decoder's linear
layers, then streams the packed tensors in; `puyu.model.checkpoint.load_model` calls `QuantizedLoader`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from torch import nn

from puyu.errors import PuyuError, one_line
from puyu.io import atomic_path, atomic_write_text
from puyu.model.checkpoint import SAFETENSORS, dtype_name, parse_dtype
from puyu.model.config import ModelConfig
from puyu.model.decoder import CausalLM
from puyu.model.generation_config import write_generation_config
from puyu.model.hf_remote import write_remote_code
from puyu.model.weight_names import from_internal, internal_shapes, to_internal
from puyu.quant.weight_only import Int4Linear, Int8Linear, QuantLinear, awq_pack, awq_unpack, check_int4_shape

Method = Literal["int8", "int4"]
METHODS: tuple[str, ...] = ("int8", "int4")
# The decoder's linear layers, per block (HF-Llama names).
LAYER_LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
QUANT_CONFIG_KEY = "quantization_config"


@dataclass(frozen=True)
class QuantSpec:
    """What a quantized folder holds.

    Args:
        method: "int8" (per-channel symmetric) or "int4" (group-wise asymmetric, AWQ layout).
        group_size: int4 group width along the input dimension.
        lm_head: quantize the output head to int8 (for int4 at load time: it stays unquantized on disk).
        awq: whether activation-aware scales were searched (informational).
        skip: per-block linears (e.g. "mlp.down_proj") kept unquantized: int4 layers whose input width
            does not split into groups.
    """

    method: Method
    group_size: int = 128
    lm_head: bool = True
    awq: bool = False
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PuyuError(f"unknown quantization method {self.method!r} (known: {', '.join(METHODS)})")

    @property
    def disk_kinds(self) -> tuple[str, ...]:
        """The tensors each quantized linear has on disk."""
        return ("qweight", "qzeros", "scales") if self.method == "int4" else ("qweight", "scales")

    def to_config(self, config: ModelConfig) -> dict[str, Any]:
        """The `quantization_config` entry of config.json (module names in `config.family`'s layout)."""
        if self.method == "int4":
            puyu = {"lm_head": "int8" if self.lm_head else None, "awq_search": self.awq, "skip": list(self.skip)}
            out: dict[str, Any] = {
                "quant_method": "awq",
                "bits": 4,
                "group_size": self.group_size,
                "zero_point": True,
                "version": "gemm",
                "puyu": puyu,
            }
            if self.skip:  # the names vLLM and transformers match against module paths
                layer0 = [f"model.layers.0.{name}" for name in self.skip]
                out["modules_to_not_convert"] = sorted(
                    n.removeprefix("model.layers.0.") for n in checkpoint_module_names(config, layer0)
                )
            return out
        return {
            "quant_method": "puyu",
            "bits": 8,
            "scheme": "per_channel_symmetric",
            "lm_head": self.lm_head,
            "awq_search": self.awq,
        }

    @classmethod
    def from_config(cls, raw: Any, source: str = "config.json") -> QuantSpec:
        if not isinstance(raw, dict):
            raise PuyuError(f"{source}: quantization_config must be an object")
        method, bits = raw.get("quant_method"), raw.get("bits", raw.get("w_bit"))
        if method == "awq":
            version = str(raw.get("version", "gemm")).lower()
            if bits != 4 or version != "gemm" or raw.get("zero_point", True) is not True:
                raise PuyuError(
                    f"{source}: only 4-bit AWQ in the GEMM layout with zero points is supported "
                    f"(found bits={bits}, version={version!r}, zero_point={raw.get('zero_point')})"
                )
            extra = raw.get("puyu") or {}
            group = int(raw.get("group_size", raw.get("q_group_size", 128)))
            head = extra.get("lm_head") == "int8"
            skip = tuple(extra.get("skip") or ())
            if any(name not in LAYER_LINEARS for name in skip):
                raise PuyuError(f"{source}: unknown layers in quantization_config.puyu.skip: {list(skip)}")
            return cls("int4", group_size=group, lm_head=head, awq=bool(extra.get("awq_search")), skip=skip)
        if method == "puyu" and bits == 8:
            return cls("int8", lm_head=bool(raw.get("lm_head", False)), awq=bool(raw.get("awq_search", False)))
        raise PuyuError(f"{source}: unsupported quantization_config (quant_method={method!r}, bits={bits})")


def quant_spec(config: ModelConfig) -> QuantSpec | None:
    """The quantization a loaded config.json declares, or None for a plain model."""
    raw = config.extra.get(QUANT_CONFIG_KEY)
    return None if raw is None else QuantSpec.from_config(raw)


def quantized_paths(config: ModelConfig, spec: QuantSpec, *, on_disk: bool) -> list[str]:
    """Module paths (internal names) that are quantized in memory, or on disk (the int4 head is not)."""
    names = [name for name in LAYER_LINEARS if name not in spec.skip]
    paths = [f"model.layers.{i}.{name}" for i in range(config.num_layers) for name in names]
    if spec.lm_head and not config.tie_word_embeddings and (spec.method == "int8" or not on_disk):
        paths.append("lm_head")
    return paths


def make_quant_module(linear: nn.Linear, spec: QuantSpec, path: str) -> QuantLinear:
    """An empty quantized module of `linear`'s shape (the output head is always int8)."""
    bias = linear.bias is not None
    if spec.method == "int8" or path == "lm_head":
        return Int8Linear(linear.in_features, linear.out_features, bias=bias)
    try:
        check_int4_shape(spec.group_size, spec.group_size)  # any input width: the last group is padded
    except PuyuError as bad:
        raise PuyuError(f"{path}: {bad}") from None
    return Int4Linear(linear.in_features, linear.out_features, bias=bias, group_size=spec.group_size)


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


# ---- names ---------------------------------------------------------------------------------------


def to_checkpoint_names(config: ModelConfig, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Some internal-name tensors (output channels first) → the family's checkpoint names and layout.

    The family's name map runs over a full state of meta placeholders, so InternLM2's q/k/v fusion
    applies to whatever tensors are given (quantized values, scales, zero points alike).
    """
    state = {n: tensors.get(n, torch.empty(s, device="meta")) for n, s in internal_shapes(config).items()}
    return {name: t for name, t in from_internal(state, config, config.family) if not t.is_meta}


def checkpoint_module_names(config: ModelConfig, paths: list[str]) -> set[str]:
    """The checkpoint's names of the modules at internal `paths` (InternLM2: q/k/v → one `wqkv`)."""
    marked = {f"{p}.weight" for p in paths}
    state = {
        n: torch.empty(s, device="meta", dtype=torch.int8 if n in marked else torch.float32)
        for n, s in internal_shapes(config).items()
    }
    return {n.removesuffix(".weight") for n, t in from_internal(state, config, config.family) if t.dtype == torch.int8}


# ---- writing -------------------------------------------------------------------------------------


def _disk_tensors(module: QuantLinear, spec: QuantSpec) -> dict[str, torch.Tensor]:
    """One module's quantized tensors, output channels first (the layout the name map splits/fuses)."""
    if isinstance(module, Int4Linear):
        return {"qweight": module.unpacked(), "qzeros": module.zeros, "scales": module.scales}
    assert isinstance(module, Int8Linear)
    return {"qweight": module.qweight, "scales": module.scales}


def _to_awq(kind: str, tensor: torch.Tensor) -> torch.Tensor:
    """Output-channels-first int4 tensors → AutoAWQ GEMM layout (input dimension first)."""
    if kind == "scales":
        return tensor.t().to(torch.float16).contiguous()
    return awq_pack(tensor.t().contiguous())


def save_quantized(model: CausalLM, path: str | Path, spec: QuantSpec) -> Path:
    """Write a quantized model as an HF folder (config.json with quantization_config, model.safetensors).

    Unquantized tensors are stored in the config's `torch_dtype`.
    """
    config = model.config
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    store_dtype = parse_dtype(config.torch_dtype)
    disk_paths = quantized_paths(config, spec, on_disk=True)
    modules: dict[str, QuantLinear] = {}
    for p in disk_paths:
        module = model.get_submodule(p)
        if not isinstance(module, QuantLinear):
            raise PuyuError(f"{p} is not quantized; quantize the model before saving it")
        modules[p] = module
    if spec.method == "int4" and not isinstance(model.get_submodule("lm_head"), nn.Linear):
        raise PuyuError("an int4 folder stores the output head unquantized: save before quantizing lm_head")

    out: dict[str, torch.Tensor] = {}
    quantized_weights = {f"{p}.weight" for p in disk_paths}
    plain = {
        n: t.detach()
        for n, t in model.state_dict().items()
        if n in internal_shapes(config) and n not in quantized_weights
    }
    for name, tensor in to_checkpoint_names(config, plain).items():
        out[name] = tensor.to(device="cpu", dtype=store_dtype).contiguous()
    for kind in spec.disk_kinds:
        per_kind = {f"{p}.weight": _disk_tensors(m, spec)[kind].cpu() for p, m in modules.items()}
        for name, tensor in to_checkpoint_names(config, per_kind).items():
            base = name.removesuffix(".weight")
            out[f"{base}.{kind}"] = (_to_awq(kind, tensor) if spec.method == "int4" else tensor).contiguous()

    with atomic_path(folder / SAFETENSORS) as tmp:
        save_file(out, str(tmp), metadata={"format": "pt"})
    for stale in folder.glob("model*.safetensors*"):
        if stale.name != SAFETENSORS:
            stale.unlink()
    hf = config.replace(torch_dtype=dtype_name(store_dtype)).to_hf()
    hf[QUANT_CONFIG_KEY] = spec.to_config(config)
    atomic_write_text(folder / "config.json", json.dumps(hf, indent=2) + "\n")
    write_generation_config(folder, config)
    if config.family == "internlm2":  # config.json's auto_map names these files
        write_remote_code(folder)
    return folder


# ---- reading -------------------------------------------------------------------------------------


def install_quant_modules(model: CausalLM, spec: QuantSpec, paths: list[str]) -> dict[str, QuantLinear]:
    """Replace the linear layers at `paths` by empty quantized modules (on the model's device, e.g. meta)."""
    installed: dict[str, QuantLinear] = {}
    for path in paths:
        linear = model.get_submodule(path)
        if not isinstance(linear, nn.Linear):
            raise PuyuError(f"{path}: expected a linear layer, found {type(linear).__name__}")
        with torch.device(linear.weight.device):
            module = make_quant_module(linear, spec, path)
        set_module(model, path, module)
        installed[path] = module
    return installed


def _from_disk(kind: str, tensor: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """A stored quantized tensor → output channels first (inverse of the writing side)."""
    if spec.method == "int8":
        return tensor
    if kind == "scales":
        return tensor.float().t().contiguous()
    return awq_unpack(tensor).t().contiguous()


class QuantizedLoader:
    """Streams a quantized folder's tensors into a meta-device CausalLM (used by `load_model`).

    Args:
        model: the model skeleton on the meta device; its linear layers are replaced here.
        spec: the folder's quantization.
        device: where the quantized tensors go.
    """

    def __init__(self, model: CausalLM, spec: QuantSpec, device: torch.device) -> None:
        self.model = model
        self.spec = spec
        self.device = device
        config = model.config
        self.disk_paths = quantized_paths(config, spec, on_disk=True)
        self.modules = install_quant_modules(model, spec, self.disk_paths)
        self.checkpoint_names = checkpoint_module_names(config, self.disk_paths)
        self.pending: dict[str, dict[str, torch.Tensor]] = {}
        self.done: set[str] = set()

    def plain_names(self, wanted: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """The checkpoint's unquantized tensors: `wanted` without the quantized linears' weights."""
        return {n: s for n, s in wanted.items() if n.removesuffix(".weight") not in self.checkpoint_names}

    def take(self, name: str, tensor: torch.Tensor) -> bool:
        """Consume `name` if it is a quantized tensor; False for anything else."""
        base, _, kind = name.rpartition(".")
        if base not in self.checkpoint_names or kind not in self.spec.disk_kinds:
            return False
        parts = self.pending.setdefault(base, {})
        parts[kind] = tensor
        if len(parts) == len(self.spec.disk_kinds):
            self._install(base, self.pending.pop(base))
        return True

    def _install(self, base: str, parts: dict[str, torch.Tensor]) -> None:
        config = self.model.config
        split: dict[str, dict[str, torch.Tensor]] = {}
        try:
            for kind, tensor in parts.items():
                for internal, value in to_internal(f"{base}.weight", _from_disk(kind, tensor, self.spec), config):
                    split.setdefault(internal.removesuffix(".weight"), {})[kind] = value
        except RuntimeError as bad:
            raise PuyuError(f"{base}: quantized tensors do not fit config.json ({one_line(bad)})") from None
        for path, values in split.items():
            module = self.modules[path]
            if isinstance(module, Int4Linear):
                module.set_quantized(values["qweight"], values["qzeros"], values["scales"])
            else:
                assert isinstance(module, Int8Linear)
                module.set_quantized(values["qweight"], values["scales"])
            module.to(self.device)
            self.done.add(path)

    def finish(self, folder: Path) -> None:
        """Check that every quantized module was filled; quantize the int4 folder's output head to int8."""
        missing = [p for p in self.disk_paths if p not in self.done]
        if missing:
            shown = ", ".join(missing[:4]) + (f", … ({len(missing)} in all)" if len(missing) > 4 else "")
            raise PuyuError(f"{folder}: missing quantized tensors for {shown}")
        finalize_head(self.model, self.spec)


def finalize_head(model: CausalLM, spec: QuantSpec) -> None:
    """Apply the int8 output head that an int4 spec asks for (stored unquantized on disk)."""
    if spec.method != "int4" or "lm_head" not in quantized_paths(model.config, spec, on_disk=False):
        return
    head = model.lm_head
    if isinstance(head, nn.Linear):
        model.lm_head = Int8Linear.from_linear(head).to(head.weight.device)
