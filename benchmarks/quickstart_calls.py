"""Does the quickstart's pretrained model copy operands into a calculator call, before any fine-tuning?

For each held-out calculator request of a `puyu quickstart` run, the model completes the pretraining
corpus's own layout, `To work out {a} {op in words} {b}, call the calculator: {"name": "calculator",
"parameters": {"expression": "`, greedily. Counted: calls exactly right, first and second operands right,
and the share of operand digits right in place. The calls of the SFT model rest on this copying; it forms
in pretraining or not at all (docs/quickstart.md), so this is the check for a pretraining change, and it
needs only the run's world and pretrain stages (`puyu quickstart --until pretrain`). When the run has a
merged SFT model, it is asked the same way too.

    .venv/bin/python benchmarks/quickstart_calls.py runs/quickstart
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from puyu.engine.llm import LLM
from puyu.generation.sampling import SamplingParams
from puyu.pipeline.calculator import OPERATOR_WORDS
from puyu.pipeline.stages import StageRecord, read_summary


def _stages(run: Path) -> dict[str, StageRecord]:
    records = read_summary(run)
    if "world" not in records or "pretrain" not in records:
        raise SystemExit(
            f"{run}: the world and pretrain stages have not finished "
            f"(run `puyu quickstart --out {run} --until pretrain` first)"
        )
    return records


def prompt(expression: str) -> str:
    a, op, b = expression.split(" ")
    return (
        f"To work out {a} {OPERATOR_WORDS[op]} {b}, call the calculator: "
        '{"name": "calculator", "parameters": {"expression": "'
    )


def score(calls: list[str], expected: list[str]) -> dict[str, float]:
    """Percentages: exact calls, first and second operands, operand digits right in their place."""
    exact = first = second = digits = total = 0
    for call, want in zip(calls, expected, strict=True):
        got, parts = call.split(" "), want.split(" ")
        exact += call == want
        total += len(parts[0]) + len(parts[2])
        if len(got) != 3:
            continue
        first += got[0] == parts[0]
        second += got[2] == parts[2]
        digits += sum(x == y for g, w in ((got[0], parts[0]), (got[2], parts[2])) for x, y in zip(g, w, strict=False))
    n = len(expected)
    return {
        "exact calls": 100 * exact / n,
        "first operand": 100 * first / n,
        "second operand": 100 * second / n,
        "operand digits": 100 * digits / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a quickstart output folder")
    args = parser.parse_args()
    stages = _stages(args.run)
    requests = stages["world"].output("eval") / "tool_requests.jsonl"
    expected = [json.loads(line)["expression"] for line in requests.read_text(encoding="utf-8").splitlines()]
    models = {"base": stages["pretrain"].output("model")}
    if "merge" in stages:
        models["sft"] = stages["merge"].output("model")
    params = SamplingParams(max_tokens=16, temperature=0.0)
    results = {}
    for name, folder in models.items():
        llm = LLM(folder, dtype="float32")
        calls = [out.text.split('"')[0] for out in llm.generate([prompt(e) for e in expected], params)]
        results[name] = score(calls, expected)
        del llm
    print(f"{len(expected)} held-out requests, corpus layout\n")
    print("| model | " + " | ".join(results["base"]) + " |")
    print("| --- |" + " ---: |" * len(results["base"]))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
