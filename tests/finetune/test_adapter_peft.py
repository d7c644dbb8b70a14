"""puyu's adapter folders against PEFT: PEFT loads them onto transformers models with puyu's logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from puyu.errors import PuyuError
from puyu.finetune.adapter import load_adapter, save_adapter
from puyu.finetune.lora import LoraConfig, apply_lora, lora_modules
from puyu.model import load_model
from puyu.model.init import init_model_folder

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


def _randomise_adapters(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_modules(model):
            layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=generator) * 0.2)
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.2)


def _ids(vocab: int = 512) -> torch.Tensor:
    return torch.randint(3, vocab, (2, 11), generator=torch.Generator().manual_seed(7))


def _adapted(base: Path, out: Path, lora: LoraConfig, seed: int) -> tuple[torch.nn.Module, Path, torch.Tensor]:
    """`base` with random LoRA adapters (saved to `out`), the adapter folder, and the model's logits on `_ids()`."""
    model = load_model(base, dtype="float32")
    apply_lora(model, lora, seed=1)
    _randomise_adapters(model, seed=seed)
    adapter = save_adapter(model, out, lora, base)
    with torch.no_grad():
        logits = model(_ids())
    return model, adapter, logits


@pytest.fixture(scope="module", params=["llama-tiny", "qwen2-tiny"])
def base_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_model_folder(request.param, tmp_path_factory.mktemp(request.param) / "base", seed=3)


@pytest.mark.parametrize(
    "lora",
    [
        LoraConfig(r=4, alpha=8.0),
        LoraConfig(r=3, alpha=5.0, target_modules=["q_proj", "v_proj", "down_proj"]),
    ],
    ids=["all", "some"],
)
def test_peft_loads_puyu_adapter_with_same_logits(base_folder: Path, tmp_path: Path, lora: LoraConfig) -> None:
    _, adapter, ours = _adapted(base_folder, tmp_path / "adapter", lora, seed=2)
    ids = _ids()

    hf = transformers.AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
    peft_model = peft.PeftModel.from_pretrained(hf, adapter).eval()
    with torch.no_grad():
        theirs = peft_model(input_ids=ids).logits
    assert (ours - theirs).abs().max().item() <= 1e-4
    # The adapter really changes the model (a silently ignored adapter would also "match" a no-op).
    with torch.no_grad(), peft_model.disable_adapter():
        base_logits = peft_model(input_ids=ids).logits
    assert (theirs - base_logits).abs().max().item() > 1e-2

    names = set(load_file(adapter / "adapter_model.safetensors"))
    assert "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight" in names
    written = json.loads((adapter / "adapter_config.json").read_text())
    assert written["peft_type"] == "LORA" and written["task_type"] == "CAUSAL_LM"
    assert written["r"] == lora.r and written["target_modules"] == lora.target_modules


def test_puyu_loads_peft_adapter(base_folder: Path, tmp_path: Path) -> None:
    """The other direction: an adapter PEFT trained (random here) and saved, loaded by puyu."""
    hf = transformers.AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
    config = peft.LoraConfig(r=2, lora_alpha=6, target_modules=["k_proj", "o_proj", "up_proj"], task_type="CAUSAL_LM")
    peft_model = peft.get_peft_model(hf, config)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    peft_model.save_pretrained(tmp_path / "peft")
    ids = _ids()
    with torch.no_grad():
        theirs = peft_model.eval()(input_ids=ids).logits

    model = load_model(base_folder, dtype="float32")
    loaded = load_adapter(model, tmp_path / "peft")
    assert loaded.r == 2 and loaded.alpha == 6 and loaded.target_modules == ["k_proj", "o_proj", "up_proj"]
    with torch.no_grad():
        ours = model(ids)
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_internlm2_fused_adapter_round_trip(tmp_path: Path) -> None:
    base = init_model_folder("internlm2-tiny", tmp_path / "base", seed=4)
    lora = LoraConfig(r=3, alpha=7.0)
    model, adapter, ours = _adapted(base, tmp_path / "adapter", lora, seed=9)
    ids = _ids()

    tensors = load_file(adapter / "adapter_model.safetensors")
    written = json.loads((adapter / "adapter_config.json").read_text())
    a = tensors["base_model.model.model.layers.0.attention.wqkv.lora_A.weight"]
    b = tensors["base_model.model.model.layers.0.attention.wqkv.lora_B.weight"]
    assert a.shape == (9, 64) and b.shape == ((4 + 2 * 2) * 16, 9)
    assert "base_model.model.model.layers.1.feed_forward.w2.lora_B.weight" in tensors
    assert written["target_modules"] == ["wqkv", "wo", "w1", "w3", "w2"]
    assert written["rank_pattern"]["model.layers.0.attention.wqkv"] == 9
    assert written["alpha_pattern"]["model.layers.0.attention.wqkv"] / 9 == pytest.approx(7.0 / 3)

    # The fused update is exactly the three separate ones, in wqkv's row order.
    from puyu.model.weight_names import fuse_wqkv

    attn = model.model.layers[0].self_attn
    separate = [getattr(attn, f"{x}_proj").delta_weight() for x in "qkv"]
    fused = (b @ a) * (written["alpha_pattern"]["model.layers.0.attention.wqkv"] / 9)
    assert torch.allclose(fused, fuse_wqkv(*separate, model.config), atol=1e-6)

    again = load_model(base, dtype="float32")
    config = load_adapter(again, adapter)
    assert config.r == 3 and again.model.layers[1].self_attn.k_proj.r == 3
    with torch.no_grad():
        assert (again(ids) - ours).abs().max().item() <= 1e-5


def test_fused_adapter_from_elsewhere_splits_exactly(tmp_path: Path) -> None:
    """A dense wqkv adapter (as PEFT trains on the remote-code model) loads as q/k/v adapters sharing its A."""
    base = init_model_folder("internlm2-tiny", tmp_path / "base", seed=4)
    model = load_model(base, dtype="float32")
    apply_lora(model, LoraConfig(r=2, alpha=4.0, target_modules=["wqkv"]), seed=1)
    _randomise_adapters(model, seed=3)
    adapter = save_adapter(model, tmp_path / "adapter", LoraConfig(r=2, alpha=4.0, target_modules=["wqkv"]), base)
    tensors = load_file(adapter / "adapter_model.safetensors")
    generator = torch.Generator().manual_seed(0)
    for layer in range(2):
        key = f"base_model.model.model.layers.{layer}.attention.wqkv.lora_B.weight"
        tensors[key] = torch.randn(tensors[key].shape, generator=generator) * 0.2  # dense: no block structure
    from safetensors.torch import save_file

    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    scale = (
        json.loads((adapter / "adapter_config.json").read_text())["alpha_pattern"]["model.layers.0.attention.wqkv"] / 6
    )

    loaded = load_model(base, dtype="float32")
    load_adapter(loaded, adapter)
    from puyu.model.weight_names import fuse_wqkv

    attn = loaded.model.layers[1].self_attn
    separate = [getattr(attn, f"{x}_proj").delta_weight() for x in "qkv"]
    a = tensors["base_model.model.model.layers.1.attention.wqkv.lora_A.weight"]
    b = tensors["base_model.model.model.layers.1.attention.wqkv.lora_B.weight"]
    assert torch.allclose(fuse_wqkv(*separate, loaded.config), (b @ a) * scale, atol=1e-6)


def test_adapter_for_another_base_is_refused(tmp_path: Path) -> None:
    small = init_model_folder("llama-tiny", tmp_path / "small")
    wide = init_model_folder(
        "llama-tiny", tmp_path / "wide", overrides={"hidden_size": 96, "num_heads": 6, "num_kv_heads": 3}
    )
    deep = init_model_folder("llama-tiny", tmp_path / "deep", overrides={"num_layers": 3})
    model = load_model(deep, dtype="float32")
    apply_lora(model, LoraConfig(r=2))
    adapter = save_adapter(model, tmp_path / "adapter", LoraConfig(r=2), deep)

    with pytest.raises(PuyuError, match=r"adapter .* was trained for .*deep, whose .* but the base model's maps"):
        load_adapter(load_model(wide, dtype="float32"), adapter)
    with pytest.raises(PuyuError, match=r"model\.layers\.2\..* but the base model .* has no such projection"):
        load_adapter(load_model(small, dtype="float32"), adapter)


class _InternLM2Layout(torch.nn.Module):
    """Only the module tree of InternLM2's remote-code model (names and shapes), enough for PEFT to attach to."""

    def __init__(self, hidden: int, fused_rows: int, inner: int, layers: int) -> None:
        super().__init__()
        self.model = torch.nn.Module()
        self.model.layers = torch.nn.ModuleList()
        for _ in range(layers):
            layer = torch.nn.Module()
            layer.attention = torch.nn.Module()
            layer.attention.wqkv = torch.nn.Linear(hidden, fused_rows, bias=False)
            layer.attention.wo = torch.nn.Linear(hidden, hidden, bias=False)
            layer.feed_forward = torch.nn.Module()
            for name, shape in (("w1", (hidden, inner)), ("w3", (hidden, inner)), ("w2", (inner, hidden))):
                setattr(layer.feed_forward, name, torch.nn.Linear(*shape, bias=False))
            self.model.layers.append(layer)

    def prepare_inputs_for_generation(self, *args: object, **kwargs: object) -> dict:
        return {}


def test_peft_attaches_internlm2_adapter_with_the_same_updates(tmp_path: Path) -> None:
    from puyu.model.weight_names import fuse_wqkv

    base = init_model_folder("internlm2-tiny", tmp_path / "base", seed=4)
    lora = LoraConfig(r=3, alpha=7.0)
    model = load_model(base, dtype="float32")
    apply_lora(model, lora, seed=1)
    _randomise_adapters(model, seed=9)
    adapter = save_adapter(model, tmp_path / "adapter", lora, base)

    c = model.config
    tree = _InternLM2Layout(c.hidden_size, (c.num_heads + 2 * c.num_kv_heads) * c.head_dim, c.intermediate_size, 2)
    attached = peft.PeftModel.from_pretrained(tree, adapter).base_model.model
    for i, layer in enumerate(model.model.layers):
        theirs = attached.model.layers[i]
        assert theirs.attention.wqkv.r["default"] == 9 and theirs.attention.wqkv.scaling["default"] == pytest.approx(
            7 / 3
        )
        separate = [getattr(layer.self_attn, f"{x}_proj").delta_weight() for x in "qkv"]
        with torch.no_grad():
            fused = theirs.attention.wqkv.get_delta_weight("default")
            assert torch.allclose(fused, fuse_wqkv(*separate, c), atol=1e-6)
            pairs = (("wo", layer.self_attn.o_proj), ("w1", layer.mlp.gate_proj), ("w3", layer.mlp.up_proj))
            for name, ours in (*pairs, ("w2", layer.mlp.down_proj)):
                module = getattr(theirs.attention if name == "wo" else theirs.feed_forward, name)
                assert torch.allclose(module.get_delta_weight("default"), ours.delta_weight(), atol=1e-6)
