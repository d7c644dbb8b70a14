"""`puyu eval kb KB --questions FILE`: rejection, retrieval and (with a model) answer figures of a knowledge base."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "kb",
        help="evaluate a knowledge base: rejection P/R/F1, retrieval recall@k and MRR, answer correctness",
        description="Questions are JSON Lines of {question, answerable, sources, answer}. Rejection figures need "
        "a calibrated gate (`puyu kb calibrate`); answer figures need --model or --api.",
    )
    parser.add_argument("kb", help="the knowledge base folder")
    parser.add_argument("--questions", required=True, help="labelled questions (JSON Lines or a JSON list)")
    parser.add_argument("--k", type=int, default=5, help="recall@k cut-off (default %(default)s)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=None, help="HF model folder to grade answers of")
    source.add_argument("--api", default=None, help="OpenAI-compatible endpoint to grade answers of")
    parser.add_argument("--api-key", default=None, help="API key for --api")
    parser.add_argument("--api-model", default=None, help="model name at --api")
    parser.add_argument("--embedder", default=None, help="the knowledge base's own embedder, if moved")
    parser.add_argument("--out", default=None, help="write the report (and predictions) to this JSON file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from puyu.errors import PuyuError
    from puyu.eval.kb_eval import evaluate_kb
    from puyu.io import atomic_write_text
    from puyu.kb import KnowledgeBase
    from puyu.kb.embedders import load_embedder
    from puyu.kb.questions import read_labelled_questions

    if args.k < 1:
        raise PuyuError(f"--k must be at least 1, got {args.k}")
    kb = KnowledgeBase.open(args.kb, load_embedder(args.embedder) if args.embedder else "auto")
    questions = read_labelled_questions(args.questions)
    assistant = None
    if args.model or args.api:
        from puyu.client import load_client
        from puyu.kb.assistant import Assistant

        client = load_client(args.model or args.api, api_key=args.api_key, model=args.api_model, chat=True)
        assistant = Assistant(kb, client)
    report = evaluate_kb(kb, questions, k=args.k, assistant=assistant)
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(report, ensure_ascii=False, indent=1))
    report.pop("predictions", None)
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 0
