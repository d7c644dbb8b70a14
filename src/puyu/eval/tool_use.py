"""Tool-use evaluation: scoring tool calls (T-Eval-like) and agentic GSM8K (the agent with the interpreter).

Tool-call JSONL, one sample per line:

    {"id": "1",
     "query": "What is 12 * 7?",                 # or "messages": [OpenAI chat messages]
     "tools": ["calculator"],                    # built-in names and/or OpenAI function specs
     "calls": [{"name": "calculator", "arguments": {"expression": "12 * 7"}}],
     "results": ["84"],                          # optional: canned tool results, one per expected call
     "answer": "84"}                             # optional: the expected final answer (needs "results")

A call is right when its name matches exactly and its arguments are equal after normalisation (keys in any order,
whitespace collapsed, case ignored in strings, numbers compared as numbers, "12*7" == "12 * 7"). The final answer is
asked for with the expected calls' canned results fed back, and scored by number when it is one, else by text.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from puyu.agent.builtin_tools import BUILTIN_TOOLS, builtin
from puyu.agent.protocols import make_protocol
from puyu.agent.protocols.base import AgentProtocol
from puyu.agent.tools import SchemaTool, Tool
from puyu.client import ModelClient, ToolCall
from puyu.errors import PuyuError
from puyu.eval.extract import extract_number, normalize_number
from puyu.eval.tasks.base import iter_jsonl
from puyu.generation.sampling import SamplingParams

LAYOUT = 'tool-call JSONL: {"query" or "messages", "tools", "calls": [{"name", "arguments"}], "results"?, "answer"?}'


@dataclasses.dataclass
class ToolCallSample:
    id: str
    messages: list[dict]
    tools: list[Tool]
    calls: list[dict]
    results: list[str] | None = None
    answer: str | None = None


def _not_executed(**_: Any) -> str:
    raise RuntimeError("evaluation tools are never executed")


def _tools(entries: Any, where: str) -> list[Tool]:
    if not isinstance(entries, list) or not entries:
        raise PuyuError(f"{where}: 'tools' must be a non-empty list ({LAYOUT})")
    tools: list[Tool] = []
    for entry in entries:
        if isinstance(entry, str) and entry in BUILTIN_TOOLS.names():
            tools += builtin(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("function"), dict) and entry["function"].get("name"):
            function = entry["function"]
            parameters = function.get("parameters") or {"type": "object", "properties": {}}
            tools.append(SchemaTool(function["name"], function.get("description", ""), parameters, _not_executed))
        else:
            raise PuyuError(f"{where}: unknown tool entry {entry!r} (a built-in name or an OpenAI function spec)")
    return tools


def load_tool_call_samples(path: str | Path, limit: int | None = None) -> list[ToolCallSample]:
    """Read a tool-call JSONL file (see the module docstring); malformed lines raise `PuyuError` naming them."""
    path = Path(path)
    samples = []
    for number, record in iter_jsonl(path, layout=LAYOUT):
        where = f"{path}:{number}"
        messages = record.get("messages") or (
            [{"role": "user", "content": record["query"]}] if isinstance(record.get("query"), str) else None
        )
        calls = record.get("calls")
        if not isinstance(messages, list) or not isinstance(calls, list):
            raise PuyuError(f"{where}: needs 'query' or 'messages', and 'calls' ({LAYOUT})")
        if any(not isinstance(c, dict) or not isinstance(c.get("name"), str) for c in calls):
            raise PuyuError(f"{where}: each call needs a 'name' and 'arguments' ({LAYOUT})")
        results = record.get("results")
        if results is not None and (not isinstance(results, list) or len(results) != len(calls)):
            raise PuyuError(f"{where}: 'results' needs one entry per expected call")
        samples.append(
            ToolCallSample(
                id=str(record.get("id", number)),
                messages=messages,
                tools=_tools(record.get("tools"), where),
                calls=calls,
                results=[r if isinstance(r, str) else json.dumps(r) for r in results] if results else None,
                answer=None if record.get("answer") is None else str(record["answer"]),
            )
        )
        if limit is not None and len(samples) >= limit:
            break
    return samples


def normalize_value(value: Any) -> Any:
    """Arguments in a comparable form: numbers (also numeric strings) as floats, strings folded, dicts by key."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        number = normalize_number(value)
        if number is not None:
            return float(number)
        return re.sub(r"\s+", "", value).casefold()
    if isinstance(value, dict):
        return {str(k).strip(): normalize_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize_value(v) for v in value]
    return value


def calls_match(predicted: list[ToolCall], expected: list[dict]) -> tuple[bool, bool]:
    """(names right, names and arguments right), order-insensitive."""
    names = sorted(c.name for c in predicted) == sorted(c["name"] for c in expected)
    if not names:
        return False, False
    remaining = [(c["name"], normalize_value(c.get("arguments", {}))) for c in expected]
    for call in predicted:
        key = (call.name, normalize_value(call.arguments))
        if key not in remaining:
            return True, False
        remaining.remove(key)
    return True, True


def answer_matches(predicted: str, expected: str) -> bool:
    expected_number = normalize_number(expected)
    if expected_number is not None:
        return extract_number(predicted) == expected_number
    return normalize_value(expected) in normalize_value(predicted)


def evaluate_tool_calls(
    model: ModelClient,
    samples: list[ToolCallSample],
    protocol: str | AgentProtocol = "auto",
    params: SamplingParams | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Score each sample's first turn (the calls) and, where given, the answer after canned results.

    Returns (metrics, one prediction record per sample).
    """
    params = params or SamplingParams(max_tokens=256, temperature=0.0)
    tools = [t for sample in samples for t in sample.tools]
    chosen = make_protocol(protocol, model, tools)
    records, names_right, calls_right, answers_right, answered, parse_errors = [], 0, 0, 0, 0, 0
    for sample in samples:
        turn = chosen.step(model, sample.messages, sample.tools, params, False)
        parse_errors += turn.error is not None
        name_ok, call_ok = calls_match(turn.calls, sample.calls)
        names_right += name_ok
        calls_right += call_ok
        record: dict[str, Any] = {
            "id": sample.id,
            "raw": turn.raw,
            "calls": [{"name": c.name, "arguments": c.arguments} for c in turn.calls],
            "name_correct": name_ok,
            "call_correct": call_ok,
            "parse_error": turn.error,
        }
        if sample.answer is not None and sample.results is not None:
            expected = [ToolCall(name=c["name"], arguments=c.get("arguments", {}), id=f"call_{i}")
                        for i, c in enumerate(sample.calls)]  # fmt: skip
            history = [
                *sample.messages,
                {"role": "assistant", "content": "", "tool_calls": [c.to_openai() for c in expected]},
            ]
            history += [
                {"role": "tool", "tool_call_id": c.id, "name": c.name, "content": result}
                for c, result in zip(expected, sample.results, strict=True)
            ]
            final = chosen.step(model, history, sample.tools, params, True)
            answered += 1
            record["answer"] = final.content
            record["answer_correct"] = answer_matches(final.content, sample.answer)
            answers_right += record["answer_correct"]
        records.append(record)
    total = max(len(samples), 1)
    metrics = {
        "samples": float(len(samples)),
        "name_accuracy": names_right / total,
        "call_accuracy": calls_right / total,
        "parse_error_rate": parse_errors / total,
    }
    if answered:
        metrics["answer_accuracy"] = answers_right / answered
    return metrics, records


GSM8K_AGENT_PROMPT = (
    "Solve the problem. You can run Python code to compute. "
    "End with 'The answer is N.' where N is the final number.\n\n{question}"
)


def evaluate_gsm8k_agent(
    model: ModelClient,
    questions: list[tuple[str, str]],
    workspace: str | Path,
    protocol: str = "auto",
    max_turns: int = 6,
    params: SamplingParams | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Agentic GSM8K: the agent with the sandboxed interpreter answers each (question, gold number).

    Returns (metrics: accuracy and the share of problems where the interpreter ran, prediction records).
    """
    from puyu.agent.loop import Agent

    agent = Agent(model, builtin("python"), protocol, max_turns=max_turns, params=params, workspace=workspace)
    records, right, used = [], 0, 0
    for index, (question, gold) in enumerate(questions):
        session = agent.new_session(f"gsm8k-{index}")
        try:
            events = list(agent.run(GSM8K_AGENT_PROMPT.format(question=question), session))
        finally:
            session.close()
        answer = next((e.content for e in reversed(events) if e.type == "answer"), "")
        predicted = extract_number(answer)
        calls = sum(e.type == "tool_call" for e in events)
        correct = predicted is not None and predicted == normalize_number(gold)
        right += correct
        used += calls > 0
        records.append({"id": str(index), "answer": answer, "predicted": predicted, "gold": gold,
                        "correct": correct, "tool_calls": calls})  # fmt: skip
    total = max(len(questions), 1)
    return {"samples": float(len(questions)), "accuracy": right / total, "interpreter_use": used / total}, records
