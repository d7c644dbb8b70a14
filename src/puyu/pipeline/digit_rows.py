"""Start each number-start token (`" 4"`, a digit that carries its leading space) from its bare digit's rows.

With `digit_space`, a number in running text begins with a space-digit token (`" 4", "4"`), while the same
number written after a quote or at the start of a line begins with the bare digit (`"4", "4"`): the operands
of a calculator call's JSON, an answer's first word. Copying a number from a request into a call then maps
`" 4"` to `"4"`, which a small model learns imprecisely (`14 * 36` for "44 * 36", first digits off by one).
Initialising each space-digit row halfway between its digit's row and the lone space's row makes that map
start as the identity copy that copying lines teach, while the space keeps a number's start recognisable.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from puyu.model.checkpoint import load_model, save_model
from puyu.pipeline.new_tokens import token_matrices
from puyu.tokenizer import Tokenizer


def number_start_pairs(tokenizer: Tokenizer) -> list[tuple[int, int]]:
    """`(space_digit_id, digit_id)` for each digit whose space-prefixed form is one token."""
    pairs = []
    for digit in "0123456789":
        spaced, bare = tokenizer.encode(f" {digit}", False), tokenizer.encode(digit, False)
        if len(spaced) == 1 and len(bare) == 1:
            pairs.append((spaced[0], bare[0]))
    return pairs


@torch.no_grad()
def blend_number_starts(model_dir: str | Path) -> int:
    """Rewrite the input and output rows of the space-digit tokens of the HF folder `model_dir`, in place.

    Returns:
        How many digits were blended (0 when the tokenizer keeps spaces apart from digits).
    """
    tokenizer = Tokenizer.from_pretrained(model_dir)
    pairs = number_start_pairs(tokenizer)
    space = tokenizer.encode(" ", False)
    if not pairs or len(space) != 1:
        return 0
    model = load_model(model_dir, dtype="float32")
    spaced, bare = torch.tensor([s for s, _ in pairs]), torch.tensor([b for _, b in pairs])
    for weight in token_matrices(model):
        # Two independent random rows mixed at 45 degrees keep the initial norm.
        weight[spaced] = (weight[bare] + weight[space[0]]) / math.sqrt(2.0)
    save_model(model, model_dir)
    return len(pairs)
