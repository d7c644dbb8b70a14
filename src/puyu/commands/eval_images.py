"""`puyu eval image-qa`: multiple-choice or short-answer questions about local images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `image-qa` subcommand of `puyu eval`."""
    parser = subparsers.add_parser(
        "image-qa",
        help="image question answering over a qa.jsonl (e.g. `puyu data image-world`'s)",
        description="Asks a vision model each question with its image (base64 image_url part) and scores the "
        "greedy reply: the option letter (--mode choice) or the first word (--mode short).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="DIR", help="an InternVL model folder (in-process)")
    source.add_argument("--api", metavar="URL", help="an OpenAI-compatible base URL serving a vision model")
    parser.add_argument("--api-key", default=None, help="API key for --api (default: $OPENAI_API_KEY or none)")
    parser.add_argument("--api-model", default=None, help="model name to request from --api (default: its first)")
    parser.add_argument("--data", required=True, metavar="JSONL", help="qa.jsonl: image, question, answer, choices")
    parser.add_argument("--mode", choices=("choice", "short"), default="choice", help="scoring (default choice)")
    parser.add_argument("--limit", type=int, default=None, help="at most N questions")
    parser.add_argument("--max-tokens", type=int, default=8, help="reply budget (default 8)")
    parser.add_argument("--out", default=None, metavar="FILE", help="write predictions and scores here (JSON)")
    parser.add_argument("--device", default="auto", help="device for --model (default auto)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from puyu.errors import PuyuError
    from puyu.eval.image_qa import evaluate_image_qa, load_records, local_chat
    from puyu.io import atomic_write_text

    if args.limit is not None and args.limit < 1:
        raise PuyuError("--limit must be >= 1")
    records = load_records(args.data, args.limit)
    if args.model:
        from puyu.engine.llm import LLM

        chat = local_chat(LLM(args.model, device=args.device))
        name = Path(args.model).name
    else:
        from puyu.eval.openai_model import OpenAIModel

        chat = OpenAIModel(args.api, api_key=args.api_key, model=args.api_model, chat=True).chat
        name = args.api
    result = evaluate_image_qa(chat, records, args.mode, max_tokens=args.max_tokens)
    kinds = ", ".join(f"{kind or 'all'} {value:.3f}" for kind, value in result.by_kind.items())
    print(f"{name}: image-qa ({result.mode}) accuracy {result.accuracy:.3f} over {result.count} ({kinds})")
    if args.out:
        body = {"model": name, "mode": result.mode, "accuracy": result.accuracy, "count": result.count,
                "by_kind": result.by_kind, "predictions": result.predictions}  # fmt: skip
        atomic_write_text(Path(args.out), json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return 0
