"""Taking the answer out of generated text: numbers (GSM8K style) and option letters."""

from __future__ import annotations

import re

# lm-eval's gsm8k filters: "strict-match" takes the number after '####'; "flexible-extract" the last number.
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
ANSWER_IS = re.compile(r"answer is[:\s]*\$?\s*(\-?[0-9][0-9\.\,]*)", re.IGNORECASE)


def normalize_number(text: str) -> str | None:
    """'1,234' → '1234', '$5.00' → '5', '7.' → '7', '-3.50' → '-3.5'; None when it is not a number."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if value == int(value):
        return str(int(value))
    return repr(value)


def strict_number(text: str) -> str | None:
    """The number after the first '####' (GSM8K's answer format), normalised."""
    match = STRICT.search(text)
    return normalize_number(match.group(1)) if match else None


def flexible_number(text: str) -> str | None:
    """The last number-like span in the text, normalised ('The answer is 7.' → '7')."""
    for match in reversed(FLEXIBLE.findall(text)):
        value = normalize_number(match[0] or match[1])
        if value is not None:
            return value
    return None


def extract_number(text: str) -> str | None:
    """'#### N' first, then 'the answer is N', then the last number in the text."""
    strict = strict_number(text)
    if strict is not None:
        return strict
    said = ANSWER_IS.search(text)
    if said and normalize_number(said.group(1)) is not None:
        return normalize_number(said.group(1))
    return flexible_number(text)


def extract_choice(text: str, count: int) -> int | None:
    """The option letter a reply picks ('B', 'B. Paris', '(B)', 'The answer is B', '答案是B'), as an index."""
    letters = "".join(chr(ord("A") + i) for i in range(count))
    patterns = [
        rf"^\s*\(?([{letters}])\)?(?:[\.\):：\s]|$)",
        rf"(?:answer is|answer:|答案是|答案为|答案：|答案:)\s*\(?([{letters}])\b",
        rf"\b([{letters}])\b",
        rf"([{letters}])",
    ]
    for pattern in patterns:
        match = re.search(pattern, text, re.IGNORECASE if pattern is patterns[1] else 0)
        if match:
            return letters.index(match.group(1).upper())
    return None
