"""The `calculator` tool: its OpenAI schema, a safe evaluator, and arithmetic requests in words.

Requests are split like the fact questions: SFT phrasings and pairs of numbers, and held-out phrasings
and pairs for the tool-call check.
"""

from __future__ import annotations

import ast
import operator
import random
from dataclasses import dataclass

from puyu.errors import PuyuError

CALCULATOR_TOOL = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
OPERATOR_WORDS = {"+": "plus", "-": "minus", "*": "times"}

# Phrasings of "a OP b" requests; {a} {b} are numbers, {w} the operator word, {s} its symbol.
TRAIN_PHRASINGS = (
    "What is {a} {s} {b}?",
    "Compute {a} {s} {b}.",
    "What is {a} {w} {b}?",
    "Calculate {a} {w} {b}.",
    "Please work out {a} {s} {b}.",
    "{a} {s} {b} = ?",
    "计算{a} {s} {b}。",
)
EVAL_PHRASINGS = (
    "How much is {a} {s} {b}?",
    "Can you calculate {a} {w} {b}?",
    "请算一下{a} {s} {b}。",
)


def evaluate(expression: str) -> int:
    """Evaluate an integer expression of +, - and * (no names, calls or other syntax)."""

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        raise PuyuError(f"calculator: unsupported expression {expression!r}")

    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise PuyuError(f"calculator: unsupported expression {expression!r}") from None
    return value(tree.body)


@dataclass(frozen=True)
class Request:
    """An arithmetic request in words and the expression the calculator should get."""

    question: str
    expression: str
    answer: int


def pair_key(a: int, op: str, b: int) -> str:
    return f"{a} {op} {b}"


def make_request(rng: random.Random, split: str, a: int, op: str, b: int) -> Request:
    phrasings = TRAIN_PHRASINGS if split == "train" else EVAL_PHRASINGS
    question = rng.choice(phrasings).format(a=a, b=b, s=op, w=OPERATOR_WORDS[op])
    expression = pair_key(a, op, b)
    return Request(question, expression, evaluate(expression))


def random_pair(rng: random.Random) -> tuple[int, str, int]:
    """Two- and three-digit operands: too large for a tiny model to compute, easy to copy."""
    op = rng.choice(("+", "-", "*"))
    if op == "*":
        return rng.randint(11, 99), op, rng.randint(11, 99)
    return rng.randint(100, 999), op, rng.randint(10, 999)
