"""Number-start tokens (`" 4"`) initialised from their bare digit's rows before pretraining."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from puyu.model.checkpoint import load_model
from puyu.model.init import init_model_folder
from puyu.pipeline.digit_rows import blend_number_starts, number_start_pairs
from puyu.tokenizer import Tokenizer, train_bpe

CORPUS = "".join(f"Then {d}69 minus {d}89 is {d}80, and {d}2345 plus {d} is larger than {d}.\n" for d in range(10)) * 10


def _model(tmp_path: Path, digit_space: bool) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    tokenizer = train_bpe([corpus], 400, tmp_path / "tok", digit_space=digit_space, show_progress=False)
    return init_model_folder(
        "internlm2-tiny", tmp_path / "m", overrides={"vocab_size": tokenizer.vocab_size}, tokenizer_dir=tmp_path / "tok"
    )


def test_space_digit_rows_sit_between_the_digit_and_the_space(tmp_path: Path) -> None:
    folder = _model(tmp_path, digit_space=True)
    before = load_model(folder)
    tokenizer = Tokenizer.from_pretrained(folder)
    pairs = number_start_pairs(tokenizer)
    assert [tokenizer.decode([s]) for s, _ in pairs] == [f" {d}" for d in "0123456789"]
    assert [tokenizer.decode([b]) for _, b in pairs] == list("0123456789")

    assert blend_number_starts(folder) == 10
    after = load_model(folder)
    space = tokenizer.encode(" ", add_special_tokens=False)[0]
    spaced = {s for s, _ in pairs}
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        old, new = before.state_dict()[name], after.state_dict()[name]
        for s, b in pairs:
            torch.testing.assert_close(new[s], (old[b] + old[space]) / math.sqrt(2.0))
            # Closer to its digit than to any other digit: the identity copy starts out right.
            cosines = torch.nn.functional.cosine_similarity(new[s][None], new[[b2 for _, b2 in pairs]])
            assert int(cosines.argmax()) == [b2 for _, b2 in pairs].index(b)
        others = [i for i in range(old.shape[0]) if i not in spaced]
        torch.testing.assert_close(new[others], old[others])


def test_without_digit_space_nothing_changes(tmp_path: Path) -> None:
    folder = _model(tmp_path, digit_space=False)
    before = load_model(folder).state_dict()
    assert blend_number_starts(folder) == 0
    after = load_model(folder).state_dict()
    for name, tensor in before.items():
        torch.testing.assert_close(after[name], tensor)
