"""Held-out evaluation sets and the generic YAML task files that `puyu eval` reads.

The sets ask about held-out people, whose facts the corpus states only in biographies (no document and
no SFT conversation ever asks about them), and about arithmetic pairs the SFT data never contains:

- `facts_qa.jsonl`: short answers (`{"question", "answer", "id"}`) in the question forms SFT teaches, asked
  in chat; graded by `contains`;
- `facts_paraphrase.jsonl`: the same facts asked in wordings no training text uses;
- `facts_mc.jsonl`: four-way multiple choice (`{"question", "choices", "answer": "A".., "id"}`);
- `sums_qa.jsonl`: small sums in words, graded by `numeric_match`;
- `tool_requests.jsonl`: arithmetic requests with the expression the calculator should receive.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from puyu.io import atomic_write_text
from puyu.pipeline.calculator import make_request, pair_key, random_pair
from puyu.pipeline.questions import EVAL_RELATIONS, ask, relation
from puyu.pipeline.sft import write_jsonl
from puyu.pipeline.world import World

LETTERS = "ABCD"


@dataclass(frozen=True)
class EvalSize:
    tool_requests: int
    small_sums: int


EVAL_SIZES = {"tiny": EvalSize(tool_requests=8, small_sums=6), "default": EvalSize(tool_requests=60, small_sums=20)}

# name -> (file, YAML body): instruction tasks are asked in chat, multiple choice by log-likelihood.
TASKS: dict[str, dict[str, Any]] = {
    "world_facts_qa": {
        "type": "generation",
        "path": "facts_qa.jsonl",
        "fields": {"question": "question", "answer": "answer"},
        "metric": "contains",
        "chat": True,
        "shots": 0,
        "prompt": "{question}",
        "max_tokens": 32,
    },
    "world_facts_paraphrase": {
        "type": "generation",
        "path": "facts_paraphrase.jsonl",
        "fields": {"question": "question", "answer": "answer"},
        "metric": "contains",
        "chat": True,
        "shots": 0,
        "prompt": "{question}",
        "max_tokens": 32,
    },
    "world_sums": {
        "type": "generation",
        "path": "sums_qa.jsonl",
        "fields": {"question": "question", "answer": "answer"},
        "metric": "numeric_match",
        "dimension": "reasoning",
        "chat": True,
        "shots": 0,
        "prompt": "{question}",
        "max_tokens": 32,
    },
    "world_facts_mc": {
        "type": "multiple_choice",
        "path": "facts_mc.jsonl",
        "fields": {"question": "question", "choices": "choices", "answer": "answer"},
        "metric": "accuracy",
        "chat": False,
        "shots": 0,
        "prompt": "Question: {question}\nAnswer:",
        "options_in_prompt": False,
    },
}
# The instruction tasks the SFT-over-base goal is measured on (the paraphrase task is reported beside them).
INSTRUCTION_TASKS = ("world_facts_qa", "world_sums")


def held_out_pairs(seed: int, size: str) -> tuple[list[tuple[int, str, int]], list[tuple[int, int]]]:
    """The arithmetic kept out of SFT: calculator pairs and small sums."""
    spec = EVAL_SIZES[size]
    rng = random.Random(f"held-out-arithmetic-{seed}")
    tool_pairs: dict[str, tuple[int, str, int]] = {}
    while len(tool_pairs) < spec.tool_requests:
        a, op, b = random_pair(rng)
        tool_pairs[pair_key(a, op, b)] = (a, op, b)
    sums = rng.sample([(a, b) for a in range(10) for b in range(10)], spec.small_sums)
    return list(tool_pairs.values()), sums


def excluded_keys(seed: int, size: str) -> set[str]:
    tool_pairs, sums = held_out_pairs(seed, size)
    return {pair_key(*p) for p in tool_pairs} | {pair_key(a, "+", b) for a, b in sums}


def fact_sets(world: World, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Short-answer (taught and new wordings) and multiple-choice questions about every held-out person."""
    rng = random.Random(f"eval-facts-{seed}")
    qa: list[dict[str, Any]] = []
    paraphrase: list[dict[str, Any]] = []
    mc: list[dict[str, Any]] = []
    for index in world.held_out:
        person = world.people[index]
        for name in EVAL_RELATIONS:
            rel = relation(name)
            for lang in ("en", "zh"):
                answer = rel.value(world, person, lang)
                for rows, split, prefix in ((qa, "train", "qa"), (paraphrase, "eval", "pp")):
                    rows.append(
                        {
                            "question": ask(rel, world, person, lang, split, rng),
                            "answer": answer,
                            "id": f"{prefix}-{index}-{name}-{lang}",
                        }
                    )
            if name == "birth_year":
                continue  # years make poor distractors: they differ only in digits
            answer = rel.value(world, person, "en")
            distractors = sorted({c for c in rel.choices(world, "en") if c != answer})
            choices = [*rng.sample(distractors, min(3, len(distractors))), answer]
            rng.shuffle(choices)
            mc.append(
                {
                    "question": ask(rel, world, person, "en", "train", rng),
                    "choices": choices,
                    "answer": LETTERS[choices.index(answer)],
                    "id": f"mc-{index}-{name}",
                }
            )
    return {"facts_qa": qa, "facts_paraphrase": paraphrase, "facts_mc": mc}


def arithmetic_sets(seed: int, size: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Small sums (answered directly) and calculator requests, all on held-out pairs."""
    rng = random.Random(f"eval-arithmetic-{seed}")
    tool_pairs, sums = held_out_pairs(seed, size)
    sums_qa = [
        {
            "question": rng.choice(("How much is {a} plus {b}?", "What do {a} and {b} add up to?")).format(a=a, b=b),
            "answer": str(a + b),
            "id": f"sum-{a}-{b}",
        }
        for a, b in sums
    ]
    requests = []
    for i, (a, op, b) in enumerate(tool_pairs):
        request = make_request(rng, "eval", a, op, b)
        requests.append(
            {
                "question": request.question,
                "expression": request.expression,
                "answer": str(request.answer),
                "id": f"tool-{i:04d}",
            }
        )
    return sums_qa, requests


def write_eval_sets(world: World, out_dir: str | Path, seed: int, size: str) -> dict[str, Path]:
    """Write the JSONL sets and one YAML task file per task; returns the YAML paths by task name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sums_qa, requests = arithmetic_sets(seed, size)
    for name, rows in {**fact_sets(world, seed), "sums_qa": sums_qa, "tool_requests": requests}.items():
        write_jsonl(rows, out / f"{name}.jsonl")
    tasks = {}
    for name, body in TASKS.items():
        path = out / f"{name}.yaml"
        atomic_write_text(path, yaml.safe_dump({"name": name, **body}, sort_keys=False, allow_unicode=True))
        tasks[name] = path
    return tasks
