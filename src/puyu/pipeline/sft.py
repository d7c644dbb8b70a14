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
    small_sums: int  # one-digit sums answered directly: the chat layout must learn to reach the base's addition
    tool_calls: int
    echoes: int  # the user's text said back


SFT_SIZES = {
    "tiny": SftSize(facts_per_person=3, multi_turn=8, small_sums=8, tool_calls=16, echoes=8),
    "default": SftSize(facts_per_person=14, multi_turn=300, small_sums=1000, tool_calls=600, echoes=300),
}

# Ways of asking a one-digit sum. Many, because an answer starts by copying both addends: with three wordings,
# the SFT model copied the second addend wrongly from wordings it had not seen. The held-out wordings of the
# evaluation ("How much is a plus b?", "What do a and b add up to?") are not among them.
SUM_REQUESTS = (
    "What is {a} + {b}?",
    "{a} + {b} = ?",
    "Add {a} and {b}.",
    "What is {a} plus {b}?",
    "What is the sum of {a} and {b}?",
    "Tell me {a} plus {b}.",
    "{a} plus {b} equals what?",
    "If I add {a} and {b}, what do I get?",
    "Please add {a} and {b}.",
    "What number is {a} and {b} together?",
    "{a}加{b}等于多少？",
    "计算{a}加{b}。",
)
# How a sum's answer starts. The base model adds one-digit numbers reliably only where the text says it is
# doing sums (its drills begin "Here are some sums ..."), not after a bare "a + b =" at the start of a reply
# (docs/quickstart.md; the second table of benchmarks/quickstart_transfer.py measures both).
SUM_LEAD = "Here is the sum: "
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
    question = rng.choice(SUM_REQUESTS).format(a=a, b=b)
    answer = f"{SUM_LEAD}{a} + {b} = {a + b}."
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


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
