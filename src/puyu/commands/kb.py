"""`puyu kb`: build, search, calibrate and ask a knowledge base.

puyu kb build DOCS… --out KB [--embedder DIR_OR_URL] [--chunk-size N]
puyu kb remove KB FILE…
puyu kb info KB
puyu kb search KB "query" [--k 5] [--mode hybrid|bm25|dense]
puyu kb calibrate KB --good good.json --bad bad.json
puyu kb ask KB "question" --model DIR | --api URL [--json]
puyu kb chat KB --model DIR | --api URL
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from puyu.errors import PuyuError


def _add_embedder_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--embedder",
        default=None,
        help="encoder folder (BERT/XLM-R with sentence-transformers pooling) or an OpenAI-compatible URL",
    )
    parser.add_argument("--embedder-model", default=None, help="model name at the --embedder URL (default: its first)")
    parser.add_argument("--embedder-key", default=None, help="API key for the --embedder URL")


def _add_answer_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", default=None, help="HF model folder to answer with")
    source.add_argument("--api", default=None, help="OpenAI-compatible endpoint to answer with")
    parser.add_argument("--api-key", default=None, help="API key for --api")
    parser.add_argument("--api-model", default=None, help="model name at --api (default: its first)")
    parser.add_argument("--k", type=int, default=4, help="chunks given to the model (default %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=384, help="most answer tokens (default %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default greedy)")
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        choices=("relevance", "unknown", "safety"),
        help="LLM post-check (repeatable): relevance of the chunks, 'says it does not know', safety",
    )
    parser.add_argument("--no-gate", action="store_true", help="answer even when the gate would refuse")
    _add_embedder_arguments(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "kb",
        help="knowledge-base assistant: build an index, search it, answer with citations",
        description="A knowledge base of your documents: structure-aware chunks with character spans, an "
        "incremental index, BM25 (offline default) plus dense vectors fused by RRF, a refuse-to-answer gate "
        "calibrated on labelled questions, and answers that cite their sources.",
    )
    commands = parser.add_subparsers(dest="kb_command", metavar="ACTION", required=True)

    build = commands.add_parser("build", help="build or update a knowledge base (only changed files are redone)")
    build.add_argument(
        "docs", nargs="+", help="files and folders: txt, md, html, pdf, jsonl, csv, docx, pptx, xlsx, code"
    )
    build.add_argument("--out", required=True, help="the knowledge base folder")
    build.add_argument("--chunk-size", type=int, default=None, help="most characters per chunk (default 800)")
    build.add_argument("--tokenizer", choices=("bigram", "jieba"), default=None, help="BM25 terms for Chinese")
    build.add_argument("--json", action="store_true", help="print the build report as JSON")
    _add_embedder_arguments(build)
    build.set_defaults(handler=run_build)

    remove = commands.add_parser("remove", help="drop files from a knowledge base")
    remove.add_argument("kb", help="the knowledge base folder")
    remove.add_argument("files", nargs="+", help="files to drop, as they were named when built")
    remove.set_defaults(handler=run_remove)

    info = commands.add_parser("info", help="what a knowledge base holds")
    info.add_argument("kb", help="the knowledge base folder")
    info.set_defaults(handler=run_info)

    search = commands.add_parser("search", help="the best chunks for a query")
    search.add_argument("kb", help="the knowledge base folder")
    search.add_argument("query", help="the query")
    search.add_argument("--k", type=int, default=5, help="how many chunks (default %(default)s)")
    search.add_argument("--mode", choices=("hybrid", "bm25", "dense"), default=None, help="default: hybrid if it can")
    search.add_argument("--json", action="store_true", help="print JSON")
    _add_embedder_arguments(search)
    search.set_defaults(handler=run_search)

    calibrate = commands.add_parser("calibrate", help="fit the refuse-to-answer gate on labelled questions")
    calibrate.add_argument("kb", help="the knowledge base folder")
    calibrate.add_argument("--good", required=True, help="JSON list of questions the knowledge base should answer")
    calibrate.add_argument("--bad", required=True, help="JSON list of questions it should refuse")
    calibrate.add_argument("--folds", type=int, default=5, help="cross-validation folds (default %(default)s)")
    calibrate.add_argument("--json", action="store_true", help="print the calibration as JSON")
    judge = calibrate.add_mutually_exclusive_group()
    judge.add_argument("--model", default=None, help="add this model's relevance score (0-10) as a signal")
    judge.add_argument("--api", default=None, help="the same, from an OpenAI-compatible endpoint")
    calibrate.add_argument("--api-key", default=None, help="API key for --api")
    calibrate.add_argument("--api-model", default=None, help="model name at --api")
    _add_embedder_arguments(calibrate)
    calibrate.set_defaults(handler=run_calibrate)

    ask = commands.add_parser("ask", help="answer one question with citations (or refuse)")
    ask.add_argument("kb", help="the knowledge base folder")
    ask.add_argument("question", help="the question")
    ask.add_argument("--json", action="store_true", help="print the answer as JSON")
    _add_answer_arguments(ask)
    ask.set_defaults(handler=run_ask)

    chat = commands.add_parser("chat", help="ask questions in a loop (an empty line or Ctrl-D ends)")
    chat.add_argument("kb", help="the knowledge base folder")
    _add_answer_arguments(chat)
    chat.set_defaults(handler=run_chat)


def _embedder(args: argparse.Namespace) -> Any:
    from puyu.kb.embedders import load_embedder

    if args.embedder is None:
        return None
    return load_embedder(args.embedder, model=args.embedder_model, api_key=args.embedder_key)


def _open(args: argparse.Namespace) -> Any:
    from puyu.kb import KnowledgeBase

    embedder = _embedder(args)
    return KnowledgeBase.open(args.kb, embedder if embedder is not None else "auto")


def run_build(args: argparse.Namespace) -> int:
    from puyu.kb import build

    report = build(args.docs, args.out, embedder=_embedder(args), chunk_size=args.chunk_size, tokenizer=args.tokenizer)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=1))
        return 0
    mode = f"dense: {report.embedder}" if report.embedder else "no embedder: BM25 only"
    print(
        f"{args.out} v{report.version}: {report.documents} documents, {report.chunks} chunks ({mode}); "
        f"added {len(report.added)}, changed {len(report.changed)}, removed {len(report.removed)}, "
        f"unchanged {report.unchanged}; {report.embedded} chunks embedded in {report.seconds:.1f}s"
    )
    if report.problem_count:
        print(f"{report.problem_count} problems (files skipped or partly read):", file=sys.stderr)
        for problem in report.problems[:20]:
            print(f"  {problem['source']}: {problem['message']}", file=sys.stderr)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from puyu.kb import build

    report = build([], args.kb, remove=args.files)
    if not report.removed:
        raise PuyuError(f"{args.kb}: none of {', '.join(args.files)} is in the knowledge base")
    print(f"{args.kb} v{report.version}: removed {', '.join(report.removed)}; {report.chunks} chunks left")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from puyu.kb import KnowledgeBase

    kb = KnowledgeBase.open(args.kb, embedder=None)
    info = kb.describe()
    info["retrieval"] = "hybrid" if info["embedder"] else "bm25 (no embedder)"
    calibration = kb.snapshot.calibration
    info["gate"] = (
        {key: calibration[key] for key in ("features", "cv", "single_threshold", "good", "bad", "kb_version")}
        if calibration
        else "off (not calibrated: run `puyu kb calibrate`)"
    )
    print(json.dumps(info, ensure_ascii=False, indent=1))
    return 0


def run_search(args: argparse.Namespace) -> int:
    kb = _open(args)
    hits = kb.search(args.query, k=args.k, mode=args.mode)
    if args.json:
        print(json.dumps([hit.to_json() for hit in hits], ensure_ascii=False, indent=1))
        return 0
    if kb.mode == "bm25":
        print("(no embedder: BM25 only)", file=sys.stderr)
    for rank, hit in enumerate(hits, start=1):
        where = f"{hit.chunk.source}:{hit.chunk.start}-{hit.chunk.end}"
        head = f" [{hit.chunk.heading}]" if hit.chunk.heading else ""
        print(f"{rank}. {hit.score:.4f} {where}{head}\n   {' '.join(hit.chunk.text.split())[:200]}")
    return 0


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def run_calibrate(args: argparse.Namespace) -> int:
    from puyu.kb.questions import calibrate_kb, read_question_list

    kb = _open(args)
    client = None
    if args.model or args.api:
        from puyu.client import load_client

        client = load_client(args.model or args.api, api_key=args.api_key, model=args.api_model, chat=True)
    good, bad = read_question_list(args.good), read_question_list(args.bad)
    calibration = calibrate_kb(kb, good, bad, folds=args.folds, client=client)
    if args.json:
        print(json.dumps(calibration, indent=1))
        return 0
    cv, single = calibration["cv"], calibration["single_threshold"]
    print(
        f"gate over {', '.join(calibration['features'])}; {calibration['good']} good, {calibration['bad']} bad, "
        f"{calibration['folds']}-fold cross-validation"
    )
    for name, scores in (("calibrated gate", cv), (f"single threshold on {single['feature']}", single)):
        low, high = scores["f1_95"]
        print(
            f"  {name}: precision {_percent(scores['precision'])} recall {_percent(scores['recall'])} "
            f"F1 {_percent(scores['f1'])} (95% {_percent(low)}-{_percent(high)})"
        )
    print(f"stored in {kb.snapshot.folder / 'calibration.json'}")
    return 0


def run_ask(args: argparse.Namespace) -> int:
    from puyu.kb.cli_answers import ask_once

    return ask_once(args)


def run_chat(args: argparse.Namespace) -> int:
    from puyu.kb.cli_answers import chat_loop

    return chat_loop(args)
