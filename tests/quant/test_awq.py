"""AWQ scale search: folding keeps the float function, and it lowers the int4 error on outlier channels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from puyu.errors import PuyuError
from puyu.model import ModelConfig
from puyu.model.decoder import CausalLM
from puyu.model.init import random_model
from puyu.quant.awq import apply_awq, calibration_batches, fake_quantizer, output_error, search_scales
from puyu.quant.loading import QuantSpec
from puyu.quant.quantize import quantize_model
from puyu.tokenizer import byte_level_tokenizer


def outlier_model(num_kv_heads: int = 4) -> CausalLM:
    """A tiny random model whose norms amplify 4 channels 30x: activations with outlier channels, as in real LLMs."""
    config = ModelConfig.from_name("llama-tiny", intermediate_size=256, num_kv_heads=num_kv_heads)
    model = random_model(config, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in model.model.layers:
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight[torch.randperm(64, generator=generator)[:4]] *= 30
    return model


CALIB = torch.randint(0, 512, (4, 64), generator=torch.Generator().manual_seed(2))
HELD_OUT = torch.randint(0, 512, (2, 64), generator=torch.Generator().manual_seed(3))
INT4 = QuantSpec("int4", group_size=32, lm_head=False)


@torch.no_grad()
def test_folding_scales_keeps_the_float_model_unchanged():
    model = outlier_model(num_kv_heads=4)  # no GQA: the v_proj → o_proj fold is used too
    before = model(HELD_OUT)
    norm_before = model.model.layers[0].input_layernorm.weight.clone()
    v_before = model.model.layers[0].self_attn.v_proj.weight.clone()
    apply_awq(model, CALIB, INT4, clip=False)
    assert not torch.equal(model.model.layers[0].input_layernorm.weight, norm_before)
    assert not torch.equal(model.model.layers[0].self_attn.v_proj.weight, v_before)
    torch.testing.assert_close(model(HELD_OUT), before, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_gqa_models_skip_the_v_to_o_fold():
    model = outlier_model(num_kv_heads=2)
    before = model(HELD_OUT)
    v_before = model.model.layers[0].self_attn.v_proj.weight.clone()
    apply_awq(model, CALIB, INT4, clip=False)
    # v_proj is scaled only as one of q/k/v (columns), never by rows: each row keeps its direction.
    ratio = model.model.layers[0].self_attn.v_proj.weight / v_before
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio))
    torch.testing.assert_close(model(HELD_OUT), before, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_awq_lowers_int4_error_versus_round_to_nearest():
    reference = outlier_model()(HELD_OUT)
    rtn = quantize_model(outlier_model(), INT4)
    awq = quantize_model(apply_awq(outlier_model(), CALIB, INT4), INT4)
    rtn_error, awq_error = output_error(reference, rtn(HELD_OUT)), output_error(reference, awq(HELD_OUT))
    assert awq_error < 0.8 * rtn_error, (awq_error, rtn_error)


@torch.no_grad()
def test_search_never_does_worse_than_unscaled():
    torch.manual_seed(0)
    x = torch.randn(256, 64) * torch.where(torch.arange(64) < 3, 20.0, 1.0)
    linear = nn.Linear(64, 48, bias=False)
    quant = fake_quantizer(INT4)
    scales = search_scales(x, [linear], quant)
    reference = x @ linear.weight.t()
    plain = (x @ quant(linear.weight).t() - reference).pow(2).mean()
    scaled = (x @ (quant(linear.weight * scales) / scales).t() - reference).pow(2).mean()
    assert scaled < plain
    assert scales[:3].mean() > scales[3:].mean()  # the outlier channels get the larger scales


def test_calibration_batches():
    tokenizer = byte_level_tokenizer("llama3")
    tokens = calibration_batches(tokenizer, ["abcdefgh" * 10], samples=3, seq_len=16)
    assert tokens.shape == (3, 16)
    short = calibration_batches(tokenizer, ["hello"], samples=3, seq_len=16)
    assert short.shape == (1, 5)
    with pytest.raises(PuyuError, match="too short"):
        calibration_batches(tokenizer, ["", "  "], samples=3, seq_len=16)
