"""`puyu quickstart --size tiny`: every stage hands the next a valid artefact, and the cache works."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from puyu.cli import main
from puyu.model.checkpoint import load_model
from puyu.pipeline.quickstart import load_quickstart_config, run_quickstart
from puyu.tokenizer import Tokenizer

# The later stages call into fine-tuning, quantization and evaluation.
DOWNSTREAM = ("puyu.finetune.run", "puyu.finetune.adapter", "puyu.quant.quantize", "puyu.eval.api")
HAS_DOWNSTREAM = all(importlib.util.find_spec(name) is not None for name in DOWNSTREAM)


def _check_early_stages(records: dict) -> None:
    world = records["world"]
    assert json.loads(world.output("world").read_text())["people"]
    assert world.figures["eval_rows"]["tool_requests"] > 0
    documents = list(records["data"].output("documents").glob("*.jsonl"))
    assert documents and records["data"].figures["documents_written"] > 0
    assert records["data"].figures["documents_written"] < records["data"].figures["documents_read"]  # noise removed
    tokenizer = Tokenizer.from_pretrained(records["tokenizer"].output("tokenizer"))
    assert tokenizer.token_to_id("<|im_end|>") is not None and tokenizer.token_to_id("<|action_start|>") is not None
    assert json.loads((records["tokenizer"].output("tokens") / "manifest.json").read_text())["splits"]["train"]
    model = load_model(records["pretrain"].output("model"))
    assert model.config.family == "internlm2"
    assert model.config.vocab_size >= tokenizer.vocab_size
    assert records["pretrain"].figures["train_loss"] < 6.0  # below ln(400) = 6.0 after a few steps
    # Pretraining started from a folder whose ten space-digit tokens were blended with their digits.
    assert records["pretrain"].figures["number_starts_blended"] == 10
    assert (Path(records["pretrain"].dir) / "init" / "config.json").is_file()
    # A first phase on the copying documents alone, then the rest of the steps on the whole corpus from there.
    first_phase = [json.loads(line) for line in (records["pretrain"].output("skills_run") / "metrics.jsonl").open()]
    assert max(r["step"] for r in first_phase) == 4
    first_ids = [json.loads(line)["id"] for line in (Path(records["pretrain"].dir) / "skills.jsonl").open()]
    assert first_ids and {i.rsplit("-", 1)[0] for i in first_ids} == {"copying", "calculator", "dialogues"}
    assert records["pretrain"].figures["steps"] == 12


def test_tiny_chain_caches_and_reruns_downstream(tmp_path: Path) -> None:
    config = load_quickstart_config("tiny")
    lines: list[str] = []
    until = None if HAS_DOWNSTREAM else "pretrain"
    records = run_quickstart(tmp_path, config, until=until, echo=lines.append)
    _check_early_stages(records)
    assert all("cached" not in line for line in lines)

    lines.clear()
    again = run_quickstart(tmp_path, config, until=until, echo=lines.append)
    assert [line.split(":")[1].strip().split(" ")[0] for line in lines] == ["cached"] * len(again)
    assert {n: r.dir for n, r in again.items()} == {n: r.dir for n, r in records.items()}

    # --from reruns that stage and everything downstream; upstream stays cached.
    start = "sft" if HAS_DOWNSTREAM else "tokenizer"
    lines.clear()
    rerun = run_quickstart(tmp_path, config, from_stage=start, until=until, echo=lines.append)
    cached = {
        line.split("]")[1].split(":")[0].strip(): "cached" in line
        for line in lines
        if "done" in line or "cached" in line
    }
    downstream = list(rerun)[list(rerun).index(start) :]
    assert cached == {name: name not in downstream for name in rerun}
    assert all(rerun[name].finished >= records[name].finished for name in downstream)

    if HAS_DOWNSTREAM:
        merged = load_model(records["merge"].output("model"))
        assert merged.config.vocab_size == load_model(records["pretrain"].output("model")).config.vocab_size
        adapter = json.loads((records["sft"].output("adapter") / "adapter_config.json").read_text())
        assert adapter["r"] == config.sft["lora"]["r"]
        # The corpus files named by sft_replay were mixed into the SFT data as text.
        data_report = json.loads((records["sft"].output("run") / "data_report.json").read_text())
        assert config.sft_replay and data_report["replay"]["samples"] > 0
        assert [Path(f).stem for f in data_report["replay"]["files"]] == config.sft_replay
        # The chat tokens pretraining never saw had their rows trained beside the adapters, then merged.
        chat_ids = records["pretrain"].figures["new_token_ids"]
        tokenizer = Tokenizer.from_pretrained(records["pretrain"].output("model"))
        assert tokenizer.token_to_id("<|action_start|>") in chat_ids
        assert tokenizer.token_to_id("<|im_end|>") not in chat_ids  # the corpus's chat transcripts hold it
        assert adapter["trainable_token_indices"] == {"tok_embeddings": chat_ids, "output": chat_ids}
        base_rows = load_model(records["pretrain"].output("model")).model.embed_tokens.weight
        moved = (merged.model.embed_tokens.weight != base_rows).any(dim=1).nonzero().flatten().tolist()
        assert moved == chat_ids
        # With `train_digit_rows`, the digits' and space-digits' rows are trained too (only SFT reruns).
        from puyu.pipeline.digit_rows import number_start_pairs

        lines.clear()
        digits = run_quickstart(tmp_path, replace(config, train_digit_rows=True), until="sft", echo=lines.append)
        assert [line.split(":")[1].split()[0] for line in lines if "cached" in line] == ["cached"] * 4
        digit_ids = sorted({token for pair in number_start_pairs(tokenizer) for token in pair})
        assert len(digit_ids) == 20
        rows = json.loads((digits["sft"].output("adapter") / "adapter_config.json").read_text())
        assert rows["trainable_token_indices"]["tok_embeddings"] == chat_ids + digit_ids
        quantized = json.loads((records["quantize"].output("model") / "config.json").read_text())
        assert "quantization_config" in quantized
        scores = records["eval"].figures["scores"]
        assert set(scores) == {"base", "sft", "sft-int8"}
        assert set(scores["sft"]) == {"world_facts_qa", "world_facts_paraphrase", "world_facts_mc", "world_sums"}
        assert records["eval"].figures["tool_calls"]["sft"]["requests"] == config.tool_check_limit
        report = (tmp_path / "report.md").read_text()
        assert all(f"| {name} |" in report for name in records if name != "report")
        assert "## Goals" in report and "| correct calculator calls ≥ 80% |" in report
        assert (tmp_path / "stages").glob("report-*/loss.png") and (tmp_path / "model").resolve().is_dir()
        assert all((tmp_path / name).resolve().is_dir() for name in ("base-model", "int8-model"))
        assert f".venv/bin/puyu chat {tmp_path / 'model'} --temperature 0" in report
        assert "(not expected at --size tiny)" in report or "| yes |" in report


def test_cli_rejects_unknown_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quickstart", "--size", "tiny", "--out", str(tmp_path), "pretrain_steps=3"]) == 2
    assert "pretrain_steps" in capsys.readouterr().err


def test_overrides_reach_the_stage_settings_and_keys() -> None:
    from puyu.pipeline.quickstart import _dotted, build_pipeline

    base = load_quickstart_config("default")
    config = load_quickstart_config("default", 5, ["pretrain.max_steps=7", "data.filters.length.min_words=3"])
    assert (config.seed, config.pretrain["max_steps"]) == (5, 7)
    assert config.pretrain["micro_batch_size"] == base.pretrain["micro_batch_size"]  # a sibling setting survives
    assert _dotted(config.data) == {"filters.length.min_words": 3}
    before = build_pipeline("out", base)
    after = build_pipeline("out", load_quickstart_config("default", None, ["sft.max_steps=3"]))
    assert [before.key(n) == after.key(n) for n in before.names] == [True] * 4 + [False] * 5


def test_cli_rejects_a_first_phase_as_long_as_pretraining(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quickstart", "--size", "tiny", "--out", str(tmp_path), "skills_first_steps=12"]) == 2
    err = capsys.readouterr().err
    assert "skills_first_steps=12" in err and "(12)" in err and "Traceback" not in err
