"""`response_format: {"type": "json_object"}`: decoding constrained to one valid JSON object.

A logits processor masks every token whose text cannot continue a valid JSON prefix. The prefix
checker is a small pushdown automaton over characters whose states are immutable tuples, so trying
a candidate token costs only the characters of that token. Each step looks at candidates in order
of their logits: the `max_scan` most likely first, stopping after `max_valid` allowed ones, and the
rest only when none of those is allowed. This bounds the cost on large vocabularies while greedy
decoding still picks the best allowed token.

The automaton also knows the fewest characters that would close the object; a token is allowed
only if what it leaves can still be closed within the remaining token budget (every single
character step towards closing is one token at worst), so generation cut by `max_tokens` still
returns valid JSON. Once the object is closed only the stop tokens remain.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import torch

_WHITESPACE = " \t\n\r"
_MAX_WHITESPACE_RUN = 2  # a model that likes newlines would otherwise spend its budget on them
_LITERALS = {"t": "rue", "f": "alse", "n": "ull"}
_ESCAPES = set('"\\/bfnrtu')
_HEX = set("0123456789abcdefABCDEF")

# Modes of the automaton.
TOP = 0  # before the opening brace
VALUE = 1  # a value must come (after ':' or ',' in an array)
KEY_OR_END = 2  # just after '{'
KEY = 3  # after ',' in an object
COLON = 4  # after a key
AFTER = 5  # after a value: ',' or a closing bracket
VALUE_OR_END = 6  # just after '['
STRING = 7
NUMBER = 8
LITERAL = 9
DONE = 10

# Number sub-states: which part is being read and whether it may end here.
N_SIGN, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP = range(8)
_NUMBER_MAY_END = {N_ZERO, N_INT, N_FRAC, N_EXP}


class JsonState(NamedTuple):
    """Where a JSON prefix stands; `aux` is mode-specific (string: key?/escape; number: sub-state; literal: rest)."""

    mode: int
    stack: tuple[str, ...]  # open containers, "{" or "["
    aux: Any = None
    whitespace: int = 0


START = JsonState(TOP, ())


def _after_value(stack: tuple[str, ...]) -> JsonState:
    return JsonState(AFTER if stack else DONE, stack)


def step(state: JsonState, char: str) -> JsonState | None:
    """The state after one more character, or None if the prefix stops being valid JSON."""
    mode, stack = state.mode, state.stack
    if mode == STRING:
        is_key, escape = state.aux
        if escape == 0:
            if char == '"':
                return JsonState(COLON, stack) if is_key else _after_value(stack)
            if char == "\\":
                return JsonState(STRING, stack, (is_key, -1))
            return state if ord(char) >= 0x20 else None
        if escape == -1:  # just after a backslash
            if char not in _ESCAPES:
                return None
            return JsonState(STRING, stack, (is_key, 4 if char == "u" else 0))
        return JsonState(STRING, stack, (is_key, escape - 1)) if char in _HEX else None
    if mode == NUMBER:
        nxt = _number_step(state.aux, char)
        if nxt is not None:
            return JsonState(NUMBER, stack, nxt)
        if state.aux not in _NUMBER_MAY_END:
            return None
        return step(_after_value(stack), char)
    if mode == LITERAL:
        rest = state.aux
        if char != rest[0]:
            return None
        return JsonState(LITERAL, stack, rest[1:]) if len(rest) > 1 else _after_value(stack)
    if char in _WHITESPACE:
        if state.whitespace >= _MAX_WHITESPACE_RUN:
            return None
        return state._replace(whitespace=state.whitespace + 1)
    if mode == TOP:
        return JsonState(KEY_OR_END, ("{",)) if char == "{" else None
    if mode == DONE:
        return None
    if mode in (KEY_OR_END, KEY):
        if char == '"':
            return JsonState(STRING, stack, (True, 0))
        if char == "}" and mode == KEY_OR_END:
            return _after_value(stack[:-1])
        return None
    if mode == COLON:
        return JsonState(VALUE, stack) if char == ":" else None
    if mode == AFTER:
        if char == ",":
            return JsonState(KEY if stack[-1] == "{" else VALUE, stack)
        if char == ("}" if stack[-1] == "{" else "]"):
            return _after_value(stack[:-1])
        return None
    # VALUE or VALUE_OR_END
    if char == "]" and mode == VALUE_OR_END:
        return _after_value(stack[:-1])
    if char == '"':
        return JsonState(STRING, stack, (False, 0))
    if char == "{":
        return JsonState(KEY_OR_END, (*stack, "{"))
    if char == "[":
        return JsonState(VALUE_OR_END, (*stack, "["))
    if char in _LITERALS:
        return JsonState(LITERAL, stack, _LITERALS[char])
    number = _number_step(None, char)
    return JsonState(NUMBER, stack, number) if number is not None else None


def _number_step(sub: int | None, char: str) -> int | None:
    """Next number sub-state, or None when `char` cannot extend the number."""
    digit = char.isascii() and char.isdigit()
    if sub is None:
        return N_SIGN if char == "-" else N_ZERO if char == "0" else N_INT if digit else None
    if sub == N_SIGN:
        return (N_ZERO if char == "0" else N_INT) if digit else None
    if sub in (N_ZERO, N_INT):
        if digit:
            return N_INT if sub == N_INT else None
        return N_DOT if char == "." else N_E if char in "eE" else None
    if sub in (N_DOT, N_FRAC):
        if digit:
            return N_FRAC
        return N_E if char in "eE" and sub == N_FRAC else None
    if sub == N_E:
        return N_ESIGN if char in "+-" else N_EXP if digit else None
    if sub in (N_ESIGN, N_EXP):
        return N_EXP if digit else None
    return None


def closing_cost(state: JsonState) -> int:
    """The fewest characters that turn this prefix into a complete object."""
    mode = state.mode
    local = 0
    if mode == TOP:
        return 2
    if mode == VALUE:
        local = 1
    elif mode == KEY:
        local = 4  # "" : 0
    elif mode == COLON:
        local = 2
    elif mode == STRING:
        is_key, escape = state.aux
        local = 1 + (1 if escape == -1 else max(escape, 0)) + (2 if is_key else 0)
    elif mode == NUMBER:
        local = 0 if state.aux in _NUMBER_MAY_END else 1
    elif mode == LITERAL:
        local = len(state.aux)
    return local + len(state.stack)


def feed(state: JsonState | None, text: str) -> JsonState | None:
    """`step` over every character of `text`; None once invalid."""
    for char in text:
        if state is None:
            return None
        state = step(state, char)
    return state


def is_complete_json_prefix(text: str) -> bool:
    """Whether `text` is one complete JSON object (whitespace around it allowed, within the run limit)."""
    state = feed(START, text)
    return state is not None and state.mode == DONE


# ---------------------------------------------------------------------------------------------- tokens

_TOKEN_TEXTS: weakref.WeakKeyDictionary[Any, list[str | None]] = weakref.WeakKeyDictionary()


def token_texts(tokenizer: Any) -> list[str | None]:
    """The text each token id adds when decoded after other text; None for special tokens and partial
    UTF-8. Computed once per tokenizer: decoding after an anchor token keeps the leading space that
    SentencePiece drops from a sequence's first token."""
    cached = _TOKEN_TEXTS.get(tokenizer)
    if cached is not None:
        return cached
    special = set(tokenizer.added_tokens.values()) | set(tokenizer.special_ids)
    anchor_ids = tokenizer.encode("a", add_special_tokens=False)[-1:]
    anchor = tokenizer.decode(anchor_ids)
    texts: list[str | None] = []
    for token_id in range(tokenizer.vocab_size):
        if token_id in special:
            texts.append(None)
            continue
        text = tokenizer.decode([*anchor_ids, token_id])
        piece = text[len(anchor) :] if text.startswith(anchor) else None
        texts.append(piece if piece and "\ufffd" not in piece else None)
    _TOKEN_TEXTS[tokenizer] = texts
    return texts


class JsonLogitsProcessor:
    """Masks tokens that cannot continue a valid JSON object (one instance per request: it keeps state).

    Args:
        tokenizer: the model's tokenizer.
        stop_ids: ids that end generation; allowed only once the object is complete.
        max_tokens: the request's token budget (the object must close within it).
        max_valid: stop looking after this many allowed candidates.
        max_scan: how many of the most likely tokens to try before looking further down.
    """

    def __init__(
        self,
        tokenizer: Any,
        stop_ids: Iterable[int],
        max_tokens: int,
        *,
        max_valid: int = 32,
        max_scan: int = 2048,
    ) -> None:
        self.texts = token_texts(tokenizer)
        self.stop_ids = sorted(set(stop_ids))
        self.max_tokens = max_tokens
        self.max_valid = max_valid
        self.max_scan = max_scan
        self._state: JsonState | None = START
        self._consumed: list[int] = []

    def _advance(self, output_ids: Sequence[int]) -> JsonState | None:
        if list(output_ids[: len(self._consumed)]) != self._consumed:  # a different sequence: start over
            self._state, self._consumed = START, []
        for token_id in output_ids[len(self._consumed) :]:
            text = self.texts[token_id] if 0 <= token_id < len(self.texts) else None
            self._state = feed(self._state, text) if text is not None else None
            self._consumed.append(int(token_id))
        return self._state

    def _search(self, state: JsonState, produced: int, order: Iterable[int]) -> list[int]:
        """Up to `max_valid` ids from `order` that keep the prefix valid and closable in the budget."""
        budget = self.max_tokens - produced - 1  # tokens left after this one
        found: list[int] = []
        for token_id in order:
            text = self.texts[token_id] if token_id < len(self.texts) else None
            if text is None:
                continue
            nxt = feed(state, text)
            if nxt is not None and closing_cost(nxt) <= budget:
                found.append(token_id)
                if len(found) >= self.max_valid:
                    break
        return found

    def allowed(self, output_ids: Sequence[int], logits: torch.Tensor) -> list[int]:
        """Token ids allowed next: the best `max_valid` among the `max_scan` most likely tokens, else the
        most likely allowed ones further down, else (object complete or broken) the stop ids."""
        state = self._advance(output_ids)
        if state is None or state.mode == DONE:
            return self.stop_ids
        scan = min(self.max_scan, logits.numel())
        found = self._search(state, len(output_ids), logits.topk(scan).indices.tolist())
        if not found and scan < logits.numel():
            rest = torch.argsort(logits, descending=True)[scan:].tolist()
            found = self._search(state, len(output_ids), rest)
        return found or self.stop_ids

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        allowed = self.allowed(output_ids, logits)
        masked = torch.full_like(logits, float("-inf"))
        index = torch.tensor(allowed, dtype=torch.long, device=logits.device)
        masked[index] = logits[index]
        return masked
