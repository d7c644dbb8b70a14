"""Does a chat model call the `calculator` tool correctly on held-out arithmetic requests?

Each request is asked with the calculator offered. A call counts as correct when it names `calculator`
and its `expression` evaluates to the expected number; the calculator's result is then sent back and the
final reply counts as correct when it contains that number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from puyu.errors import PuyuError
from puyu.pipeline.calculator import CALCULATOR_TOOL, evaluate


def _expression(call: dict[str, Any]) -> str | None:
    function = call.get("function", call)
    if function.get("name") != "calculator":
        return None
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    return arguments.get("expression") if isinstance(arguments, dict) else None


def _value(expression: str | None) -> int | None:
    if not isinstance(expression, str):
        return None
    try:
        return evaluate(expression)
    except PuyuError:
        return None


def check_tool_calls(model_dir: str | Path, requests_file: str | Path, limit: int | None = None) -> dict[str, Any]:
    """Run the check with greedy decoding, all requests batched through the engine.

    Args:
        model_dir: an HF model folder (a quantized one loads too).
        requests_file: JSONL of `{"question", "expression", "answer", "id"}`.
        limit: check at most this many requests.

    Returns:
        {"summary": {"requests", "called", "correct_calls", "correct_answers", "call_accuracy"}, "rows": [...]}.
    """
    from puyu.engine.llm import LLM
    from puyu.generation.sampling import SamplingParams

    rows = [json.loads(line) for line in Path(requests_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:limit] if limit is not None else rows
    llm = LLM(model_dir, dtype="float32")
    params = SamplingParams(max_tokens=48, temperature=0.0)
    tools = [CALCULATOR_TOOL]
    conversations: list[list[dict[str, Any]]] = [[{"role": "user", "content": row["question"]}] for row in rows]
    replies = llm.chat(conversations, params, tools=tools)
    expressions = [_expression(reply.tool_calls[0]) if reply.tool_calls else None for reply in replies]

    # Second turn: the calculator's result goes back to every conversation that called it.
    followups = []
    for conversation, reply, expression in zip(conversations, replies, expressions, strict=True):
        if reply.tool_calls:
            result = _value(expression)
            conversation += [
                {"role": "assistant", "content": reply.content, "tool_calls": [reply.tool_calls[0]]},
                {"role": "tool", "name": "calculator", "content": str(result) if result is not None else "error"},
            ]
            followups.append(conversation)
    finals = iter(llm.chat(followups, params, tools=tools) if followups else [])

    results = []
    for row, reply, expression in zip(rows, replies, expressions, strict=True):
        expected = int(row["answer"])
        final = next(finals).content if reply.tool_calls else None
        results.append(
            {
                "id": row["id"],
                "question": row["question"],
                "expected_expression": row["expression"],
                "expression": expression,
                "correct_call": _value(expression) == expected,
                "final": final,
                "correct_answer": final is not None and str(expected) in final,
            }
        )
    n = max(len(results), 1)
    summary = {
        "requests": len(results),
        "called": sum(r["expression"] is not None for r in results),
        "correct_calls": sum(r["correct_call"] for r in results),
        "correct_answers": sum(r["correct_answer"] for r in results),
        "call_accuracy": round(100.0 * sum(r["correct_call"] for r in results) / n, 1),
    }
    return {"summary": summary, "rows": results}
