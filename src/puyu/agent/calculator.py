"""A safe arithmetic evaluator: the expression is parsed into an AST and walked; nothing is ever `eval`ed.

Numbers, + - * / // % ** (with bounded exponents), parentheses, the constants pi, e and tau, and a fixed set of math
functions. Anything else (names, attributes, subscripts, comprehensions, strings) is rejected.
"""

from __future__ import annotations

import ast
import math
import operator

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
_FUNCTIONS = {
    name: getattr(math, name)
    for name in ("sqrt", "exp", "log", "log10", "log2", "sin", "cos", "tan", "asin", "acos", "atan", "floor", "ceil")
} | {"abs": abs, "round": round, "min": min, "max": max}
_MAX_EXPONENT = 10_000
_MAX_DIGITS = 4300  # CPython's own int-to-str limit
_MAX_LENGTH = 1000


class CalculatorError(ValueError):
    """The expression is not plain arithmetic, or its value is out of range."""


def _check_size(value: float) -> float:
    if isinstance(value, int) and value.bit_length() > _MAX_DIGITS * 3.33:
        raise CalculatorError("result too large")
    return value


def _power_too_large(base: float, exponent: float) -> bool:
    # 9**9**9 would take minutes and gigabytes: bound the result's size before computing it.
    if abs(exponent) > _MAX_EXPONENT:
        return True
    return abs(base) > 1 and exponent > 0 and exponent * math.log2(abs(base)) > _MAX_DIGITS * 3.33


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and _power_too_large(left, right):
            raise CalculatorError("exponent too large")
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise CalculatorError("keyword arguments are not allowed")
        arguments = [_evaluate(argument) for argument in node.args]
        try:
            return _check_size(_FUNCTIONS[node.func.id](*arguments))
        except (ValueError, TypeError) as exc:
            raise CalculatorError(f"{node.func.id}: {exc}") from None
    raise CalculatorError(f"not allowed in an arithmetic expression: {ast.unparse(node)}")


def format_number(value: float) -> str:
    """Integers as integers (also integral floats), other floats with 12 significant digits."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return format(value, ".12g")
    return str(value)


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression and return the number as text.

    Raises:
        CalculatorError: the expression is not plain arithmetic or cannot be computed.
    """
    expression = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not expression or len(expression) > _MAX_LENGTH:
        raise CalculatorError("empty or too long expression")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise CalculatorError(f"cannot parse {expression!r}") from None
    try:
        return format_number(_evaluate(tree))
    except OverflowError:
        raise CalculatorError("result too large") from None
