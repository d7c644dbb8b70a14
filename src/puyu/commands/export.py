"""`puyu export`: an HF model folder from a training checkpoint or a run's latest one."""

from __future__ import annotations

import argparse

from puyu.model.config import FAMILIES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="write an HF model folder from a training checkpoint")
    parser.add_argument(
        "checkpoint", metavar="CKPT_OR_RUN_DIR", help="a checkpoint folder (step-*) or a run folder (its latest)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--layout", choices=FAMILIES, default=None, help="checkpoint layout (default: the model's own family)"
    )
    parser.add_argument("--dtype", default=None, help="storage dtype: bfloat16, float16, float32 (default: config's)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the run's tokenizer/)")
    parser.add_argument("--max-shard-size", default="5GB", help="shard above this size (default %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
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
