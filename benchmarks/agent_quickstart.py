"""The quickstart's fine-tuned model as a calculator agent on the held-out arithmetic requests.

Runs puyu's Agent (the calculator tool with the schema the model was fine-tuned on, the native `openai` protocol
through the model's own chat template, at most two model calls) on a finished quickstart run's merged SFT model and
`tool_requests.jsonl`, and, side by side, the quickstart's own two-turn tool check on the same model. A call is
right when it names the calculator and its expression evaluates to the expected number; an answer is right when it
contains that number.

    .venv/bin/python benchmarks/agent_quickstart.py runs/quickstart [--limit 60]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from puyu.agent.calculator import calculate
from puyu.agent.events import AnswerEvent, ToolCallEvent
from puyu.agent.loop import Agent
from puyu.agent.tools import SchemaTool
from puyu.client import load_client
from puyu.errors import PuyuError
from puyu.generation.sampling import SamplingParams
from puyu.pipeline.calculator import CALCULATOR_TOOL, evaluate
from puyu.pipeline.toolcheck import check_tool_calls


def _one(run: Path, pattern: str) -> Path:
    found = sorted(run.glob(pattern))
    if not found:
        raise SystemExit(f"{run}: no {pattern} (is it a finished quickstart run?)")
    return found[-1]


def _value(expression: object) -> int | None:
    try:
        return evaluate(expression) if isinstance(expression, str) else None
    except PuyuError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a quickstart output folder")
    parser.add_argument("--limit", type=int, default=None, help="at most N requests")
    args = parser.parse_args()
    model_dir = _one(args.run, "stages/merge-*/model")
    requests_file = _one(args.run, "stages/world-*/eval/tool_requests.jsonl")
    rows = [json.loads(line) for line in requests_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[: args.limit] if args.limit else rows

    function = CALCULATOR_TOOL["function"]
    calculator = SchemaTool(
        function["name"], function["description"], function["parameters"], lambda expression: calculate(expression)
    )
    params = SamplingParams(max_tokens=48, temperature=0.0)
    agent = Agent(load_client(str(model_dir)), [calculator], "openai", max_turns=2, params=params)
    calls_right = answers_right = 0
    for row in rows:
        events = list(agent.run(row["question"]))
        call = next((e for e in events if isinstance(e, ToolCallEvent)), None)
        answer = next((e.content for e in events if isinstance(e, AnswerEvent)), "")
        expression = call.arguments.get("expression") if call and isinstance(call.arguments, dict) else None
        calls_right += call is not None and call.name == "calculator" and _value(expression) == int(row["answer"])
        answers_right += row["answer"] in answer
    n = max(len(rows), 1)
    check = check_tool_calls(model_dir, requests_file, len(rows))["summary"]
    print(f"model: {model_dir}\nrequests: {len(rows)}\n")
    print("| runner | call accuracy | final-answer accuracy |\n|---|---|---|")
    print(f"| puyu Agent (openai protocol) | {100 * calls_right / n:.1f}% | {100 * answers_right / n:.1f}% |")
    print(f"| quickstart tool check | {check['call_accuracy']:.1f}% | {100 * check['correct_answers'] / n:.1f}% |")


if __name__ == "__main__":
    main()
