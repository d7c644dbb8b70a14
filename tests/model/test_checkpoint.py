"""HF folder IO: layouts, round trips, sharding, dtypes and every bad-input path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from puyu.errors import PuyuError
from puyu.model import ModelConfig, load_model, save_model
from puyu.model.convert import convert_checkpoint
from puyu.model.init import random_model
from puyu.model.weight_names import fuse_wqkv, split_wqkv


def _tiny(family: str = "internlm2", **overrides) -> ModelConfig:
    return ModelConfig.from_name(f"{family}-tiny", vocab_size=128, **overrides)


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype for k in sa)


def test_wqkv_rows_follow_the_documented_grouping():
    """Rows of wqkv: for each KV head, its G query heads, then its key head, then its value head."""
    config = _tiny(num_heads=4, num_kv_heads=2, hidden_size=8)  # head_dim 2, G = 2
    d, g = config.head_dim, config.kv_groups
    # Fill each head's rows with a code: q head h → 100 + h, k head j → 200 + j, v head j → 300 + j.
    q = torch.cat([torch.full((d, 8), 100.0 + h) for h in range(4)])
    k = torch.cat([torch.full((d, 8), 200.0 + j) for j in range(2)])
    v = torch.cat([torch.full((d, 8), 300.0 + j) for j in range(2)])
    fused = fuse_wqkv(q, k, v, config)
    head_codes = fused[::d, 0].tolist()
    assert head_codes == [100, 101, 200, 300, 102, 103, 201, 301]
    assert g == 2
    for original, recovered in zip((q, k, v), split_wqkv(fused, config), strict=True):
        assert torch.equal(original, recovered)


@pytest.mark.parametrize("family", ["internlm2", "llama", "qwen2"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_save_load_round_trip_is_bit_identical(tmp_path: Path, family: str, dtype: str):
    model = random_model(_tiny(family), seed=1, dtype=getattr(torch, dtype))
    save_model(model, tmp_path, dtype=dtype)
    loaded = load_model(tmp_path, dtype=dtype)
    assert _states_equal(model, loaded)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == dtype


def test_internlm2_folder_uses_internlm2_names(tmp_path: Path):
    save_model(random_model(_tiny("internlm2")), tmp_path)
    names = set(load_file(tmp_path / "model.safetensors"))
    assert {"model.tok_embeddings.weight", "output.weight", "model.norm.weight"} <= names
    assert {"model.layers.0.attention.wqkv.weight", "model.layers.1.feed_forward.w2.weight"} <= names
    assert not any("q_proj" in n for n in names)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["InternLM2ForCausalLM"] and config["model_type"] == "internlm2"


def test_sharded_save_writes_index_and_loads_back(tmp_path: Path):
    model = random_model(_tiny("llama"), seed=2)
    save_model(model, tmp_path, max_shard_size="40KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (tmp_path / "model.safetensors").exists()
    assert _states_equal(model, load_model(tmp_path))
    # Saving again unsharded removes the stale shards and the index.
    save_model(model, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("model*")) == ["model.safetensors"]


def test_pytorch_bin_loads(tmp_path: Path):
    model = random_model(_tiny("qwen2"), seed=3)
    save_model(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert _states_equal(model, load_model(tmp_path))


def test_tied_checkpoint_may_carry_lm_head(tmp_path: Path):
    model = random_model(_tiny("qwen2"), seed=4)
    save_model(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = load_model(tmp_path)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize(("source", "target"), [("internlm2", "llama"), ("llama", "internlm2")])
def test_convert_both_ways_is_exact(tmp_path: Path, source: str, target: str):
    model = random_model(_tiny(source), seed=5, dtype=torch.bfloat16)
    save_model(model, tmp_path / "a", dtype="bfloat16")
    convert_checkpoint(tmp_path / "a", tmp_path / "b", target)
    convert_checkpoint(tmp_path / "b", tmp_path / "c", source)
    assert ModelConfig.from_pretrained(tmp_path / "b").family == target
    assert (
        load_file(tmp_path / "a" / "model.safetensors").keys() == load_file(tmp_path / "c" / "model.safetensors").keys()
    )
    a, c = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "c" / "model.safetensors")
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert _states_equal(load_model(tmp_path / "a", dtype="bfloat16"), load_model(tmp_path / "b", dtype="bfloat16"))


def test_auto_dtype_on_cpu_is_float32_for_bf16_checkpoints(tmp_path: Path):
    save_model(random_model(_tiny()), tmp_path, dtype="bfloat16")
    assert load_model(tmp_path).dtype == torch.float32
    assert load_model(tmp_path, dtype="bfloat16").dtype == torch.bfloat16


def test_auto_dtype_keeps_bf16_when_fp32_would_not_fit(monkeypatch: pytest.MonkeyPatch):
    from puyu.model import checkpoint

    cpu = torch.device("cpu")
    monkeypatch.setattr(checkpoint, "available_memory_bytes", lambda: 20 * 2**30)
    monkeypatch.setattr(checkpoint, "cpu_has_fast_bf16", lambda: True)
    seven_b = ModelConfig.from_name("internlm2.5-7b-chat").num_parameters()
    assert checkpoint.resolve_dtype("auto", "bfloat16", cpu, seven_b) == torch.bfloat16
    assert checkpoint.resolve_dtype("auto", "bfloat16", cpu, 10**9) == torch.float32
    monkeypatch.setattr(checkpoint, "cpu_has_fast_bf16", lambda: False)
    assert checkpoint.resolve_dtype("auto", "bfloat16", cpu, seven_b) == torch.float32
    assert checkpoint.resolve_dtype("float16", "bfloat16", cpu, 10) == torch.float16


def test_meta_init_holds_no_second_copy(tmp_path: Path):
    """Loading never materialises a randomly initialised model: every parameter comes from the file."""
    save_model(random_model(_tiny()), tmp_path)
    loaded = load_model(tmp_path)
    assert all(not p.is_meta for p in loaded.parameters())
    assert not loaded.rotary.inv_freq.is_meta


def test_real_internlm2_config_reads_and_writes_back(shared_data: Path):
    raw = json.loads((shared_data / "internlm2" / "config-internlm2-chat-1_8b.json").read_text())
    config = ModelConfig.from_hf(raw)
    assert config == ModelConfig.from_name("internlm2-chat-1.8b")
    written = config.to_hf()
    for key in ("hidden_size", "num_key_value_heads", "rope_theta", "vocab_size", "bias", "architectures"):
        assert written[key] == raw[key]
    assert written["rope_scaling"]["type"] == "dynamic" and written["rope_scaling"]["factor"] == 2.0


def test_config_round_trips_through_hf_json():
    for name in ("internlm2-chat-1.8b", "llama-3.1-8b", "qwen2-0.5b", "internlm2-20b"):
        config = ModelConfig.from_name(name)
        assert ModelConfig.from_hf(config.to_hf()) == config


def test_preset_overrides_rederive_head_dim():
    # A preset's head width is derived from its shape, so widening the model widens the heads too.
    assert ModelConfig.from_name("internlm2-tiny").head_dim == 16
    assert ModelConfig.from_name("internlm2-tiny", hidden_size=256).head_dim == 64
    assert ModelConfig.from_name("internlm2-tiny", hidden_size=256, num_heads=8, num_kv_heads=2).head_dim == 32
    assert ModelConfig.from_name("internlm2-tiny", hidden_size=256, head_dim=32).head_dim == 32
    assert ModelConfig.from_name("internlm2-tiny").replace(hidden_size=128).head_dim == 32


# ---- bad input ------------------------------------------------------------------------------


def _saved(tmp_path: Path, family: str = "internlm2") -> Path:
    save_model(random_model(_tiny(family)), tmp_path)
    return tmp_path


def test_unknown_architecture(tmp_path: Path):
    folder = _saved(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PuyuError, match=r"config\.json: unknown architectures \['GPT2LMHeadModel'\]"):
        load_model(folder)


def test_missing_tensor(tmp_path: Path):
    folder = _saved(tmp_path)
    state = load_file(folder / "model.safetensors")
    del state["model.layers.1.feed_forward.w3.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(PuyuError, match=r"missing tensors model\.layers\.1\.feed_forward\.w3\.weight"):
        load_model(folder)


def test_unexpected_tensor(tmp_path: Path):
    folder = _saved(tmp_path)
    state = load_file(folder / "model.safetensors")
    state["model.layers.0.attention.extra.weight"] = torch.zeros(2)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(PuyuError, match=r"unexpected tensors model\.layers\.0\.attention\.extra\.weight"):
        load_model(folder)


def test_shape_mismatch_names_file_and_tensor(tmp_path: Path):
    folder = _saved(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] += 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        PuyuError, match=r"model\.safetensors: tensor model\.layers\.0\.feed_forward\.w1\.weight has shape"
    ):
        load_model(folder)


def test_truncated_safetensors(tmp_path: Path):
    folder = _saved(tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(PuyuError, match=r"model\.safetensors: unreadable safetensors file"):
        load_model(folder)


def test_garbage_safetensors_header(tmp_path: Path):
    folder = _saved(tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}")
    with pytest.raises(PuyuError, match="unreadable safetensors file"):
        load_model(folder)


def test_no_weights_and_no_config(tmp_path: Path):
    with pytest.raises(PuyuError, match=r"needs config\.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(_tiny().to_hf()))
    with pytest.raises(PuyuError, match="no weights found"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PuyuError, match=r"config\.json: not valid JSON"):
        load_model(tmp_path)


def test_index_listing_a_missing_shard(tmp_path: Path):
    folder = _saved(tmp_path)
    index = {"metadata": {}, "weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(PuyuError, match=r"lists model-00002-of-00002\.safetensors, which is missing"):
        load_model(folder)


def test_corrupt_pytorch_bin(tmp_path: Path):
    folder = _saved(tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(PuyuError, match=r"pytorch_model\.bin: unreadable PyTorch weights"):
        load_model(folder)


def test_bad_config_values():
    with pytest.raises(PuyuError, match="missing required key 'hidden_size'"):
        ModelConfig.from_hf({"architectures": ["LlamaForCausalLM"]})
    with pytest.raises(PuyuError, match="not a multiple of num_kv_heads"):
        ModelConfig(num_heads=6, num_kv_heads=4, hidden_size=48)
    with pytest.raises(PuyuError, match="unsupported type 'yarn'"):
        _tiny(rope_scaling={"type": "yarn", "factor": 4.0})
    with pytest.raises(PuyuError, match="unknown preset"):
        ModelConfig.from_name("gpt-5")
