"""`puyu export`: training checkpoints to HF folders in each layout, read back by puyu and transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from puyu.cli import main
from puyu.errors import PuyuError
from puyu.model import ModelConfig, load_model
from puyu.model.init import random_model
from puyu.tokenizer import Tokenizer, byte_level_tokenizer
from puyu.train.checkpoint import TrainState, save_checkpoint
from puyu.train.export import export_checkpoint, load_checkpoint_model


def _trained_run(run_dir: Path, preset: str, steps: int = 2, tokenizer: bool = True) -> torch.nn.Module:
    """A run folder with checkpoints after each of `steps` AdamW steps (weights moved off their init)."""
    config = ModelConfig.from_name(preset)
    model = random_model(config, seed=0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        ids = torch.randint(0, config.vocab_size, (2, 9), generator=generator)
        F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten()).backward()
        optimizer.step()
        optimizer.zero_grad()
        save_checkpoint(run_dir, model, optimizer, None, TrainState(step=step), model_config=config, train_config={})
    if tokenizer:
        byte_level_tokenizer("internlm2").save_pretrained(run_dir / "tokenizer")
    return model.eval()


@pytest.fixture(scope="module")
def internlm2_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    run_dir = tmp_path_factory.mktemp("export") / "run"
    return run_dir, _trained_run(run_dir, "internlm2-tiny")


def test_own_layout_round_trips_exactly(internlm2_run, tmp_path: Path):
    run_dir, trained = internlm2_run
    out = export_checkpoint(run_dir, tmp_path / "hf")  # a run folder: its latest checkpoint
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["InternLM2ForCausalLM"] and config["torch_dtype"] == "float32"
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as handle:
        assert "model.layers.0.attention.wqkv.weight" in handle.keys()  # noqa: SIM118
    loaded = load_model(out)
    assert loaded.state_dict().keys() == trained.state_dict().keys()
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in loaded.state_dict().items())
    # The run's tokenizer came along, and it is the same tokenizer.
    text = "Export <|im_start|> works."
    assert Tokenizer.from_pretrained(out).encode(text) == Tokenizer.from_pretrained(run_dir / "tokenizer").encode(text)


def test_earlier_checkpoint_and_bfloat16(internlm2_run, tmp_path: Path):
    run_dir, trained = internlm2_run
    first = run_dir / "checkpoints" / "step-00000001"
    out = export_checkpoint(first, tmp_path / "hf", dtype="bfloat16")
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    loaded = load_model(out, dtype="bfloat16")
    expected = load_checkpoint_model(first, dtype="bfloat16")
    assert all(torch.equal(v, expected.state_dict()[k]) for k, v in loaded.state_dict().items())
    # Step 1's weights, not the latest ones.
    assert not torch.equal(loaded.model.norm.weight, trained.model.norm.weight.bfloat16())
    assert (out / "tokenizer.json").is_file()  # a step folder inside a run finds the run's tokenizer


def test_llama_layout_loads_in_transformers_with_the_same_logits(internlm2_run, tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    run_dir, trained = internlm2_run
    out = export_checkpoint(run_dir, tmp_path / "llama", family="llama")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "auto_map" not in config
    reference = transformers.LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(ids).logits
        ours = trained(ids)
    assert (expected - ours).abs().max().item() <= 1e-5


def test_tied_qwen2_round_trip(tmp_path: Path):
    trained = _trained_run(tmp_path / "run", "qwen2-tiny", steps=1, tokenizer=False)
    out = export_checkpoint(tmp_path / "run" / "checkpoints", tmp_path / "hf")
    loaded = load_model(out)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    assert not (out / "tokenizer.json").exists()  # the run saved no tokenizer
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_refusals_write_nothing(internlm2_run, tmp_path: Path):
    run_dir, _ = internlm2_run
    with pytest.raises(PuyuError, match="the Qwen2 layout always has q/k/v bias"):
        export_checkpoint(run_dir, tmp_path / "qwen2", family="qwen2")
    assert not (tmp_path / "qwen2").exists()
    with pytest.raises(PuyuError, match="unknown dtype 'int8'"):
        export_checkpoint(run_dir, tmp_path / "int8", dtype="int8")
    with pytest.raises(PuyuError, match="output folder must lie outside the checkpoint"):
        export_checkpoint(run_dir, run_dir / "checkpoints" / "step-00000002" / "hf")
    with pytest.raises(PuyuError, match="neither a training checkpoint"):
        export_checkpoint(tmp_path, tmp_path / "out")
    (tmp_path / "empty-run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(PuyuError, match="checkpoints: no complete checkpoint"):
        export_checkpoint(tmp_path / "empty-run", tmp_path / "out")
    big = tmp_path / "big-tokenizer"
    byte_level_tokenizer("internlm2").save_pretrained(big)
    model = random_model(ModelConfig.from_name("internlm2-tiny", vocab_size=8))
    save_checkpoint(tmp_path / "tiny-vocab", model, torch.optim.AdamW(model.parameters()), None, TrainState(1),
                    model_config=model.config, train_config={})  # fmt: skip
    with pytest.raises(PuyuError, match="tokens, the model only 8 embeddings"):
        export_checkpoint(tmp_path / "tiny-vocab", tmp_path / "out", tokenizer=big)
    assert not (tmp_path / "out").exists()


def test_cli(internlm2_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    run_dir, trained = internlm2_run
    assert main(["export", str(run_dir), "--out", str(tmp_path / "hf"), "--layout", "llama"]) == 0
    printed = capsys.readouterr().out
    assert "step-00000002" in printed and "no tokenizer" not in printed
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "llama"
    assert torch.equal(load_model(tmp_path / "hf").model.norm.weight, trained.model.norm.weight)
    bare = tmp_path / "bare-run"
    _trained_run(bare, "internlm2-tiny", steps=1, tokenizer=False)
    assert main(["export", str(bare), "--out", str(tmp_path / "bare")]) == 0
    assert "no tokenizer copied" in capsys.readouterr().out
    tokenizer = str(run_dir / "tokenizer")
    assert main(["export", str(bare), "--out", str(tmp_path / "bare"), "--tokenizer", tokenizer]) == 0
    assert (tmp_path / "bare" / "tokenizer.json").is_file()
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("puyu: error: ") and "missing: no such file or folder" in error and error.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["export", str(run_dir), "--out", str(tmp_path / "x"), "--layout", "gpt2"])
