"""The image world, image QA evaluation and LLaVA-style fine-tuning on a tiny random InternVL model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from puyu.chat import ChatTemplate
from puyu.cli import main
from puyu.data.image_world import KINDS, render_world, sample
from puyu.eval.image_qa import LETTERS, evaluate_image_qa, load_records, score
from puyu.finetune.vision import VisionFinetuneConfig, encode_sample, finetune_vision
from puyu.model.vision import load_vlm
from puyu.model.vision.init import init_vlm_folder
from puyu.model.vision.runtime import VisionRuntime
from puyu.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_world(tmp_path_factory.mktemp("world") / "w", count=10, seed=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_vlm_folder(tmp_path_factory.mktemp("vlm") / "tiny", seed=2)


def test_world_is_deterministic_and_consistent(world: Path, tmp_path: Path):
    records = [json.loads(line) for line in (world / "qa.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == [KINDS[i % len(KINDS)] for i in range(10)]
    assert all(r["answer"] in r["choices"] for r in records)
    again = render_world(tmp_path / "again", count=10, seed=3)
    assert (again / "images/00004.png").read_bytes() == (world / "images/00004.png").read_bytes()
    assert sample(4, seed=4).image.tobytes() != sample(4, seed=3).image.tobytes()
    sft = [json.loads(line) for line in (world / "sft.jsonl").read_text().splitlines()]
    assert sft[0]["messages"][1]["content"] == records[0]["answer"]


def test_scoring_rules():
    record = {"answer": "blue", "choices": ["red", "blue", "green", "yellow"]}
    assert score(record, "B", "choice") and score(record, " B. blue", "choice") and not score(record, "A", "choice")
    assert score(record, "Blue.", "short") and not score(record, "light blue", "short")


def test_evaluation_with_a_perfect_and_a_wrong_model(world: Path):
    records = load_records(world / "qa.jsonl")
    by_question = {}

    def oracle(conversations, params):
        out = []
        for conversation in conversations:
            text = conversation[0]["content"][1]["text"]
            record = next(r for r in records if text.startswith(r["question"]) and r["id"] not in by_question)
            by_question[record["id"]] = True
            out.append(LETTERS[record["choices"].index(record["answer"])])
        return out

    assert evaluate_image_qa(oracle, records, "choice", batch_size=3).accuracy == 1.0
    wrong = evaluate_image_qa(lambda convs, params: ["nothing"] * len(convs), records, "short")
    assert wrong.accuracy == 0.0 and set(wrong.by_kind) == set(KINDS)


def test_eval_image_qa_command(folder: Path, world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "scores.json"
    argv = ["eval", "image-qa", "--model", str(folder), "--data", str(world / "qa.jsonl"), "--limit", "4"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "image-qa (choice) accuracy" in capsys.readouterr().out
    assert json.loads(out.read_text())["count"] == 4


def test_training_mask_covers_the_assistant_answer_only(folder: Path, world: Path):
    vlm = load_vlm(folder)
    tokenizer = Tokenizer.from_pretrained(folder)
    runtime = VisionRuntime.for_folder(folder, vlm.encoder, tokenizer)
    template = ChatTemplate.for_model(tokenizer, "qwen2")
    record = json.loads((world / "sft.jsonl").read_text().splitlines()[0])
    encoded = encode_sample(record["messages"], runtime, template, tokenizer, world)
    targets = tokenizer.decode([t for t, m in zip(encoded.ids, encoded.mask, strict=True) if m])
    text_only = [{"role": "user", "content": "q"}, record["messages"][1]]
    ids, mask = template.encode(tokenizer, text_only)
    assert targets == tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert encoded.ids.count(runtime.image_tokens.context) == encoded.pixels.shape[0] * runtime.tokens_per_tile


@pytest.mark.parametrize("stage", ["lora", pytest.param("projector", marks=pytest.mark.slow)])
def test_stages_train_what_they_should(folder: Path, world: Path, tmp_path: Path, stage: str):
    config = VisionFinetuneConfig(
        model=str(folder), data=str(world / "sft.jsonl"), run_dir=str(tmp_path / stage), stage=stage,
        max_steps=2, micro_batch_size=2, lr=1e-2, peak_flops=1e12, progress=False,
    )  # fmt: skip
    result = finetune_vision(config)
    before, after = load_vlm(folder).state_dict(), load_vlm(result.output).state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and not any(name.startswith("encoder.vision_tower") for name in changed)
    if stage == "projector":
        assert all(name.startswith("encoder.multi_modal_projector") for name in changed)
    else:
        assert all(name.startswith("language_model") and "proj" in name for name in changed)
        adapter = json.loads((result.adapter / "adapter_config.json").read_text())
        assert adapter["peft_type"] == "LORA" and (result.adapter / "adapter_model.safetensors").is_file()
