"""SFT data: label masks per template, loss:false turns, tool calls, truncation, packing, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from finetune_support import (
    ADD_TOOL,
    END_TOKENS,
    PRESETS,
    addition_rows,
    labelled_runs,
    tiny_model,
    write_jsonl,
)

from puyu.chat import ChatTemplate
from puyu.errors import PuyuError
from puyu.finetune.sft_data import (
    Sample,
    SampleBatches,
    chat_templates,
    check_template,
    load_chat_samples,
    load_text_samples,
)
from puyu.model.attention_mask import document_causal_mask
from puyu.model.checkpoint import load_model
from puyu.model.config import ModelConfig
from puyu.tokenizer import Tokenizer
from puyu.train.distributed import DistInfo
from puyu.train.objectives import IGNORE_INDEX

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there", "loss": False},
    {"role": "user", "content": "Name a colour"},
    {"role": "assistant", "content": "Blue"},
]
TOOL_CHAT = {
    "tools": [ADD_TOOL],
    "messages": [
        {"role": "user", "content": "2+3?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}],
        },
        {"role": "tool", "content": "5"},
        {"role": "assistant", "content": "It is 5."},
    ],
}
# What each family's template writes for the call above (InternLM2's plugin protocol, Llama 3.1's JSON call,
# Qwen2's <tool_call> block), each followed by the end-of-turn token.
TOOL_CALL_TEXT = {
    "internlm2-tiny": '<|action_start|><|plugin|>\n{"name": "add", "parameters": {"a": 2, "b": 3}}<|action_end|>',
    "llama-tiny": '{"name": "add", "parameters": {"a": 2, "b": 3}}',
    "qwen2-tiny": '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>',
}


def _setup(tmp_path: Path, preset: str) -> tuple[Path, Tokenizer, ChatTemplate, ChatTemplate]:
    folder = tiny_model(tmp_path / preset, preset)
    tokenizer = Tokenizer.from_pretrained(folder)
    template, tool_template = chat_templates(tokenizer, ModelConfig.from_pretrained(folder).family)
    return folder, tokenizer, template, tool_template


@pytest.mark.parametrize("preset", PRESETS)
def test_labels_cover_exactly_the_trained_assistant_turns(tmp_path: Path, preset: str) -> None:
    _, tokenizer, template, tool_template = _setup(tmp_path, preset)
    end = END_TOKENS[preset]
    data = write_jsonl(
        tmp_path / "chat.jsonl", [{"messages": CHAT}, {"messages": [*CHAT[:2], {**CHAT[2], "loss": True}]}]
    )
    samples, report = load_chat_samples(data, tokenizer, template, tool_template, seq_len=512)
    assert report.samples == 2 and report.invalid == 0
    # The loss:false turn is context only; the end-of-turn token is trained (generation must stop there).
    assert labelled_runs(tokenizer, samples[0].labels) == [f"Blue{end}"]
    assert labelled_runs(tokenizer, samples[1].labels) == [f"Hello there{end}"]
    for sample in samples:
        assert len(sample.input_ids) == len(sample.labels)
        # Each label is the next input token: the shift is right.
        for t, label in enumerate(sample.labels[:-1]):
            if label != IGNORE_INDEX:
                assert label == sample.input_ids[t + 1]
        # The end token is a single special token, labelled as such.
        assert tokenizer.token_to_id(end) in sample.labels


@pytest.mark.parametrize("preset", PRESETS)
def test_tool_call_turns_are_labelled_and_tool_results_are_not(tmp_path: Path, preset: str) -> None:
    _, tokenizer, template, tool_template = _setup(tmp_path, preset)
    data = write_jsonl(tmp_path / "tools.jsonl", [TOOL_CHAT])
    samples, report = load_chat_samples(data, tokenizer, template, tool_template, seq_len=2048)
    end = END_TOKENS[preset]
    assert report.samples == 1
    assert labelled_runs(tokenizer, samples[0].labels) == [TOOL_CALL_TEXT[preset] + end, f"It is 5.{end}"]


def test_bad_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    _, tokenizer, template, tool_template = _setup(tmp_path, "qwen2-tiny")
    rows = [
        {"messages": CHAT},
        {"messages": [{"role": "user", "content": "anyone?"}]},
        "{not json",
        {"messages": CHAT},
        {"instruction": "Say hi", "output": "hi"},
    ]
    data = write_jsonl(tmp_path / "mixed.jsonl", rows)
    samples, report = load_chat_samples(data, tokenizer, template, tool_template, seq_len=512)
    assert len(samples) == report.samples == 3
    assert report.invalid == 2
    assert report.errors[0] == f"{data}:2: no assistant turn"
    assert report.errors[1].startswith(f"{data}:3: malformed json")
    assert "3 samples" in report.summary() and "2 invalid" in report.summary()


def test_no_usable_record_is_an_error_naming_the_lines(tmp_path: Path) -> None:
    _, tokenizer, template, tool_template = _setup(tmp_path, "qwen2-tiny")
    data = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "only a question"}]}])
    with pytest.raises(PuyuError, match=r"no usable chat records: .*bad\.jsonl:1: no assistant turn"):
        load_chat_samples(data, tokenizer, template, tool_template, seq_len=512)


def test_template_of_another_model_is_refused(tmp_path: Path) -> None:
    _, tokenizer, _, _ = _setup(tmp_path, "internlm2-tiny")
    with pytest.raises(PuyuError, match=r"chat template 'llama3' does not match the tokenizer of /x/m: .*<\|eot_id\|>"):
        check_template(ChatTemplate.builtin("llama3"), tokenizer, owner="/x/m")
    with pytest.raises(PuyuError, match="'llama3' does not match"):
        chat_templates(tokenizer, "internlm2", "llama3")
    check_template(ChatTemplate.builtin("internlm2"), tokenizer)  # its own template fits


@pytest.mark.parametrize(("truncation", "kept"), [("right", 1), ("drop", 0)])
def test_truncation_policy_is_counted(tmp_path: Path, truncation: str, kept: int) -> None:
    _, tokenizer, template, tool_template = _setup(tmp_path, "qwen2-tiny")
    long_answer = {"messages": [{"role": "user", "content": "Go"}, {"role": "assistant", "content": "x" * 300}]}
    data = write_jsonl(tmp_path / "long.jsonl", [long_answer, *addition_rows()[:2]])
    samples, report = load_chat_samples(
        data,
        tokenizer,
        template,
        tool_template,
        seq_len=160,
        truncation=truncation,  # type: ignore[arg-type]
    )
    assert max(len(s) for s in samples) <= 160
    assert report.samples == 2 + kept
    assert (report.truncated, report.dropped) == ((1, 0) if truncation == "right" else (0, 1))


def test_packing_restarts_positions_and_keeps_samples_apart(tmp_path: Path) -> None:
    folder, tokenizer, template, tool_template = _setup(tmp_path, "llama-tiny")
    data = write_jsonl(tmp_path / "add.jsonl", addition_rows()[:12])
    samples, _ = load_chat_samples(data, tokenizer, template, tool_template, seq_len=256)
    batches = SampleBatches(samples, seq_len=256, micro_batch_size=2, grad_accum=1, pad_id=0, packing=True, seed=3)
    (batch,) = batches.next_step(torch.device("cpu"))
    assert batch.input_ids.shape == (2, 256) and batch.position_ids is not None
    order = batches.order._order
    row = batch.position_ids[0].tolist()
    starts = [t for t, p in enumerate(row) if p == 0]
    first, second = samples[order[0]], samples[order[1]]
    assert starts[:3] == [0, len(first), len(first) + len(second)]
    assert batch.input_ids[0, : len(first)].tolist() == first.input_ids
    assert batch.labels[0, len(first) : len(first) + len(second)].tolist() == second.labels
    assert row[len(first) : len(first) + len(second)] == list(range(len(second)))

    # The packed forward gives the second sample the logits it has alone: no attention across samples.
    model = load_model(folder, dtype="float32")
    with torch.no_grad():
        mask = document_causal_mask(batch.position_ids)
        packed = model(batch.input_ids, positions=batch.position_ids, mask=mask)[0]
        alone = model(torch.tensor([second.input_ids]))[0]
    torch.testing.assert_close(packed[len(first) : len(first) + len(second)], alone, atol=1e-5, rtol=1e-5)
    # Padding is never a target.
    pad_from = sum(len(samples[i]) for i in order[: len(starts) - 1])
    assert (batch.labels[0, pad_from:] == IGNORE_INDEX).all()


def test_padding_mode_and_resume_position(tmp_path: Path) -> None:
    _, tokenizer, template, tool_template = _setup(tmp_path, "qwen2-tiny")
    data = write_jsonl(tmp_path / "add.jsonl", addition_rows()[:10])
    samples, _ = load_chat_samples(data, tokenizer, template, tool_template, seq_len=256)
    info = DistInfo()

    def source() -> SampleBatches:
        return SampleBatches(samples, seq_len=256, micro_batch_size=4, grad_accum=2, pad_id=7, packing=False, seed=1)

    first = source()
    step = first.next_step(torch.device("cpu"))
    assert all(b.position_ids is None for b in step)
    lengths = [len(samples[i]) for i in first.order._order[:4]]
    assert step[0].input_ids.shape == (4, max(lengths))
    for row, length in enumerate(lengths):
        assert (step[0].labels[row, length:] == IGNORE_INDEX).all()
        assert (step[0].input_ids[row, length:] == 7).all()
    # A source restored from the state continues where the first one is (across the epoch boundary too).
    state = first.state_dict(info)
    resumed = source()
    resumed.load_state_dict(state, info)
    for _ in range(3):
        expected, got = first.next_step(torch.device("cpu")), resumed.next_step(torch.device("cpu"))
        for a, b in zip(expected, got, strict=True):
            assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)


def test_text_samples_cover_every_token(tmp_path: Path) -> None:
    folder = tiny_model(tmp_path / "m", "internlm2-tiny")
    tokenizer = Tokenizer.from_pretrained(folder)
    text = tmp_path / "doc.txt"
    text.write_text("abcdefghij" * 5)
    samples, report = load_text_samples([text], tokenizer, seq_len=16)
    ids = [*tokenizer.encode("abcdefghij" * 5), tokenizer.eos_id]
    inputs = ids[:-1]  # the last token (EOS) is only predicted
    assert [s.input_ids for s in samples] == [inputs[i : i + 16] for i in range(0, len(inputs), 16)]
    assert sum(s.num_targets for s in samples) == len(ids) - 1  # every token but the first is predicted
    assert report.samples == len(samples) and report.truncated == len(samples) - 1


def test_sample_lengths_match() -> None:
    sample = Sample([1, 2, 3], [2, 3, IGNORE_INDEX])
    assert len(sample) == 3 and sample.num_targets == 2
