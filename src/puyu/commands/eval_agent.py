"""`puyu eval tools`: tool-call accuracy (T-Eval-like JSONL) and agentic GSM8K (the agent with the interpreter)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tools", help="tool-use evaluation: tool-call accuracy and agentic GSM8K")
    parser.add_argument("model", help="HF model folder or OpenAI-compatible endpoint URL")
    parser.add_argument("--calls", default=None, metavar="JSONL", help="tool-call samples (see docs/agent.md)")
    parser.add_argument("--gsm8k", default=None, metavar="DIR", help="GSM8K folder (test.jsonl): agentic GSM8K")
    parser.add_argument("--protocol", default="auto", choices=["auto", "openai", "react", "internlm2"])
    parser.add_argument("--limit", type=int, default=None, help="at most N samples per part")
    parser.add_argument("--max-turns", type=int, default=6, help="agent turns per GSM8K problem")
    parser.add_argument("--out", default="eval-tools-out", help="output folder (summary.json, predictions)")
    parser.add_argument("--api-key", default=None, help="API key for an endpoint")
    parser.add_argument("--api-model", default=None, help="model name at the endpoint")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from puyu.client import load_client
    from puyu.errors import PuyuError
    from puyu.eval.tasks.gsm8k import load_gsm8k
    from puyu.eval.tool_use import evaluate_gsm8k_agent, evaluate_tool_calls, load_tool_call_samples
    from puyu.io import atomic_write_text

    if not args.calls and not args.gsm8k:
        raise PuyuError("give --calls JSONL and/or --gsm8k DIR")
    if args.limit is not None and args.limit < 1:
        raise PuyuError("--limit must be >= 1")
    model = load_client(args.model, api_key=args.api_key, model=args.api_model, chat=True)
    out = Path(args.out)
    summary: dict[str, dict] = {}
    if args.calls:
        metrics, records = evaluate_tool_calls(model, load_tool_call_samples(args.calls, args.limit), args.protocol)
        summary["tool_calls"] = metrics
        atomic_write_text(out / "tool_calls.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    if args.gsm8k:
        task = load_gsm8k(Path(args.gsm8k), shots=0, limit=args.limit)
        questions = [
            (doc.query.removeprefix("Question: ").removesuffix("\nAnswer:"), str(doc.gold)) for doc in task.docs
        ]
        metrics, records = evaluate_gsm8k_agent(model, questions, out / "workspace", args.protocol, args.max_turns)
        summary["gsm8k_agent"] = metrics
        atomic_write_text(out / "gsm8k_agent.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0
