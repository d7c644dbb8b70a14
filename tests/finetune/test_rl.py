"""Online RL (GRPO, RLOO) and ORPO: the losses and advantages against TRL's own code on fixed batches, rollouts
that see in-place weight updates, and a toy task with a verifiable reward learned end to end."""

from __future__ import annotations

import collections
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from finetune_support import one_thread, quiet_config, tiny_model, write_jsonl  # noqa: F401

from puyu.errors import PuyuError
from puyu.finetune.grpo import (
    RLSection,
    RolloutBatch,
    RolloutBatches,
    RolloutLoss,
    group_advantages,
    load_prompts,
    policy_loss,
    reduce_loss,
    rloo_advantages,
)
from puyu.finetune.objectives import preference_losses
from puyu.finetune.rewards import calculator_reward, load_reward, numeric_reward
from puyu.finetune.run import finetune
from puyu.model.checkpoint import load_model, save_model
from puyu.train.objectives import IGNORE_INDEX

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer", reason="trl is not installed")


def _fake_trainer(loss_type: str, beta: float, epsilon: float, max_completion_length: int) -> types.SimpleNamespace:
    """The attributes `GRPOTrainer._compute_loss` reads, for a single process with no extras switched on."""

    class Accelerator:
        num_processes = 1
        sync_gradients = True

        def gather(self, x: torch.Tensor) -> torch.Tensor:
            return x

        gather_for_metrics = gather

        def reduce(self, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
            return x

    return types.SimpleNamespace(
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        loss_type=loss_type,
        epsilon_low=epsilon,
        epsilon_high=epsilon,
        args=types.SimpleNamespace(use_bias_correction_kl=False, delta=None),
        use_vllm=False,
        model=types.SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        aux_loss_enabled=False,
        _entropy_bonus_enabled=False,
        max_completion_length=max_completion_length,
        accelerator=Accelerator(),
        _metrics=collections.defaultdict(lambda: collections.defaultdict(list)),
    )


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_policy_loss_equals_trls(loss_type: str, beta: float) -> None:
    generator = torch.Generator().manual_seed(0)
    n, t = 6, 5
    logps = -torch.rand(n, t, generator=generator) * 3
    ref = logps + 0.3 * torch.randn(n, t, generator=generator)
    old = logps + 0.4 * torch.randn(n, t, generator=generator)  # far enough to clip some ratios
    mask = (torch.rand(n, t, generator=generator) > 0.2).long()
    mask[:, 0] = 1
    advantages = torch.randn(n, generator=generator)
    trainer = _fake_trainer(loss_type, beta, 0.2, t)
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (logps, torch.zeros(n, t), None)
    inputs = {
        "prompt_ids": torch.zeros(n, 2, dtype=torch.long),
        "prompt_mask": torch.ones(n, 2, dtype=torch.long),
        "completion_ids": torch.zeros(n, t, dtype=torch.long),
        "completion_mask": mask,
        "advantages": advantages,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
    }
    expected = trl_grpo.GRPOTrainer._compute_loss(trainer, None, inputs)
    per_token, _ = policy_loss(logps, old, ref if beta else None, advantages, mask.float(), beta=beta, epsilon=0.2)
    assert float(reduce_loss(per_token, mask.float(), loss_type, t)) == pytest.approx(float(expected), abs=1e-6)


def test_advantages_follow_trls_formulas() -> None:
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 3.0])
    grouped = rewards.view(-1, 4)
    mean = grouped.mean(1).repeat_interleave(4)
    expected = (rewards - mean) / (nanstd(grouped, dim=1).repeat_interleave(4) + 1e-4)
    assert torch.allclose(group_advantages(rewards, 4, "group"), expected, atol=1e-6)
    assert torch.allclose(group_advantages(rewards, 4, "batch"), (rewards - mean) / (nanstd(rewards) + 1e-4))
    assert torch.allclose(group_advantages(rewards, 4, "none"), rewards - mean)
    # An all-equal group carries no signal.
    assert torch.all(group_advantages(rewards, 4)[4:8] == 0)
    loo = rloo_advantages(rewards, 4)
    assert float(loo[0]) == pytest.approx(1.0 - (0 + 0 + 1) / 3)


def test_orpo_loss_equals_trls() -> None:
    orpo = pytest.importorskip("trl.experimental.orpo.orpo_trainer", reason="trl's ORPO is not available")
    lengths = torch.tensor([3, 5, 4, 2])
    policy = -torch.tensor([1.2, 4.0, 9.0, 3.1])  # summed response log-probs: chosen rows, then rejected
    losses, chosen, rejected = preference_losses("orpo", policy, None, lengths, beta=0.1)
    average = policy / lengths
    fake = types.SimpleNamespace(beta=0.1, accelerator=types.SimpleNamespace(device="cpu"))
    ratio_terms, trl_chosen, trl_rejected, _, _ = orpo.ORPOTrainer.odds_ratio_loss(fake, average[:2], average[2:])
    # ORPO = the chosen response's NLL (per token) − λ·log σ(log odds ratio).
    assert torch.allclose(losses, -average[:2] - ratio_terms, atol=1e-6)
    assert torch.allclose(chosen, trl_chosen) and torch.allclose(rejected, trl_rejected)


def test_loop_normalisation_gives_the_reduced_loss() -> None:
    """The loop divides the summed micro-batch losses by the step's targets: that must equal TRL's reduction."""
    generator = torch.Generator().manual_seed(1)
    vocab, n, t = 11, 4, 6
    logits = torch.randn(n, t, vocab, generator=generator)
    ids = torch.randint(0, vocab, (n, t), generator=generator)
    labels = ids.clone()
    labels[:, :2] = IGNORE_INDEX
    labels[1, 4:] = IGNORE_INDEX
    advantages = torch.randn(n, generator=generator)
    model = lambda input_ids: logits  # noqa: E731
    for loss_type in ("grpo", "bnpo", "dr_grpo"):
        settings = RLSection(beta=0.0, loss_type=loss_type, max_new_tokens=t)  # type: ignore[arg-type]
        loss_fn = RolloutLoss(settings)
        halves = [
            RolloutBatch(ids[i : i + 2], labels[i : i + 2], advantages=advantages[i : i + 2], loss_type=loss_type)
            for i in (0, 2)
        ]
        total = sum(loss_fn(lambda x, lo=logits[i : i + 2]: lo, b) for i, b in zip((0, 2), halves, strict=True))
        targets = sum(b.num_targets for b in halves)
        mask = (labels != IGNORE_INDEX).float()
        logps = torch.log_softmax(logits, -1).gather(-1, ids.clamp(min=0)[..., None])[..., 0] * mask
        per_token, _ = policy_loss(logps, None, None, advantages, mask, beta=0.0, epsilon=0.2)
        assert float(total / targets) == pytest.approx(float(reduce_loss(per_token, mask, loss_type, t)), abs=1e-5)
    del model


def test_rewards_read_answers_and_calls_without_executing_code() -> None:
    assert numeric_reward("so the answer is 1,234.", {"answer": "1234"}) == 1.0
    assert numeric_reward("no number", {"answer": "3"}) == 0.0
    call = '<|action_start|><|plugin|>\n{"name": "calculator", "parameters": {"expression": "12 * 3"}}<|action_end|>'
    assert calculator_reward(call, {"answer": 36}) == 1.0
    hostile = call.replace("12 * 3", "__import__('os').system('true')")
    assert calculator_reward(hostile, {"answer": 0}) == 0.0
    assert load_reward("regex:\\d+")(" 42 ", {}) == 1.0
    with pytest.raises(PuyuError, match="unknown reward"):
        load_reward("nope")
    with pytest.raises(PuyuError, match="answer"):
        numeric_reward("1", {})


def test_bad_prompt_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(PuyuError, match=r":2: not JSON"):
        load_prompts([write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, "{oops"])])
    with pytest.raises(PuyuError, match="needs 'messages'"):
        load_prompts([write_jsonl(tmp_path / "q.jsonl", [{"answer": 1}])])


def test_rollouts_see_in_place_updates(tmp_path: Path, one_thread: None) -> None:  # noqa: F811
    folder = tiny_model(tmp_path / "base")
    model = load_model(folder, dtype="float32")
    from puyu.chat import ChatTemplate
    from puyu.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_pretrained(folder)
    template = ChatTemplate.for_model(tokenizer, model.config.family)
    prompts = [load_prompts([write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi", "answer": "1"}])])[0]]
    source = RolloutBatches(
        model, tokenizer, template, prompts, RLSection(group_size=2, prompts_per_step=1, max_new_tokens=4),
        micro_batch_size=2, seed=0, pad_id=0,
    )  # fmt: skip
    source.next_step(torch.device("cpu"))  # builds the engine over the module
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    save_model(model, tmp_path / "updated")
    from puyu.engine.engine import LLMEngine
    from puyu.generation.sampling import SamplingParams

    greedy = SamplingParams(max_tokens=8, temperature=0)
    ids = source.prompt_ids(prompts[0])

    def run(engine: LLMEngine) -> list[int]:
        engine.add_request("x", ids, greedy)
        out: list[int] = []
        while engine.has_unfinished_requests():
            for step in engine.step():
                out += step.token_ids
        return out

    fresh = LLMEngine(load_model(tmp_path / "updated", dtype="float32"), tokenizer, source.engine().config, template)
    assert run(source.engine()) == run(fresh)


def a_share(completion: str, sample: dict) -> float:
    """The toy task's reward: the share of the completion's characters that are 'a'."""
    return completion.count("a") / max(len(completion), 1)


def test_grpo_learns_a_verifiable_toy_task(tmp_path: Path, one_thread: None) -> None:  # noqa: F811
    """From near 0 to near 1: completions made only of 'a' (rewarded per character), in a CI-sized run."""
    sys.modules.setdefault("rl_toy_rewards", types.ModuleType("rl_toy_rewards")).a_share = a_share  # type: ignore[attr-defined]
    folder = tiny_model(tmp_path / "base")
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say it {i}"} for i in range(8)])
    config = quiet_config(
        tmp_path / "run",
        folder,
        data,
        method="grpo",
        max_steps=40,
        micro_batch_size=16,
        log_every=1,
        optimizer={"lr": 2e-2, "weight_decay": 0.0},
        schedule={"kind": "constant", "warmup_steps": 0},
        rl={
            "rewards": ["rl_toy_rewards:a_share"],
            "group_size": 8,
            "prompts_per_step": 2,
            "max_new_tokens": 4,
            "beta": 0.0,
            "train": "full",
        },
    )
    finetune(config)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rewards = [row["reward"] for row in rows if "reward" in row]
    assert len(rewards) == 40
    assert sum(rewards[:5]) / 5 < 0.2
    assert sum(rewards[-5:]) / 5 > 0.8


def test_orpo_and_grpo_from_the_command_line(tmp_path: Path, one_thread: None) -> None:  # noqa: F811
    from finetune_support import preference_rows

    from puyu.cli import main

    folder = tiny_model(tmp_path / "base")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8))
    common = ["--model", str(folder), "--max-steps", "2", "--batch-size", "4", "--no-progress"]
    orpo = ["finetune", "checkpoint_every=0", "--method", "orpo", "--data", str(pairs), "--out", str(tmp_path / "orpo")]
    assert main([*orpo, *common]) == 0
    assert (tmp_path / "orpo" / "adapter" / "adapter_config.json").is_file()
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "1+1=", "answer": "2"}])
    args = ["finetune", "rl.max_new_tokens=3", "rl.prompts_per_step=1", "--method", "grpo", "--data", str(prompts)]
    args += ["--reward", "numeric", "--group-size", "2", "--out", str(tmp_path / "grpo"), *common]
    assert main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert {"reward", "reward_std", "solved", "completion_length", "kl"} <= set(rows[-1])
    # Preference data with an RL method is refused in one line.
    assert main(["finetune", "--method", "grpo", "--data", str(pairs), "--out", str(tmp_path / "bad"), *common]) == 2


def test_reward_model_learns_and_opens_in_transformers(tmp_path: Path, one_thread: None) -> None:  # noqa: F811
    """Bradley–Terry on a learnable preference (upper case over lower case); the folder is what transformers opens
    as LlamaForSequenceClassification, with the same scores."""
    from finetune_support import preference_rows
    from transformers import AutoModelForSequenceClassification

    from puyu.finetune.reward_model import load_reward_model
    from puyu.tokenizer import Tokenizer

    folder = tiny_model(tmp_path / "base")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(40))
    config = quiet_config(
        tmp_path / "rm", folder, pairs, method="rm", max_steps=30, micro_batch_size=8, rm_holdout=0.2,
        optimizer={"lr": 3e-3, "weight_decay": 0.0}, schedule={"kind": "constant", "warmup_steps": 0},
    )  # fmt: skip
    result = finetune(config)
    held_out = json.loads((tmp_path / "rm" / "rm_eval.json").read_text())
    assert held_out["held_out_pairs"] == 8 and held_out["pairwise_accuracy"] >= 0.75
    ours = load_reward_model(result.output)
    theirs = AutoModelForSequenceClassification.from_pretrained(result.output).eval()
    assert theirs.config.num_labels == 1
    tokenizer = Tokenizer.from_pretrained(result.output)
    for text in ("Shout apple0 APPLE0!", "Shout river1 river1.", "你好, world"):
        ids = torch.tensor([tokenizer.encode(text)])
        with torch.no_grad():
            expected = float(theirs(input_ids=ids).logits[0, 0])
            got = float(ours(ids, torch.tensor([ids.shape[1] - 1]))[0])
        assert got == pytest.approx(expected, abs=1e-4)
