"""Several LoRA adapters served over one base in one batch give each merged model's greedy tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter_support import make_adapter
from puyu.engine.config import EngineConfig
from puyu.engine.engine import LLMEngine
from puyu.errors import PuyuError
from puyu.finetune.adapter import merge_adapter
from puyu.generation.generator import Generator
from puyu.generation.sampling import SamplingParams

GREEDY = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def adapters(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "alpha": make_adapter(tiny_folder, root / "alpha", 1, ["all-linear"]),
        "beta": make_adapter(tiny_folder, root / "beta", 2, ["wqkv", "w2"]),
    }


def test_batched_adapters_equal_their_merged_models(tiny_folder: Path, adapters: dict[str, Path], tmp_path: Path):
    prompts = [[5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 65, 69], [7, 8, 9]]
    expected: dict[str | None, list[list[int]]] = {None: []}
    for name, folder in adapters.items():
        merged = Generator.from_pretrained(merge_adapter(tiny_folder, folder, tmp_path / f"merged-{name}"))
        expected[name] = [merged.generate(p, GREEDY).token_ids for p in prompts]
    base = Generator.from_pretrained(tiny_folder)
    expected[None] = [base.generate(p, GREEDY).token_ids for p in prompts]
    assert expected["alpha"] != expected[None] and expected["beta"] != expected[None]

    engine = LLMEngine.from_pretrained(tiny_folder, EngineConfig(num_blocks=64), adapters=adapters)
    produced: dict[tuple[str | None, int], list[int]] = {}
    # The base first, so its prompt blocks sit in the prefix cache; then both adapters in one batch, on the same
    # prompts: a cache shared across adapters would hand them the base's keys and values.
    for names in ((None,), ("alpha", "beta")):
        for name in names:
            for i, prompt in enumerate(prompts):
                engine.add_request(f"{name}-{i}", prompt, GREEDY, adapter=name)
                produced[name, i] = []
        for _ in range(200):
            if not engine.has_unfinished_requests():
                break
            for out in engine.step():
                name, _, i = out.request_id.rpartition("-")
                produced[None if name == "None" else name, int(i)].extend(out.token_ids)
    for (name, i), tokens in produced.items():
        assert tokens == expected[name][i], (name, i)


def test_unknown_adapter_is_refused(tiny_folder: Path, adapters: dict[str, Path]):
    engine = LLMEngine.from_pretrained(tiny_folder, EngineConfig(num_blocks=16), adapters={"alpha": adapters["alpha"]})
    with pytest.raises(PuyuError, match="no adapter named 'gamma'"):
        engine.add_request("x", [5, 6], GREEDY, adapter="gamma")
