"""`puyu eval needle` and `puyu eval judge`: long-context retrieval and LLM-as-a-judge grading.

`register(subparsers)` adds both to the subcommands of `puyu eval`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `needle`, `judge` and `kb` subcommands."""
    add_needle_command(subparsers)
    add_judge_command(subparsers)
    from puyu.commands import eval_kb

    eval_kb.register(subparsers)


def _csv(kind: type) -> Any:
    def parse(text: str) -> list[Any]:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None

    return parse


def _add_model_source(parser: argparse.ArgumentParser, flag: str, what: str) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(flag, dest="model", metavar="DIR|URL", help=f"{what}: an HF model folder or an http(s) URL")
    source.add_argument("--api", dest="model", metavar="URL", help=f"{what}: an OpenAI-compatible base URL")
    parser.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY or none)")
    parser.add_argument("--api-model", default=None, help="model name to request from the API (default: its first)")
    parser.add_argument("--device", default="auto", help="device for a local model (default auto)")


def _load_model(spec: str, args: argparse.Namespace, chat: bool | None) -> Any:
    from puyu.eval.models import load_client

    return load_client(spec, api_key=args.api_key, model=args.api_model, device=args.device, chat=chat)


# ---------------------------------------------------------------------------------------------- needle


def add_needle_command(subparsers: argparse._SubParsersAction) -> None:
    from puyu.eval.needle import DEFAULT_ANSWER, DEFAULT_NEEDLE, DEFAULT_QUESTION

    parser = subparsers.add_parser(
        "needle",
        help="needle-in-a-haystack test: find one planted sentence across context lengths and depths",
        description="Plants NEEDLE at each depth of a filler text cut to each context length, asks QUESTION, "
        "scores the answers and writes results.json/csv, heatmap.png and summary.md to --out.",
    )
    _add_model_source(parser, "--model", "the model to test")
    parser.add_argument("--haystack", required=True, metavar="FILE", help="filler text (repeated when too short)")
    parser.add_argument(
        "--lengths", type=_csv(int), default=[256, 512, 1024], help="context lengths in tokens (default 256,512,1024)"
    )
    parser.add_argument(
        "--depths", type=_csv(float), default=[0, 25, 50, 75, 100], help="needle depths in %% (default 0,25,50,75,100)"
    )
    parser.add_argument("--needle", default=DEFAULT_NEEDLE, help="the sentence to plant")
    parser.add_argument("--question", default=DEFAULT_QUESTION, help="the question the needle answers")
    parser.add_argument(
        "--answer",
        action="append",
        default=None,
        help=f"expected keyword (repeatable; all must appear for a full score) (default: {', '.join(DEFAULT_ANSWER)})",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (reruns resume from it)")
    parser.add_argument("--max-tokens", type=int, default=64, help="answer budget in tokens (default 64)")
    parser.add_argument(
        "--chars-per-token",
        type=float,
        default=None,
        help="measure lengths as characters / this (default: the local model's tokenizer; 4 for APIs)",
    )
    chat = parser.add_mutually_exclusive_group()
    chat.add_argument("--chat", dest="chat", action="store_true", default=True, help="ask via chat (default)")
    chat.add_argument("--no-chat", dest="chat", action="store_false", help="plain completion prompt")
    parser.set_defaults(handler=run_needle_command)


def run_needle_command(args: argparse.Namespace) -> int:
    from puyu.errors import PuyuError
    from puyu.eval.needle import DEFAULT_ANSWER, run_needle

    haystack = Path(args.haystack)
    if not haystack.is_file():
        raise PuyuError(f"{haystack}: no such file")
    model = _load_model(args.model, args, args.chat)
    tokenizer = None
    if args.chars_per_token is None and getattr(model, "tokenizer", None) is None and Path(args.model).is_dir():
        from puyu.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_pretrained(args.model)
    report = run_needle(
        model,
        haystack.read_text(encoding="utf-8"),
        context_lengths=args.lengths,
        depths=args.depths,
        needle=args.needle,
        question=args.question,
        answer=args.answer or DEFAULT_ANSWER,
        out_dir=args.out,
        tokenizer=tokenizer,
        chars_per_token=args.chars_per_token,
        chat=args.chat,
        max_tokens=args.max_tokens,
    )
    mean = report.mean_score
    print(f"{report.model}: mean needle score {'n/a' if mean is None else f'{mean:.3f}'}")
    for path in report.files.values():
        print(path)
    return 0


# ---------------------------------------------------------------------------------------------- judge


def add_judge_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "judge",
        help="LLM-as-a-judge: rate answers 1-10, or compare two answers with position swap",
        description="Input: JSONL of {question, answer} (single), of {question, answer_a, answer_b} (pairwise), "
        "or two answer files (--input A.jsonl --against B.jsonl). Writes judgments.jsonl, summary.json "
        "and summary.md to --out; reruns reuse the judgments already there.",
    )
    _add_model_source(parser, "--judge", "the judge")
    parser.add_argument("--input", required=True, metavar="FILE", help="answers to judge (JSONL)")
    parser.add_argument("--against", default=None, metavar="FILE", help="second answer file (pairwise)")
    parser.add_argument("--mode", choices=["single", "pairwise"], default=None, help="default: pairwise with --against")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--max-tokens", type=int, default=512, help="judge's token budget (default 512)")
    parser.add_argument("--batch-size", type=int, default=16, help="items per judge call (default 16)")
    parser.set_defaults(handler=run_judge_command)


def run_judge_command(args: argparse.Namespace) -> int:
    from puyu.eval.judge import run_judge
    from puyu.eval.models import greedy_params

    mode = args.mode or ("pairwise" if args.against else "single")
    judge = _load_model(args.model, args, True)
    report = run_judge(
        judge,
        args.input,
        mode=mode,
        out_dir=args.out,
        against=args.against,
        params=greedy_params(args.max_tokens),
        batch_size=args.batch_size,
    )
    # The heading and the summary table; the per-item table stays in the file.
    blocks = report.files["summary_md"].read_text(encoding="utf-8").split("\n\n")
    print("\n\n".join(blocks[:2]))
    print(f"per-item judgments: {report.files['judgments']}")
    return 0
