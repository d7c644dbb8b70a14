"""SmolLM2-135M-Instruct (Q4_1 GGUF) imported by puyu against transformers' own GGUF loader.

Tensors, token ids, chat rendering and greedy tokens must all match what transformers builds from the
same file (transformers dequantizes with its own code, puyu with the gguf package).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gguf_strings import mixed_strings

from puyu.chat.template import ChatTemplate
from puyu.generation.generate import generate_tokens
from puyu.generation.sampling import SamplingParams
from puyu.model import load_model
from puyu.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Colour of the sky?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Give me three prime numbers."},
    ],
    [{"role": "user", "content": "用中文说你好。"}],
]


@pytest.fixture
def hf_tokenizer(smollm2_gguf: Path):
    return transformers.AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)


@pytest.fixture(scope="module")
def hf_model(smollm2_gguf: Path):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name, dtype=torch.float32
    )
    return model.eval()


def test_tensors_equal_transformers_gguf_loader(smollm2_dir: Path, hf_model) -> None:
    ours = load_model(smollm2_dir, dtype="float32").state_dict()
    theirs = hf_model.state_dict()
    assert set(theirs) == set(ours)
    worst = max((theirs[name] - ours[name]).abs().max().item() for name in theirs)
    assert worst == 0.0


def test_token_ids_equal_on_mixed_strings(smollm2_dir: Path, hf_tokenizer) -> None:
    ours = Tokenizer.from_pretrained(smollm2_dir)
    strings = mixed_strings(1000)
    # transformers builds a file marked `tokenizer.ggml.pre = "smollm"` with GPT-2's plain rule; llama.cpp's
    # smollm rule (and SmolLM2's published tokenizer.json) first cuts every digit apart. That is the only
    # difference: the strings on which the two disagree all hold a digit ...
    differing = [s for s in strings if ours.encode(s) != hf_tokenizer.encode(s)]
    assert all(any(c.isdigit() for c in s) for s in differing)
    # ... and with llama.cpp's rule put into transformers' tokenizer, all 1,000 agree.
    from tokenizers import pre_tokenizers

    hf_tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    mismatches = [s for s in strings if ours.encode(s) != hf_tokenizer.encode(s)]
    assert not mismatches, f"{len(mismatches)} of 1000 differ, e.g. {mismatches[:3]!r}"
    assert all(ours.decode(ours.encode(s, add_special_tokens=False)) == s for s in strings)


def test_chat_rendering_equal(smollm2_dir: Path, hf_tokenizer) -> None:
    template = ChatTemplate.for_model(Tokenizer.from_pretrained(smollm2_dir), "llama")
    for chat in CHATS:
        theirs = hf_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert template.render(chat, add_generation_prompt=True).text == theirs


def test_greedy_tokens_equal(smollm2_dir: Path, hf_model, hf_tokenizer) -> None:
    model = load_model(smollm2_dir, dtype="float32")
    tokenizer = Tokenizer.from_pretrained(smollm2_dir)
    hf_model.generation_config.eos_token_id = None
    hf_model.generation_config.pad_token_id = 2
    for chat in CHATS:
        prompt = hf_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = tokenizer.encode(prompt)
        ours = generate_tokens(model, ids, SamplingParams(max_tokens=32, temperature=0.0))
        prompt_ids = torch.tensor([ids])
        with torch.no_grad():  # an explicit mask: the prompt holds <|im_end|>, which is also the pad id
            out = hf_model.generate(
                prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=32, do_sample=False
            )
        assert ours == out[0, len(ids) :].tolist()


def test_answers_the_capital_of_france(smollm2_dir: Path) -> None:
    model = load_model(smollm2_dir, dtype="float32")
    tokenizer = Tokenizer.from_pretrained(smollm2_dir)
    prompt = ChatTemplate.for_model(tokenizer, "llama").render(CHATS[0], add_generation_prompt=True).text
    ids = generate_tokens(model, tokenizer.encode(prompt), SamplingParams(max_tokens=16, temperature=0.0), [2])
    assert "Paris" in tokenizer.decode(ids, skip_special_tokens=True)
