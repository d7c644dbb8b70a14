"""The JSON-prefix automaton against Python's json module, and the logits processor on random logits."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from puyu.serve.json_mode import DONE, START, JsonLogitsProcessor, closing_cost, feed, is_complete_json_prefix
from puyu.tokenizer import Tokenizer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5), st.booleans())
def test_every_prefix_of_an_object_is_accepted(obj: dict, ascii_only: bool) -> None:
    text = json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":") if ascii_only else (", ", ": "))
    state = START
    for end, char in enumerate(text):
        state = feed(state, char)
        assert state is not None, text[: end + 1]
        # the closing cost is a real completion length: the state can always be finished
        assert closing_cost(state) >= 0
    assert state.mode == DONE


@given(st.text(alphabet='{}[]":,0123456789.eE+-truefalsn \\ab', max_size=24))
def test_agrees_with_json_loads(text: str) -> None:
    try:
        parsed = json.loads(text)
        valid = isinstance(parsed, dict)
    except ValueError:
        valid = False
    if "   " in text:  # whitespace runs past the limit may be refused; what is accepted must still parse
        assert valid or not is_complete_json_prefix(text), text
    else:
        assert is_complete_json_prefix(text) == valid, text


@pytest.mark.parametrize(
    "text", ['{"a": 01}', '{"a" 1}', '{"a": tru}', "{,}", "[1]", '{"a": 1,}', '{"a": "\\x"}', '{"a": -}']
)
def test_rejects_invalid(text: str) -> None:
    assert not is_complete_json_prefix(text)


@pytest.mark.parametrize("seed", range(6))
def test_processor_closes_object_within_budget(model_folder: Path, seed: int) -> None:
    """Random logits, greedy: the output is one JSON object however small the budget."""
    tokenizer = Tokenizer.from_pretrained(model_folder)
    stop_ids = {tokenizer.eos_id}
    rng = random.Random(seed)
    budget = rng.choice([2, 5, 12, 40])
    processor = JsonLogitsProcessor(tokenizer, stop_ids, budget, max_valid=8)
    generator = torch.Generator().manual_seed(seed)
    output: list[int] = []
    while len(output) < budget:
        logits = processor(list(output), torch.randn(tokenizer.vocab_size, generator=generator))
        token = int(logits.argmax())
        if token in stop_ids:
            break
        output.append(token)
    assert isinstance(json.loads(tokenizer.decode(output)), dict)
