"""`puyu quantize`: weight-only int8 / int4 (optionally AWQ-calibrated) quantization of a model folder."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="quantize a model folder's weights to int8 or int4 (AWQ) for faster, smaller serving",
        description="int8: per-output-channel symmetric (puyu's layout). int4: group-wise with zero points in "
        "AutoAWQ's GEMM layout, which vLLM, LMDeploy and transformers also read. --awq searches activation-aware "
        "scales on calibration text first. The output folder loads with every puyu command (serve, chat, eval).",
    )
    parser.add_argument("model", metavar="DIR", help="HF model folder to quantize")
    parser.add_argument("--method", required=True, help="int8 or int4")
    parser.add_argument("--group-size", type=int, default=128, help="int4 group width (default %(default)s)")
    parser.add_argument("--awq", action="store_true", help="search AWQ scales on --calib text before quantizing")
    parser.add_argument("--calib", default=None, help="calibration text: .txt, or .jsonl with a 'text' field")
    parser.add_argument(
        "--calib-samples", type=int, default=64, help="calibration sequences of 512 tokens (default %(default)s)"
    )
    parser.add_argument(
        "--no-quantize-head", action="store_true", help="keep the output head unquantized (default: int8 head)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from puyu.errors import PuyuError
    from puyu.quant.loading import METHODS
    from puyu.quant.quantize import quantize_folder, read_calibration_texts

    if args.method not in METHODS:
        raise PuyuError(f"unknown --method {args.method!r} (known: {', '.join(METHODS)})")
    if args.awq and not args.calib:
        raise PuyuError("--awq needs calibration text: --calib FILE (.txt or .jsonl with a 'text' field)")
    if args.calib and not args.awq:
        raise PuyuError("--calib is only used with --awq")
    texts = read_calibration_texts(args.calib) if args.calib else None
    out = quantize_folder(
        args.model,
        args.out,
        method=args.method,
        group_size=args.group_size,
        awq=args.awq,
        calib_texts=texts,
        calib_samples=args.calib_samples,
        lm_head=not args.no_quantize_head,
    )
    print(f"wrote {args.method}{' (AWQ)' if args.awq else ''} model to {out}")
    return 0
