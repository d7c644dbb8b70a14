"""SFT chat data in OpenAI `messages` format: questions about the world, arithmetic, and calculator calls.

Only people outside `World.held_out` are asked about, with the "train" phrasings; arithmetic pairs
listed in `excluded_pairs` (the held-out ones) never appear.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from puyu.io import atomic_path
from puyu.pipeline.calculator import CALCULATOR_TOOL, OPERATOR_WORDS, make_request, pair_key, random_pair
from puyu.pipeline.questions import RELATIONS, ask
from puyu.pipeline.world import NameMaker, World


@dataclass(frozen=True)
class SftSize:
    """How many conversations of each kind."""

    facts_per_person: int  # single-turn fact questions per trained person
    multi_turn: int
    small_sums: int
    tool_calls: int
    echoes: int  # the user's text said back


SFT_SIZES = {
    "tiny": SftSize(facts_per_person=3, multi_turn=8, small_sums=8, tool_calls=16, echoes=8),
    "default": SftSize(facts_per_person=14, multi_turn=300, small_sums=200, tool_calls=600, echoes=300),
}

ECHO_REQUESTS = ("Repeat after me: {x}", "Please say {x}.", "Copy this exactly: {x}", "请重复：{x}")
SYMBOL_REQUESTS = ("Write {x} with symbols.", "Write {x} as an expression.")


def _fact_turn(world: World, index: int, rng: random.Random) -> tuple[str, str]:
    person = world.people[index]
    rel = rng.choice(RELATIONS)
    lang = "en" if rng.random() < 0.75 else "zh"
    return ask(rel, world, person, lang, "train", rng), rel.sentence(world, person, lang)


def fact_conversation(world: World, index: int, rng: random.Random, turns: int = 1) -> dict[str, Any]:
    """One conversation of `turns` questions about person `index`; some offer the calculator tool."""
    messages: list[dict[str, Any]] = []
    for _ in range(turns):
        question, answer = _fact_turn(world, index, rng)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    record: dict[str, Any] = {"messages": messages}
    if rng.random() < 0.15:
        record["tools"] = [CALCULATOR_TOOL]  # the model must learn not to call it for facts
    return record


def small_sum_conversation(rng: random.Random, excluded_pairs: set[str]) -> dict[str, Any]:
    """A small sum answered directly (no tool offered)."""
    while True:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        if pair_key(a, "+", b) not in excluded_pairs:
            break
    question = rng.choice(("What is {a} + {b}?", "{a} + {b} = ?", "Add {a} and {b}.")).format(a=a, b=b)
    return {
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": f"{a} + {b} = {a + b}."}]
    }


def tool_conversation(rng: random.Random, excluded_pairs: set[str]) -> dict[str, Any]:
    """Request → calculator call → tool result → final answer."""
    a, op, b = _fresh_pair(rng, excluded_pairs)
    request = make_request(rng, "train", a, op, b)
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": request.expression}}}
    return {
        "messages": [
            {"role": "user", "content": request.question},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "name": "calculator", "content": str(request.answer)},
            {"role": "assistant", "content": f"{request.expression} = {request.answer}."},
        ],
        "tools": [CALCULATOR_TOOL],
    }


def _fresh_pair(rng: random.Random, excluded_pairs: set[str]) -> tuple[int, str, int]:
    while True:
        a, op, b = random_pair(rng)
        if pair_key(a, op, b) not in excluded_pairs:
            return a, op, b


def echo_conversation(rng: random.Random, names: NameMaker, excluded_pairs: set[str]) -> dict[str, Any]:
    """The user's digits, name or expression said back (an expression in words comes back in symbols): in the
    chat layout, the copying that answers rest on (a person's name into a fact answer, operands into a
    calculator call). Items are fresh, never memorised."""
    kind = rng.randrange(4)
    if kind == 0:
        text = "".join(str(rng.randrange(10)) for _ in range(rng.randint(3, 8)))
    elif kind == 1:
        text = f"{names.make((2, 2)).en} {names.make((2, 3)).en}"
    else:
        a, op, b = _fresh_pair(rng, excluded_pairs)
        text = pair_key(a, op, b)
        if kind == 3:
            words = f"{a} {OPERATOR_WORDS[op]} {b}"
            return {
                "messages": [
                    {"role": "user", "content": rng.choice(SYMBOL_REQUESTS).format(x=words)},
                    {"role": "assistant", "content": text},
                ]
            }
    question = rng.choice(ECHO_REQUESTS).format(x=text)
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": text}]}


def build_sft(world: World, size: str, seed: int, excluded_pairs: set[str]) -> list[dict[str, Any]]:
    """All SFT conversations, shuffled."""
    spec = SFT_SIZES[size]
    rng = random.Random(f"sft-{seed}")
    trained = world.trained_people()
    records = [fact_conversation(world, i, rng) for i in trained for _ in range(spec.facts_per_person)]
    records += [
        fact_conversation(world, rng.choice(trained), rng, turns=rng.randint(2, 3)) for _ in range(spec.multi_turn)
    ]
    records += [small_sum_conversation(rng, excluded_pairs) for _ in range(spec.small_sums)]
    records += [tool_conversation(rng, excluded_pairs) for _ in range(spec.tool_calls)]
    names = world.fresh_names(rng)
    records += [echo_conversation(rng, names, excluded_pairs) for _ in range(spec.echoes)]
    rng.shuffle(records)
    for i, record in enumerate(records):
        record["id"] = f"sft-{i:06d}"
    return records


def write_jsonl(records: list[dict[str, Any]], path: str | Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
