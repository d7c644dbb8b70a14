"""`puyu finetune` end to end on tiny models: every method's artefact, resume, learning, hooks, shipped configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from finetune_support import addition_rows, one_thread, preference_rows, quiet_config, tiny_model, write_jsonl  # noqa: F401
from safetensors.torch import load_file

from puyu.cli import main
from puyu.configuration import from_dict, load_config, to_dict
from puyu.errors import PuyuError
from puyu.finetune.config import FinetuneConfig
from puyu.finetune.hooks import EvaluateChatHook
from puyu.finetune.run import finetune, read_data
from puyu.finetune.sft_data import chat_templates
from puyu.generation.generator import Generator
from puyu.generation.sampling import SamplingParams
from puyu.model.checkpoint import load_model
from puyu.tokenizer import Tokenizer
from puyu.train.checkpoint import latest_checkpoint
from puyu.train.metrics import MetricsLogger, read_metrics

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")
FAST = ["peak_flops=1.0e+12", "log_every=1", "--no-progress"]  # a given peak skips the FLOP/s measurement


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("base") / "internlm2-tiny", "internlm2-tiny")


@pytest.fixture(scope="module")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "sft.jsonl", addition_rows()[:24])


def _train_steps(run: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run) if r["split"] == "train"]


def test_shipped_configs_parse() -> None:
    files = sorted((REPO / "configs" / "finetune").glob("*.yaml"))
    assert len(files) >= 4
    methods = {load_config(FinetuneConfig, file).method for file in files}
    assert methods == {"full", "lora", "qlora", "dpo", "orpo", "grpo"}


def test_full_cli_writes_an_hf_folder_and_resumes(base: Path, chats: Path, tmp_path: Path) -> None:
    run = tmp_path / "full"
    args = ["finetune", "--method", "full", "--model", str(base), "--data", str(chats), "--out", str(run)]
    assert main([*args, "--max-steps", "2", "--seq-len", "128", "checkpoint_every=2", *FAST]) == 0
    model = load_model(run / "model", dtype="float32")
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in (run / "model").iterdir()}
    assert Tokenizer.from_pretrained(run / "model").encode("hi") == Tokenizer.from_pretrained(base).encode("hi")
    changed = model.model.layers[0].mlp.up_proj.weight
    assert not torch.equal(changed, load_model(base, dtype="float32").model.layers[0].mlp.up_proj.weight)

    # A second call with more steps continues from the step-2 checkpoint instead of starting over.
    assert main([*args, "--max-steps", "4", "--seq-len", "128", "checkpoint_every=2", *FAST]) == 0
    assert _train_steps(run) == [1, 2, 3, 4]
    latest = latest_checkpoint(run)
    assert latest is not None and latest.name.endswith("04")
    weights = load_file(latest / "model.safetensors")
    assert "model.embed_tokens.weight" in weights  # nothing frozen: the whole model is checkpointed


def test_lora_cli_adapter_loads_back_and_checkpoints_hold_only_adapters(
    base: Path, chats: Path, tmp_path: Path
) -> None:
    from puyu.finetune.adapter import load_adapter
    from puyu.finetune.lora import lora_parameters

    run = tmp_path / "lora"
    args = ["finetune", "--method", "lora", "--model", str(base), "--data", str(chats), "--out", str(run)]
    assert main([*args, "--max-steps", "3", "--lora-r", "4", "--lr", "0.01", "checkpoint_every=2", *FAST]) == 0
    adapter = run / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "tokenizer.json").is_file()
    latest = latest_checkpoint(run)
    assert latest is not None
    saved = load_file(latest / "model.safetensors")
    assert saved and all("lora_" in name for name in saved)  # the frozen base is not copied into checkpoints

    model = load_model(base, dtype="float32")
    config = load_adapter(model, adapter)
    assert config.r == 4
    loaded = {name: p for name, p in model.named_parameters() if "lora_" in name}
    assert set(loaded) == set(saved)
    for name, value in saved.items():
        torch.testing.assert_close(loaded[name].detach(), value)
    assert any(p.abs().sum() > 0 for p in lora_parameters(model) if p.shape[1] == 4)  # B moved off zero

    # Resume: more steps continue from the adapter-only checkpoint.
    assert main([*args, "--max-steps", "4", "--lora-r", "4", "--lr", "0.01", "checkpoint_every=2", *FAST]) == 0
    assert _train_steps(run) == [1, 2, 3, 4]


def test_qlora_cli_trains_adapters_over_an_nf4_base(base: Path, chats: Path, tmp_path: Path) -> None:
    from puyu.finetune.adapter import load_adapter

    run = tmp_path / "qlora"
    args = ["finetune", "--method", "qlora", "--model", str(base), "--data", str(chats), "--out", str(run)]
    assert main([*args, "--max-steps", "2", "--lr", "0.01", *FAST]) == 0
    model = load_model(base, dtype="float32")
    load_adapter(model, run / "adapter")
    records = [r for r in read_metrics(run) if r["split"] == "train"]
    assert len(records) == 2 and all(r["loss"] > 0 for r in records)


def test_dpo_cli_writes_an_adapter(base: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pref.jsonl", preference_rows(8))
    run = tmp_path / "dpo"
    args = ["finetune", "--method", "dpo", "--model", str(base), "--data", str(data), "--out", str(run)]
    assert main([*args, "--max-steps", "2", "--batch-size", "2", "--beta", "0.2", *FAST]) == 0
    assert (run / "adapter" / "adapter_config.json").is_file()
    record = [r for r in read_metrics(run) if r["split"] == "train"][-1]
    assert {"rewards_chosen", "rewards_rejected", "rewards_margin", "accuracy"} <= record.keys()


def test_cli_reports_bad_data_and_settings(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "hello?"}]}])
    args = ["finetune", "--model", str(base), "--data", str(bad), "--out", str(tmp_path / "r"), *FAST]
    assert main([*args, "--method", "full"]) == 2
    assert f"{bad}:1: no assistant turn" in capsys.readouterr().err
    assert main([*args, "--method", "full", "--template", "llama3"]) == 2
    assert "chat template 'llama3' does not match the tokenizer of" in capsys.readouterr().err
    assert main([*args, "--method", "full", "--data-kind", "preference"]) == 2
    assert "preference data needs method dpo" in capsys.readouterr().err


def test_continued_pretraining_on_text(base: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 40)
    run = tmp_path / "cpt"
    args = ["finetune", "--method", "full", "--data-kind", "text", "--model", str(base), "--data", str(corpus)]
    assert main([*args, "--out", str(run), "--max-steps", "6", "--seq-len", "64", "--lr", "0.003", *FAST]) == 0
    losses = [r["loss"] for r in read_metrics(run) if r["split"] == "train"]
    assert losses[-1] < losses[0]
    report = json.loads((run / "data_report.json").read_text())
    assert report["kind"] == "text" and report["samples"] > 1


def test_sft_teaches_a_tiny_model_to_add(tmp_path: Path) -> None:
    folder = tiny_model(tmp_path / "m", "qwen2-tiny")
    data = write_jsonl(tmp_path / "add.jsonl", addition_rows())
    questions = [(a, b) for a in range(10) for b in range(10)]

    def accuracy(model_dir: Path) -> float:
        generator = Generator.from_pretrained(model_dir, dtype="float32")
        params = SamplingParams(max_tokens=4, temperature=0.0)
        answers = [
            generator.chat([{"role": "user", "content": f"What is {a} plus {b}?"}], params) for a, b in questions
        ]
        return sum(out.content.strip() == str(a + b) for out, (a, b) in zip(answers, questions, strict=True)) / 100

    before = accuracy(folder)
    config = quiet_config(
        tmp_path / "run",
        folder,
        data,
        method="full",
        max_steps=250,
        micro_batch_size=8,
        optimizer={"lr": 5e-3, "weight_decay": 0.0},
        schedule={"warmup_steps": 10},
        log_every=50,
    )
    result = finetune(config)
    after = accuracy(result.output)
    assert before <= 0.05
    assert after >= 0.5


def test_evaluate_chat_hook_answers_like_the_generator(base: Path, tmp_path: Path) -> None:
    model = load_model(base, dtype="float32").train()
    tokenizer = Tokenizer.from_pretrained(base)
    template, _ = chat_templates(tokenizer, "internlm2")
    prompts = ["What is 1 plus 1?", "Say hi"]
    hook = EvaluateChatHook(
        tokenizer, template, prompts, every=2, max_steps=5, run_dir=tmp_path, max_tokens=8, echo=False
    )
    with MetricsLogger(tmp_path) as logger:
        for step in range(1, 6):
            hook.after_step(step, model, logger)
    assert model.training  # train mode restored
    lines = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [(line["step"], line["prompt"]) for line in lines] == [(s, p) for s in (2, 4, 5) for p in prompts]
    reference = Generator(model.eval(), tokenizer, template)
    expected = reference.chat([{"role": "user", "content": prompts[0]}], SamplingParams(max_tokens=8, temperature=0.0))
    assert lines[0]["response"] == expected.content
    samples = [r for r in read_metrics(tmp_path) if r["split"] == "samples"]
    assert [r["step"] for r in samples] == [2, 4, 5] and samples[0]["response_0"] == expected.content


def test_resuming_a_run_of_another_method_is_refused(base: Path, chats: Path, tmp_path: Path) -> None:
    run = tmp_path / "mixed"
    common = ["--model", str(base), "--data", str(chats), "--out", str(run), "--max-steps", "2", *FAST]
    assert main(["finetune", "--method", "full", *common]) == 0
    with pytest.raises(PuyuError, match=r"lacks trainable weights .*lora_A"):
        finetune(
            load_config(
                FinetuneConfig,
                None,
                [
                    f"run_dir={run}",
                    f"model={base}",
                    f"data.path={chats}",
                    "method=lora",
                    "max_steps=3",
                    "progress=false",
                ],
            )
        )


def test_full_with_frozen_embeddings_keeps_them(base: Path, chats: Path, tmp_path: Path) -> None:
    run = tmp_path / "frozen"
    args = ["finetune", "--method", "full", "--model", str(base), "--data", str(chats), "--out", str(run)]
    assert main([*args, "--max-steps", "2", "--lr", "0.01", "freeze_embeddings=true", *FAST]) == 0
    tuned, original = load_model(run / "model", dtype="float32"), load_model(base, dtype="float32")
    assert torch.equal(tuned.model.embed_tokens.weight, original.model.embed_tokens.weight)
    assert not torch.equal(
        tuned.model.layers[1].self_attn.o_proj.weight, original.model.layers[1].self_attn.o_proj.weight
    )
    latest = latest_checkpoint(run)
    assert latest is not None
    assert "model.embed_tokens.weight" not in load_file(latest / "model.safetensors")


def test_replay_mixes_text_documents_into_chat_data(base: Path, chats: Path, tmp_path: Path) -> None:
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl", [{"text": f"Document {i}: the cat sat on the mat."} for i in range(5)]
    )
    settings = to_dict(quiet_config(tmp_path / "run", base, chats, method="full", max_steps=2))
    config = from_dict(FinetuneConfig, {**settings, "data": {**settings["data"], "replay": str(corpus)}})
    tokenizer = Tokenizer.from_pretrained(base)
    items, report, _ = read_data(config, tokenizer, load_model(base).config, progress=False)
    assert report.replay is not None and report.replay.samples == 5
    assert len(items) == report.samples + 5
    replayed = items[report.samples :]
    # Text documents train every token after the first, unlike chats, which train the assistant turns only.
    assert all(sample.num_targets == len(sample) for sample in replayed)
    assert tokenizer.decode(replayed[0].input_ids, skip_special_tokens=True) == "Document 0: the cat sat on the mat."
    result = finetune(config)
    written = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert written["replay"]["samples"] == 5 and written["samples"] == result.samples
    with pytest.raises(PuyuError, match=r"data\.replay mixes text into chat data"):
        from_dict(FinetuneConfig, {**settings, "data": {**settings["data"], "replay": str(corpus), "kind": "text"}})
