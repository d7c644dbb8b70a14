"""`puyu merge`: fold a LoRA adapter into its base model, giving a plain HF model folder."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="merge a LoRA adapter into its base model",
        description="Load BASE (an HF model folder) in float32, apply ADAPTER (a PEFT LoRA folder, e.g. the adapter "
        "`puyu finetune` writes), fold it into the weights and save a model folder in the base family's own layout "
        "with the base's tokenizer; it opens in `puyu chat` and in transformers (an InternLM2-layout folder with "
        "trust_remote_code=True, through the modelling files written beside it; `puyu convert --to llama` gives a "
        "copy that needs none). To use an adapter without merging: `puyu chat BASE --adapter ADAPTER`.",
    )
    parser.add_argument("base", help="base model folder the adapter was trained on")
    parser.add_argument("adapter", help="adapter folder (adapter_config.json + adapter_model.safetensors)")
    parser.add_argument("--out", required=True, help="output model folder")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="storage dtype of the merged weights (default: the base's)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from puyu.finetune.adapter import merge_adapter

    out = merge_adapter(args.base, args.adapter, args.out, dtype=args.dtype)
    print(f"merged {args.adapter} into {args.base}: {out}")
    return 0
