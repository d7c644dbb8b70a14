"""`puyu convert`: rewrite a model folder in another family's checkpoint layout, or import a GGUF file."""

from __future__ import annotations

import argparse

from puyu.errors import PuyuError
from puyu.model.config import FAMILIES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a model folder between InternLM2 and Llama layouts, or a GGUF file to a model folder"
    )
    parser.add_argument("source", help="HF model folder, or a .gguf file (llama, qwen2, internlm2)")
    parser.add_argument(
        "--to",
        choices=FAMILIES,
        dest="family",
        default=None,
        help="target layout (model folders; GGUF keeps its own): InternLM2 and Llama models convert to each other "
        "(exact); qwen2 only takes models with q/k/v biases (Qwen2 itself). Quantized folders do not convert: "
        "convert first, then quantize",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--dtype", default="float32", help="storage dtype of an imported GGUF (default %(default)s: exact)"
    )
    parser.add_argument("--max-shard-size", default="5GB", help="shard above this size (default %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from puyu.model.gguf.reader import is_gguf_file

    if is_gguf_file(args.source):
        from puyu.model.gguf.importer import import_gguf

        if args.family is not None:
            raise PuyuError("--to applies to model folders; a GGUF file is written in its own architecture's layout")
        out = import_gguf(args.source, args.out, dtype=args.dtype, max_shard_size=args.max_shard_size)
        print(f"imported {args.source} to {out}")
        return 0
    if args.family is None:
        raise PuyuError("--to is required when converting a model folder (internlm2, llama or qwen2)")
    from puyu.model.convert import convert_checkpoint

    out = convert_checkpoint(args.source, args.out, args.family, max_shard_size=args.max_shard_size)
    print(f"wrote {args.family} layout to {out}")
    return 0
