"""Mixed test strings for tokenizer parity: English, Chinese, code, emoji, numbers, odd whitespace, chat tokens."""

from __future__ import annotations

import random

_PIECES = [
    "The quick brown fox", "jumps over the lazy dog.", "It's", "they'll", "HELLO", "naïve café", "résumé",
    "你好，世界", "今天天气很好。", "机器学习", "中文和English混合", "日本語のテキスト", "한국어",
    "def f(x):\n    return x ** 2", "for (int i = 0; i < n; ++i) {}", "print('hi')", "{\"key\": [1, 2, 3]}",
    "<div class=\"a\">", "SELECT * FROM t;", "x = y+z  # comment", "λx.x", "a_b_c", "CamelCaseWord",
    "😀", "👍🏽", "🇫🇷", "👨‍👩‍👧", "✓", "→", "∑", "€100", "3.14159", "1,000,000", "2026-12-07", "12345678901234",
    " ", "  ", "\t", "\n", "\n\n", "\r\n", "   leading", "trailing   ", "\u00a0", "\u3000",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>",
]  # fmt: skip


def mixed_strings(count: int = 1000, seed: int = 0) -> list[str]:
    """`count` strings, each 1-6 random pieces joined by nothing, a space or a newline."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts = rng.choices(_PIECES, k=rng.randint(1, 6))
        out.append("".join(p + rng.choice(["", " ", "\n"]) for p in parts))
    return out
