"""`puyu convert`: rewrite a model folder in another family's checkpoint layout."""

from __future__ import annotations

import argparse

from puyu.model.config import FAMILIES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="convert a model folder between InternLM2 and Llama layouts")
    parser.add_argument("source", help="HF model folder")
    parser.add_argument(
        "--to",
        required=True,
        choices=FAMILIES,
        dest="family",
        help="target layout: InternLM2 and Llama models convert to each other (exact); qwen2 only takes models "
        "with q/k/v biases (Qwen2 itself). Quantized folders do not convert: convert first, then quantize",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--max-shard-size", default="5GB", help="shard above this size (default %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from puyu.model.convert import convert_checkpoint

    out = convert_checkpoint(args.source, args.out, args.family, max_shard_size=args.max_shard_size)
    print(f"wrote {args.family} layout to {out}")
    return 0
