"""int4 at group sizes that do not divide a layer's inputs: the last group is padded, nothing stays in fp32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from puyu.generation.generator import Generator
from puyu.generation.sampling import SamplingParams
from puyu.model import load_model
from puyu.model.init import init_model_folder
from puyu.quant.quantize import quantize_folder
from puyu.quant.weight_only import Int4Linear, int4_round_trip

GREEDY = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)


def test_padded_layer_equals_its_reference_and_the_unpadded_quantization():
    torch.manual_seed(0)
    linear = torch.nn.Linear(688, 48, bias=False)
    layer = Int4Linear.from_linear(linear, group_size=128)
    assert layer.padded_in == 768
    x = torch.randn(3, 688)
    reference = x @ int4_round_trip(linear.weight, 128).t()
    torch.testing.assert_close(layer.reference_forward(x), reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer(x), reference, rtol=1e-4, atol=1e-4)  # the packed kernel, inputs padded
    # The first 640 columns form whole groups: quantized exactly as without padding.
    whole = int4_round_trip(linear.weight[:, :640], 128)
    torch.testing.assert_close(layer.dequantize()[:, :640], whole)
    relative = (layer.dequantize() - linear.weight).norm() / linear.weight.norm()
    assert relative < 0.1


def layer_bytes(folder: Path) -> int:
    """Bytes of the decoder layers' tensors (the tiny model's embeddings would hide the difference)."""
    with safe_open(folder / "model.safetensors", framework="pt") as handle:
        tensors = [handle.get_tensor(name) for name in handle.keys() if ".layers." in name]  # noqa: SIM118
    return sum(t.numel() * t.element_size() for t in tensors)


@pytest.fixture(scope="module")
def ragged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # FFN 688: the down projection's inputs do not split into groups of 32 (the quickstart model's shape)
    root = tmp_path_factory.mktemp("ragged")
    return init_model_folder("internlm2-tiny", root / "base", overrides={"intermediate_size": 688}, seed=3)


def test_int4_folder_quantizes_every_layer_and_is_smaller_than_int8(ragged: Path, tmp_path: Path):
    int4 = quantize_folder(ragged, tmp_path / "int4", method="int4", group_size=32)
    int8 = quantize_folder(ragged, tmp_path / "int8", method="int8")
    model = load_model(int4)
    layers = [m for m in model.modules() if isinstance(m, Int4Linear)]
    assert len(layers) == 7 * model.config.num_layers  # q, k, v, o, gate, up, down: none kept in fp32
    assert layer_bytes(int4) < 0.6 * layer_bytes(int8)
    # Reloaded from disk: the same tokens as the model quantized in memory, close to the fp32 model's logits.
    ids = torch.tensor([[5, 9, 13, 17, 21, 25]])
    full = load_model(ragged, dtype="float32")
    with torch.no_grad():
        error = (model(ids) - full(ids)).abs().max() / full(ids).abs().max()
    assert error < 0.25
    assert len(Generator.from_pretrained(int4).generate([5, 9, 13], GREEDY).token_ids) == 8
