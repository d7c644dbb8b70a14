"""Reward functions for online RL: built-ins by name, or any Python callable named "module:function".

A reward function takes the completion text and its prompt record (the JSONL line: `answer` and any other
fields) and returns a float. Model output is hostile: nothing here executes it; numbers are parsed, and a
calculator call is evaluated by puyu's arithmetic parser, never by `eval`.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable
from typing import Any

from puyu.errors import PuyuError

RewardFn = Callable[[str, dict[str, Any]], float]
NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def last_number(text: str) -> float | None:
    """The last number written in `text` (thousands separators allowed), or None."""
    found = NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def _answer(sample: dict[str, Any]) -> str:
    if "answer" not in sample:
        raise PuyuError("this reward needs an 'answer' field in every prompt record")
    return str(sample["answer"]).strip()


def exact_reward(completion: str, sample: dict[str, Any]) -> float:
    """1 when the completion is the answer (surrounding white space ignored)."""
    return float(completion.strip() == _answer(sample))


def contains_reward(completion: str, sample: dict[str, Any]) -> float:
    """1 when the answer appears in the completion."""
    return float(_answer(sample) in completion)


def numeric_reward(completion: str, sample: dict[str, Any]) -> float:
    """1 when the completion's last number equals the answer's (GSM8K-style scoring)."""
    expected, got = last_number(_answer(sample)), last_number(completion)
    return float(expected is not None and got is not None and math.isclose(got, expected, abs_tol=1e-6))


def calculator_reward(completion: str, sample: dict[str, Any]) -> float:
    """1 when the completion holds a calculator call whose expression evaluates to the answer.

    Calls are read in the formats puyu's chat templates write (InternLM2 plugin markup, Qwen2 `<tool_call>`,
    Llama 3 JSON); the expression is `arguments.expression` and is evaluated by the safe arithmetic parser.
    """
    from puyu.chat.tool_calls import parse_internlm2, parse_llama3, parse_qwen2
    from puyu.pipeline.calculator import evaluate

    expected = last_number(_answer(sample))
    for parse in (parse_internlm2, parse_qwen2, parse_llama3):
        _, calls = parse(completion)
        for call in calls:
            arguments = call.get("function", {}).get("arguments", "")
            expression = _expression(arguments)
            if expression is None:
                continue
            try:
                value = evaluate(expression)
            except (PuyuError, ValueError, ZeroDivisionError, OverflowError):
                continue
            if expected is not None and math.isclose(value, expected, abs_tol=1e-6):
                return 1.0
    return 0.0


def _expression(arguments: Any) -> str | None:
    import json

    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    value = arguments.get("expression") if isinstance(arguments, dict) else None
    return value if isinstance(value, str) else None


BUILTIN_REWARDS: dict[str, RewardFn] = {
    "exact": exact_reward,
    "contains": contains_reward,
    "numeric": numeric_reward,
    "calculator": calculator_reward,
}


def regex_reward(pattern: str) -> RewardFn:
    """A format reward: 1 when the whole completion (stripped) matches `pattern`."""
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as exc:
        raise PuyuError(f"reward regex:{pattern}: {exc}") from None
    return lambda completion, sample: float(compiled.fullmatch(completion.strip()) is not None)


def load_reward(spec: str) -> RewardFn:
    """A reward function from its name: a built-in (`exact`, `contains`, `numeric`, `calculator`),
    `regex:PATTERN`, or `module:function` (a Python callable(completion, sample) -> float)."""
    if spec in BUILTIN_REWARDS:
        return BUILTIN_REWARDS[spec]
    if spec.startswith("regex:"):
        return regex_reward(spec[len("regex:") :])
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise PuyuError(f"unknown reward {spec!r}: use one of {', '.join(BUILTIN_REWARDS)}, regex:P or module:function")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise PuyuError(f"reward {spec!r}: {exc}") from None
    if not callable(function):
        raise PuyuError(f"reward {spec!r} is not callable")
    return function
