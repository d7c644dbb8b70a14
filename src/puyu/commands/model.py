"""`puyu model`: create random-init model folders and inspect existing ones."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing

from puyu.errors import PuyuError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="create or inspect model folders")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    init = actions.add_parser("init", help="write a randomly initialised model folder of a preset shape")
    init.add_argument("--preset", required=True, help="shape name, e.g. internlm2-tiny, internlm2-chat-1.8b")
    init.add_argument("--out", required=True, help="output folder")
    init.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    init.add_argument("--tokenizer", default=None, help="folder whose tokenizer to use (default: built-in byte-level)")
    init.add_argument("--dtype", default=None, help="storage dtype (default: the preset's)")
    init.add_argument("--seed", type=int, default=0, help="initialisation seed")
    init.add_argument("--max-shard-size", default="5GB", help="shard above this size (default %(default)s)")
    init.set_defaults(handler=run_init)

    info = actions.add_parser("info", help="print a model folder's shape and files")
    info.add_argument("model", help="HF model folder")
    info.set_defaults(handler=run_info)

    presets = actions.add_parser("presets", help="list the preset shapes")
    presets.set_defaults(handler=run_presets)


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """`key=value` strings → typed values (JSON where it parses, else the string)."""
    from puyu.model.config import ModelConfig

    fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"extra"}
    hints = typing.get_type_hints(ModelConfig)
    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise PuyuError(f"--set {pair!r}: expected KEY=VALUE")
        if key not in fields:
            raise PuyuError(f"--set {key}: no such config field (fields: {', '.join(sorted(fields))})")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        hint = hints[key]
        if not _fits(value, hint):
            raise PuyuError(f"--set {key}={raw}: expected {_type_name(hint)}")
        overrides[key] = value
    return overrides


def _fits(value: object, hint: object) -> bool:
    """Whether a parsed `--set` value has the config field's type (structured fields are left to the config)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _type_name(hint: object) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def run_init(args: argparse.Namespace) -> int:
    from puyu.model.init import init_model_folder

    folder = init_model_folder(
        args.preset,
        args.out,
        overrides=parse_overrides(args.set),
        tokenizer_dir=args.tokenizer,
        dtype=args.dtype,
        seed=args.seed,
        max_shard_size=args.max_shard_size,
    )
    print(f"wrote a random {args.preset} model to {folder}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from pathlib import Path

    from puyu.model.config import ModelConfig

    folder = Path(args.model)
    if folder.is_file():
        raise PuyuError(f"{folder} is a file; `puyu model info` takes the model folder ({folder.parent})")
    config = ModelConfig.from_pretrained(folder)
    print(f"family      {config.family}")
    print(f"parameters  {config.num_parameters() / 1e6:,.1f} M")
    print(
        f"shape       {config.num_layers} layers × {config.hidden_size} wide, "
        f"{config.num_heads} heads / {config.num_kv_heads} KV heads, FFN {config.intermediate_size}"
    )
    print(f"vocabulary  {config.vocab_size}")
    rope = config.rope_scaling
    print(f"rope        theta {config.rope_theta:g}" + (f", {rope.type} ×{rope.factor:g}" if rope else ""))
    print(f"context     {config.max_position_embeddings}")
    print(f"dtype       {config.torch_dtype}")
    if "quantization_config" in config.extra:
        print(f"quantized   {describe_quantization(config)}")
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    print(f"files       {', '.join(files)}")
    return 0


def run_presets(args: argparse.Namespace) -> int:
    from puyu.model.presets import PRESETS

    for name, config in PRESETS.items():
        print(f"{name:22s} {config.family:10s} {config.num_parameters() / 1e6:>10,.1f} M")
    return 0


def describe_quantization(config) -> str:
    """One line: method, group size, AWQ search, the weights kept in full precision, and the output head."""
    from puyu.quant.loading import QuantSpec
    from puyu.quant.quantize import ungroupable_linears

    spec = QuantSpec.from_config(config.extra["quantization_config"])
    if spec.method == "int4":
        method = f"int4 weight-only, group size {spec.group_size} (AWQ-format tensors)"
        padded = [name for name in ungroupable_linears(config, spec.group_size) if name not in spec.skip]
        if padded:
            method += f", last group padded in {', '.join(padded)}"
    else:
        method = "int8 weight-only, one scale per output channel"
    search = "AWQ scale search" if spec.awq else "no AWQ scale search"
    full = ["embeddings", *(f"{name} of every layer" for name in spec.skip)]
    if spec.lm_head:
        head = "output head int8" + (" (stored unquantized, quantized when loaded)" if spec.method == "int4" else "")
    else:
        full.append("output head")
        head = ""
    kept = f"kept in {config.torch_dtype}: {', '.join(full)}"
    return "; ".join(part for part in (method, search, kept, head) if part)
