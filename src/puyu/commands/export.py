"""`puyu export`: an HF model folder from a training checkpoint or a run's latest one, or a GGUF file from a
model folder (`--format gguf`)."""

from __future__ import annotations

import argparse

from puyu.errors import PuyuError
from puyu.model.config import FAMILIES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write an HF model folder from a training checkpoint, or a GGUF file from a model folder"
    )
    parser.add_argument(
        "checkpoint",
        metavar="CKPT_OR_RUN_DIR",
        help="a checkpoint folder (step-*) or a run folder (its latest); with --format gguf, an HF model folder",
    )
    parser.add_argument("--out", default=None, help="output folder (gguf: output file, default inside the folder)")
    parser.add_argument("--format", choices=("hf", "gguf"), default="hf", help="output format (default %(default)s)")
    parser.add_argument(
        "--type",
        dest="gguf_type",
        choices=("f32", "f16", "bf16", "q8_0", "q4_0"),
        default="f16",
        help="GGUF tensor type of the 2-D weights (default %(default)s)",
    )
    parser.add_argument("--ollama", action="store_true", help="gguf: also write an Ollama Modelfile beside the file")
    parser.add_argument(
        "--layout", choices=FAMILIES, default=None, help="checkpoint layout (default: the model's own family)"
    )
    parser.add_argument("--dtype", default=None, help="storage dtype: bfloat16, float16, float32 (default: config's)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the run's tokenizer/)")
    parser.add_argument("--max-shard-size", default="5GB", help="shard above this size (default %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "gguf":
        return _run_gguf(args)
    if args.out is None:
        raise PuyuError("--out is required (the folder to write)")
    from puyu.train.export import export_checkpoint, find_tokenizer, resolve_checkpoint

    checkpoint = resolve_checkpoint(args.checkpoint)
    tokenizer = find_tokenizer(checkpoint, args.tokenizer)
    out = export_checkpoint(
        checkpoint,
        args.out,
        family=args.layout,
        dtype=args.dtype,
        tokenizer=tokenizer,
        max_shard_size=args.max_shard_size,
    )
    print(f"exported {checkpoint} to {out}")
    if tokenizer is None:
        print("no tokenizer copied: the run saved none; pass --tokenizer DIR")
    return 0


def _run_gguf(args: argparse.Namespace) -> int:
    from puyu.model.gguf.exporter import export_gguf

    result = export_gguf(args.checkpoint, args.out, qtype=args.gguf_type, ollama=args.ollama)
    print(f"wrote {result.path} ({args.gguf_type}, {result.path.stat().st_size / 1e6:.1f} MB)")
    if result.modelfile is not None:
        print(f"wrote {result.modelfile} (ollama create NAME -f {result.modelfile})")
    for note in result.notes:
        print(f"note: {note}")
    return 0
