"""`puyu kb ask` and `puyu kb chat`: the assistant on the terminal (answers stream as they are written)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from ..generation.sampling import SamplingParams
from .answer import Answer
from .assistant import Assistant


def _assistant(args: argparse.Namespace) -> Assistant:
    from puyu.client import load_client
    from puyu.commands.kb import _open

    kb = _open(args)
    if kb.mode == "bm25":
        print("(no embedder: retrieval is BM25 only)", file=sys.stderr)
    if kb.snapshot.calibration is None and not args.no_gate:
        print("(the gate is off: the knowledge base is not calibrated; see `puyu kb calibrate`)", file=sys.stderr)
    client = load_client(args.model or args.api, api_key=args.api_key, model=args.api_model, chat=True)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature)
    return Assistant(kb, client, k=args.k, checks=args.check, params=params, use_gate=not args.no_gate)


def _print_citations(answer: Answer) -> None:
    for citation in answer.citations:
        mark = "" if citation.cited else " (not cited)"
        quote = " ".join(citation.text.split())
        print(f"  [{citation.n}] {citation.source}:{citation.start}-{citation.end}{mark}  {quote[:120]}")


async def _stream_one(assistant: Assistant, question: str, history: list[dict]) -> Answer:
    async for item in assistant.astream(question, history):
        if isinstance(item, Answer):
            if item.rejected:
                print(f"(no answer: {item.reason}; score {item.score:.3f})")
            else:
                print()
                _print_citations(item)
            return item
        print(item, end="", flush=True)
    raise AssertionError("astream ends with an Answer")


def ask_once(args: argparse.Namespace) -> int:
    assistant = _assistant(args)
    if args.json:
        print(json.dumps(assistant.ask(args.question).to_json(), ensure_ascii=False, indent=1))
        return 0
    asyncio.run(_stream_one(assistant, args.question, []))
    return 0


def chat_loop(args: argparse.Namespace) -> int:
    assistant = _assistant(args)
    history: list[dict] = []
    while True:
        try:
            question = input("> ").strip()
        except EOFError:
            print()
            return 0
        if not question:
            return 0
        answer = asyncio.run(_stream_one(assistant, question, history))
        if not answer.rejected:
            history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.answer}]
            history = history[-8:]  # the last four exchanges keep the prompt short
