"""InternVL folders: save → load round trips in both layouts, and the original layout converted both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from vlm_support import hf_internvl, image_prompt, pixels

from puyu.errors import PuyuError
from puyu.model.vision import VLMConfig, is_vlm_folder, load_vlm, save_vlm

pytest.importorskip("transformers")


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hf") / "internvl"
    hf_internvl("qwen2", attention_bias=True).save_pretrained(folder)
    return folder


def test_hf_layout_round_trip_is_bit_identical(hf_folder: Path, tmp_path: Path):
    ours = load_vlm(hf_folder, dtype="float32")
    save_vlm(ours, tmp_path / "again")
    assert (
        load_file(tmp_path / "again" / "model.safetensors").keys() == load_file(hf_folder / "model.safetensors").keys()
    )
    for name, tensor in load_file(hf_folder / "model.safetensors").items():
        assert torch.equal(load_file(tmp_path / "again" / "model.safetensors")[name], tensor), name
    again = load_vlm(tmp_path / "again", dtype="float32")
    for (name, a), (_, b) in zip(_state(ours).items(), _state(again).items(), strict=True):
        assert torch.equal(a, b), name
    assert is_vlm_folder(tmp_path / "again") and not is_vlm_folder(tmp_path)


def test_transformers_loads_what_we_save(hf_folder: Path, tmp_path: Path):
    import transformers

    ours = load_vlm(hf_folder, dtype="float32")
    save_vlm(ours, tmp_path / "saved", max_shard_size="20KB")
    assert (tmp_path / "saved" / "model.safetensors.index.json").is_file()
    theirs = transformers.InternVLForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    ids, tiles = image_prompt([ours.config.tokens_per_tile]), pixels(1)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(ids, tiles), theirs(input_ids=ids, pixel_values=tiles).logits, atol=1e-4, rtol=1e-4
        )


@pytest.mark.parametrize("family", ["qwen2", "internlm2"])
def test_original_layout_both_ways(hf_folder: Path, tmp_path: Path, family: str):
    hf = load_vlm(hf_folder, dtype="float32")
    model = hf
    if family == "internlm2":  # the same weights under InternLM2's names (fused wqkv); no q/k/v bias there
        llama_folder = tmp_path / "llama"
        hf_internvl("llama").save_pretrained(llama_folder)
        hf = load_vlm(llama_folder, dtype="float32")
        model = load_vlm(llama_folder, dtype="float32")
        model.config = model.config.replace(text=model.config.text.replace(family="internlm2"))
    original = save_vlm(model, tmp_path / "original", layout="original")
    raw = json.loads((original / "config.json").read_text())
    assert raw["architectures"] == ["InternVLChatModel"] and raw["llm_config"]["model_type"] == family
    names = load_file(original / "model.safetensors").keys()
    assert "vision_model.encoder.layers.0.attn.qkv.weight" in names and "mlp1.3.weight" in names
    assert "vision_model.embeddings.class_embedding" in names
    if family == "internlm2":
        assert "language_model.model.layers.0.attention.wqkv.weight" in names
    loaded = load_vlm(original, dtype="float32")
    assert loaded.config.layout == "original" and loaded.config.text.family == family
    ids, tiles = image_prompt([hf.config.tokens_per_tile] * 2), pixels(2)
    with torch.no_grad():
        assert torch.equal(loaded(ids, tiles), model(ids, tiles))
    if family == "qwen2":  # and back to the HF layout: the very tensors transformers wrote
        back = save_vlm(loaded, tmp_path / "back", layout="hf")
        expected = load_file(hf_folder / "model.safetensors")
        got = load_file(back / "model.safetensors")
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected)
        assert VLMConfig.from_pretrained(back).layout == "hf"


def test_internlm2_text_has_no_hf_native_layout(tmp_path: Path, hf_folder: Path):
    model = load_vlm(hf_folder, dtype="float32")
    model.config = model.config.replace(text=model.config.text.replace(family="internlm2", qkv_bias=False))
    with pytest.raises(PuyuError, match="layout='original'"):
        save_vlm(model, tmp_path / "x", layout="hf")


def test_bad_folders_fail_with_one_line(hf_folder: Path, tmp_path: Path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text((hf_folder / "config.json").read_text())
    tensors = load_file(hf_folder / "model.safetensors")
    from safetensors.torch import save_file

    save_file(
        {k: v for k, v in tensors.items() if "mlp1" not in k and "linear_2" not in k}, folder / "model.safetensors"
    )
    with pytest.raises(PuyuError, match="missing tensors"):
        load_vlm(folder)
    save_file({**tensors, "vision_tower.extra.weight": torch.zeros(1)}, folder / "model.safetensors")
    with pytest.raises(PuyuError, match="unexpected tensors"):
        load_vlm(folder)
    (folder / "config.json").write_text('{"model_type": "internvl", "vision_config": {"hidden_size": "x"}}')
    with pytest.raises(PuyuError, match="malformed"):
        load_vlm(folder)
