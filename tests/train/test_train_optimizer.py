"""AdamW construction: which parameters decay, trainable-only and tied parameters, the kernel choice."""

from __future__ import annotations

import pytest
import torch

from puyu.configuration import from_dict
from puyu.errors import PuyuError
from puyu.model.config import ModelConfig
from puyu.model.decoder import CausalLM
from puyu.model.init import random_model
from puyu.train.optimizer import (
    OptimizerConfig,
    build_optimizer,
    optimizer_implementation,
    split_decay_parameters,
)


def tiny(**changes: object) -> CausalLM:
    config = ModelConfig(
        family="qwen2",
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        qkv_bias=True,
        **changes,  # type: ignore[arg-type]
    )
    return random_model(config).train()


def group(optimizer: torch.optim.Optimizer, name: str) -> dict:
    return next(g for g in optimizer.param_groups if g["name"] == name)


def test_matrices_decay_and_vectors_do_not() -> None:
    model = tiny()
    decay, no_decay = split_decay_parameters(model)
    layer = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}
    layer |= {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
    expected = {"model.embed_tokens.weight", "lm_head.weight"}
    expected |= {f"model.layers.{i}.{m}.weight" for i in range(2) for m in layer}
    assert set(decay) == expected
    biases = {f"model.layers.{i}.self_attn.{p}_proj.bias" for i in range(2) for p in "qkv"}
    norms = {f"model.layers.{i}.{n}.weight" for i in range(2) for n in ("input_layernorm", "post_attention_layernorm")}
    assert set(no_decay) == biases | norms | {"model.norm.weight"}

    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-3, weight_decay=0.1))
    assert [g["name"] for g in optimizer.param_groups] == ["decay", "no_decay"]
    assert group(optimizer, "decay")["weight_decay"] == 0.1
    assert group(optimizer, "no_decay")["weight_decay"] == 0.0
    assert group(optimizer, "decay")["betas"] == (0.9, 0.95)


def test_decay_reaches_only_the_decay_group() -> None:
    model = tiny()
    decay, no_decay = split_decay_parameters(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = build_optimizer(model, OptimizerConfig(lr=0.01, weight_decay=0.5))
    for param in model.parameters():
        param.grad = torch.zeros_like(param)  # Adam's step is 0: only the decoupled decay moves weights
    optimizer.step()
    for name in decay:
        torch.testing.assert_close(dict(model.named_parameters())[name], before[name] * (1 - 0.01 * 0.5))
    for name in no_decay:
        torch.testing.assert_close(dict(model.named_parameters())[name], before[name], rtol=0, atol=0)


def test_tied_weights_once_and_frozen_parameters_left_out() -> None:
    model = tiny(tie_word_embeddings=True)
    optimizer = build_optimizer(model, OptimizerConfig())
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert len({id(p) for p in params}) == len(params)
    assert sum(p.numel() for p in params) == model.config.num_parameters()  # counts the tie once

    for param in model.parameters():
        param.requires_grad_(False)
    model.model.layers[0].self_attn.q_proj.weight.requires_grad_(True)
    optimizer = build_optimizer(model, OptimizerConfig())
    assert [g["name"] for g in optimizer.param_groups] == ["decay"]  # the empty group is left out
    assert optimizer.param_groups[0]["params"] == [model.model.layers[0].self_attn.q_proj.weight]

    model.model.layers[0].self_attn.q_proj.weight.requires_grad_(False)
    with pytest.raises(PuyuError, match="no trainable parameters"):
        build_optimizer(model, OptimizerConfig())


def test_auto_is_fused_on_cpu_and_every_kernel_agrees() -> None:
    results = {}
    for implementation in ("auto", "fused", "foreach", "for"):
        model = tiny()
        optimizer = build_optimizer(model, OptimizerConfig(lr=1e-2, implementation=implementation))  # type: ignore[arg-type]
        results[implementation] = optimizer_implementation(optimizer)
        generator = torch.Generator().manual_seed(0)
        for _ in range(3):
            for param in model.parameters():
                param.grad = torch.randn(param.shape, generator=generator)
            optimizer.step()
        if implementation == "for":
            reference = model.state_dict()
        else:
            results[implementation, "model"] = model.state_dict()
    assert results["auto"] == "fused"  # torch has a CPU fused AdamW kernel for float32
    assert (results["fused"], results["foreach"], results["for"]) == ("fused", "foreach", "for")
    for implementation in ("auto", "fused", "foreach"):
        for name, value in results[implementation, "model"].items():
            torch.testing.assert_close(value, reference[name], msg=f"{implementation}: {name}")


def test_no_fused_kernel_falls_back_to_foreach() -> None:
    with torch.device("meta"):
        model = torch.nn.Linear(4, 4)
    assert optimizer_implementation(build_optimizer(model, OptimizerConfig())) == "foreach"
    with pytest.raises(PuyuError, match=r"implementation=fused.*meta"):
        build_optimizer(model, OptimizerConfig(implementation="fused"))


def test_config_from_yaml_data() -> None:
    config = from_dict(OptimizerConfig, {"betas": [0.9, 0.99], "implementation": "for"})
    assert config.betas == (0.9, 0.99)
    with pytest.raises(PuyuError, match="optimizer: lr must be positive"):
        from_dict(OptimizerConfig, {"lr": 0}, "optimizer")
    with pytest.raises(PuyuError, match="betas"):
        from_dict(OptimizerConfig, {"betas": [0.9, 1.0]})
    with pytest.raises(PuyuError, match="'adam'"):
        from_dict(OptimizerConfig, {"implementation": "adam"})
