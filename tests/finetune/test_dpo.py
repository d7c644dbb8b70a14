"""Preference data and objectives: pair encoding, per-line errors, the DPO/IPO/SimPO losses, and a DPO run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from finetune_support import one_thread, preference_rows, quiet_config, tiny_model, write_jsonl  # noqa: F401

from puyu.finetune.objectives import PreferenceLoss, preference_losses, sequence_logps
from puyu.finetune.preference_data import PreferenceBatches, attach_reference, load_preference_pairs, pair_batch
from puyu.finetune.run import finetune
from puyu.finetune.sft_data import chat_templates
from puyu.model.checkpoint import load_model
from puyu.tokenizer import Tokenizer
from puyu.train.metrics import read_metrics
from puyu.train.objectives import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_thread")


def _pairs(tmp_path: Path, rows: list, preset: str = "qwen2-tiny", **kw: object) -> tuple:
    folder = tiny_model(tmp_path / "m", preset)
    tokenizer = Tokenizer.from_pretrained(folder)
    template, tool_template = chat_templates(tokenizer, "qwen2" if preset == "qwen2-tiny" else "internlm2")
    data = write_jsonl(tmp_path / "pref.jsonl", rows)
    pairs, report = load_preference_pairs(data, tokenizer, template, tool_template, seq_len=256, **kw)  # type: ignore[arg-type]
    return folder, tokenizer, data, pairs, report


def test_pairs_label_only_the_responses(tmp_path: Path) -> None:
    row = {
        "prompt": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},  # earlier context: not part of the response
            {"role": "user", "content": "Shout cat"},
        ],
        "chosen": "CAT!",
        "rejected": "cat.",
    }
    _, tokenizer, _, pairs, report = _pairs(tmp_path, [row])
    assert report.samples == 1
    pair = pairs[0]
    for sample, text in ((pair.chosen, "CAT!<|im_end|>"), (pair.rejected, "cat.<|im_end|>")):
        trained = [label for label in sample.labels if label != IGNORE_INDEX]
        assert tokenizer.decode(trained) == text
    # Both sides share the prompt tokens exactly.
    shared = len(pair.chosen) - len("CAT!<|im_end|>") + len("<|im_end|>") - 1
    assert pair.chosen.input_ids[:shared] == pair.rejected.input_ids[:shared]


def test_missing_rejected_is_a_line_error(tmp_path: Path) -> None:
    rows = [
        *preference_rows(2),
        {"prompt": "Shout dog", "chosen": "DOG!"},
        {"prompt": "x", "chosen": "a", "rejected": "a"},
    ]
    _, _, data, pairs, report = _pairs(tmp_path, rows)
    assert len(pairs) == 2 and report.invalid == 2
    assert report.errors == [
        f"{data}:3: missing field: 'rejected'",
        f"{data}:4: identical responses: chosen and rejected are the same",
    ]


def test_pair_batches_put_chosen_rows_first(tmp_path: Path) -> None:
    _, _, _, pairs, _ = _pairs(tmp_path, preference_rows(6))
    source = PreferenceBatches(pairs, micro_batch_size=3, grad_accum=2, pad_id=0, seed=0)
    step = source.next_step(torch.device("cpu"))
    assert len(step) == 2
    order = source.order._order
    batch = step[0]
    assert batch.num_targets == batch.num_pairs == 3  # the loop normalises per pair
    for i in range(3):
        chosen, rejected = pairs[order[i]].chosen, pairs[order[i]].rejected
        assert batch.input_ids[i, : len(chosen)].tolist() == chosen.input_ids
        assert batch.input_ids[3 + i, : len(rejected)].tolist() == rejected.input_ids


def test_losses_match_their_formulas() -> None:
    torch.manual_seed(0)
    policy, reference = torch.randn(8) * 5, torch.randn(8) * 5
    lengths = torch.tensor([3, 4, 5, 6, 7, 8, 9, 10])
    beta, eps = 0.2, 0.1
    chosen_ratio, rejected_ratio = (policy - reference)[:4], (policy - reference)[4:]
    logits = beta * (chosen_ratio - rejected_ratio)

    losses, chosen, rejected = preference_losses("sigmoid", policy, reference, lengths, beta=beta)
    torch.testing.assert_close(losses, torch.log1p(torch.exp(-logits)))  # -log σ(x) = log(1 + e^-x)
    torch.testing.assert_close(chosen, beta * chosen_ratio)
    torch.testing.assert_close(rejected, beta * rejected_ratio)

    smoothed, _, _ = preference_losses("sigmoid", policy, reference, lengths, beta=beta, label_smoothing=eps)
    torch.testing.assert_close(
        smoothed, (1 - eps) * torch.log1p(torch.exp(-logits)) + eps * torch.log1p(torch.exp(logits))
    )

    ipo, _, _ = preference_losses("ipo", policy, reference, lengths, beta=beta)
    torch.testing.assert_close(ipo, (chosen_ratio - rejected_ratio - 1 / (2 * beta)) ** 2)

    simpo, _, _ = preference_losses("simpo", policy, None, lengths, beta=2.0, simpo_gamma=0.5)
    average = policy / lengths
    torch.testing.assert_close(simpo, -F.logsigmoid(2.0 * (average[:4] - average[4:]) - 0.5))

    # Policy equal to reference: every pair costs log 2, rewards are 0.
    same, zero_c, zero_r = preference_losses("sigmoid", policy, policy, lengths, beta=beta)
    torch.testing.assert_close(same, torch.full((4,), math.log(2.0)))
    assert not zero_c.any() and not zero_r.any()


def test_precomputed_reference_is_the_base_models_logps(tmp_path: Path) -> None:
    folder, _, _, pairs, _ = _pairs(tmp_path, preference_rows(5))
    model = load_model(folder, dtype="float32")
    attach_reference(model, pairs, pad_id=0, batch_size=2, device=torch.device("cpu"))
    with torch.no_grad():
        for pair in pairs:
            alone = torch.tensor([pair.chosen.input_ids]), torch.tensor([pair.chosen.labels])
            logits = model(alone[0])[0]
            expected = -F.cross_entropy(logits, alone[1][0], ignore_index=IGNORE_INDEX, reduction="sum")
            assert pair.reference is not None
            assert pair.reference[0] == pytest.approx(float(expected), abs=1e-4)
    # With the reference attached and the model unchanged, the DPO loss is log 2 per pair.
    batch = pair_batch(pairs[:4], pad_id=0)
    loss_fn = PreferenceLoss("sigmoid", beta=0.1, reference="precomputed")
    with torch.no_grad():
        loss = loss_fn(model, batch)
    assert float(loss) == pytest.approx(4 * math.log(2.0), abs=1e-4)
    metrics = loss_fn.pop_metrics()
    assert metrics["rewards_margin"] == pytest.approx(0.0, abs=1e-4)
    assert loss_fn.pop_metrics() == {}  # popped
    _, lengths = sequence_logps(model, batch)
    assert lengths.tolist() == [p.chosen.num_targets for p in pairs[:4]] + [p.rejected.num_targets for p in pairs[:4]]


@pytest.mark.parametrize("train", ["full", "lora"])
def test_dpo_lowers_the_loss_and_widens_the_margin(tmp_path: Path, train: str) -> None:
    folder = tiny_model(tmp_path / "m", "qwen2-tiny")
    data = write_jsonl(tmp_path / "pref.jsonl", preference_rows(16))
    config = quiet_config(
        tmp_path / "run",
        folder,
        data,
        method="dpo",
        dpo={"train": train, "beta": 0.1},
        max_steps=24,
        micro_batch_size=4,
        optimizer={"lr": 1e-3 if train == "full" else 5e-3},
        schedule={"kind": "constant", "warmup_steps": 0},
        log_every=1,
    )
    result = finetune(config)
    records = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    first, last = records[0], records[-1]
    # The first step sees policy == reference (no update yet; LoRA's B starts at zero): loss log 2, margin 0.
    assert first["loss"] == pytest.approx(math.log(2.0), abs=1e-4)
    assert first["rewards_margin"] == pytest.approx(0.0, abs=1e-4)
    assert last["loss"] < 0.5 * first["loss"]
    assert last["rewards_margin"] > 0.5
    assert last["accuracy"] == 1.0
    assert result.output.is_dir()


def test_simpo_needs_no_reference(tmp_path: Path) -> None:
    folder, _, _, pairs, _ = _pairs(tmp_path, preference_rows(4))
    model = load_model(folder, dtype="float32")
    batch = pair_batch(pairs, pad_id=0)
    assert batch.reference_logps is None
    with torch.no_grad():
        loss = PreferenceLoss("simpo", beta=2.0, reference="none", simpo_gamma=0.5)(model, batch)
        policy, lengths = sequence_logps(model, batch)
    expected, _, _ = preference_losses("simpo", policy, None, lengths, beta=2.0, simpo_gamma=0.5)
    assert float(loss) == pytest.approx(float(expected.sum()), rel=1e-6)
    with pytest.raises(ValueError, match="needs a reference"):
        PreferenceLoss("sigmoid", reference="none")
