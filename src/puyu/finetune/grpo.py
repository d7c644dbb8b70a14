"""Online RL with verifiable rewards on the one training loop: GRPO (Shao et al. 2024) and RLOO (Ahmadian et
al. 2024).

Each optimizer step: take the next prompts → the in-process engine samples a group of completions per prompt
from the policy's current weights (the engine runs the very module being trained, so an update is seen by the
next rollout with no reload) → rewards → advantages within each group → a clipped policy-gradient loss with a
KL penalty to the reference policy (the base with its adapters switched off, or a frozen copy for a full
fine-tune). The loss and the advantages follow TRL's `GRPOTrainer` (one policy update per rollout, so the
"old" log-probs are the current ones, detached).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from puyu.engine.shared import SharedEngine
from puyu.errors import PuyuError
from puyu.finetune.rewards import RewardFn, load_reward
from puyu.generation.sampling import SamplingParams
from puyu.model.decoder import CausalLM
from puyu.train.distributed import DistInfo
from puyu.train.objectives import IGNORE_INDEX, Batch

LossType = Literal["grpo", "bnpo", "dr_grpo"]
Advantage = Literal["grpo", "rloo"]
ScaleRewards = Literal["group", "batch", "none"]


@dataclass
class RLSection:
    """Online RL settings (methods grpo and rloo).

    Args:
        rewards: reward functions (one name or a list), summed: built-ins (`exact`, `contains`, `numeric`,
            `calculator`), `regex:PATTERN`, or `module:function`.
        reward_weights: a weight per reward function (default 1 each).
        group_size: completions sampled per prompt (G).
        prompts_per_step: prompts per optimizer step (the step trains on prompts_per_step × G completions).
        max_new_tokens: most tokens per completion.
        temperature, top_p: sampling of the rollouts.
        beta: weight of the KL penalty to the reference policy (0 = none, and no reference pass).
        epsilon, epsilon_high: clipping range of the importance ratio, [1 − ε, 1 + ε_high] (ε_high defaults to ε).
        loss_type: "grpo" (mean over each completion's tokens, then over completions), "bnpo" (mean over all
            tokens of the step) or "dr_grpo" (sum over tokens / (completions × max_new_tokens)).
        scale_rewards: advantages divided by the group's ("group"), the step's ("batch") or no ("none") std.
        train: "lora" (adapters; reference = adapters off) or "full" (reference = a frozen copy of the start).
    """

    rewards: str | list[str] = field(default_factory=lambda: ["numeric"])
    reward_weights: list[float] | None = None
    group_size: int = 4
    prompts_per_step: int = 4
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.04
    epsilon: float = 0.2
    epsilon_high: float | None = None
    loss_type: LossType = "grpo"
    scale_rewards: ScaleRewards = "group"
    train: Literal["lora", "full"] = "lora"

    def __post_init__(self) -> None:
        if isinstance(self.rewards, str):
            self.rewards = [self.rewards]
        checks = [
            (bool(self.rewards), "rl.rewards: name at least one reward function"),
            (self.group_size >= 2, f"rl.group_size must be at least 2, got {self.group_size}"),
            (self.prompts_per_step >= 1, f"rl.prompts_per_step must be >= 1, got {self.prompts_per_step}"),
            (self.max_new_tokens >= 1, f"rl.max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.temperature > 0, f"rl.temperature must be > 0 (rollouts sample), got {self.temperature}"),
            (self.beta >= 0 and self.epsilon > 0, "rl.beta must be >= 0 and rl.epsilon > 0"),
            (
                self.reward_weights is None or len(self.reward_weights) == len(self.rewards),
                "rl.reward_weights needs one weight per reward function",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise PuyuError(message)


# ---- advantages and loss (the reference computation: TRL's GRPOTrainer) ------------------------------------


def group_advantages(rewards: torch.Tensor, group_size: int, scale: ScaleRewards = "group") -> torch.Tensor:
    """GRPO advantages: reward minus its group's mean, divided by the group's (or the batch's) std + 1e-4.

    Args:
        rewards: [prompts × group_size], the groups one after another.
        group_size: completions per prompt.
        scale: "group", "batch" or "none".
    """
    grouped = rewards.view(-1, group_size)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).flatten()
    if scale == "none":
        return centred
    std = grouped.std(dim=1).repeat_interleave(group_size) if scale == "group" else rewards.std().expand_as(rewards)
    return centred / (std + 1e-4)


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO advantages: each reward minus the mean of the other completions of its prompt (leave-one-out)."""
    grouped = rewards.view(-1, group_size)
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others).flatten()


def policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float,
    epsilon: float,
    epsilon_high: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token clipped surrogate loss plus β·KL (k3 estimator), [N, T], and the per-token KL.

    Args:
        logps: [N, T] the policy's log-probabilities of the completion tokens (with gradient).
        old_logps: [N, T] those of the policy that sampled them (None: the current ones, detached).
        ref_logps: [N, T] the reference policy's (needed when beta > 0).
        advantages: [N] one per completion.
        mask: [N, T] 1 on completion tokens.
    """
    old = logps.detach() if old_logps is None else old_logps
    ratio = torch.exp(logps - old)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + (epsilon if epsilon_high is None else epsilon_high))
    adv = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = None
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta > 0 needs the reference log-probabilities")
        kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
        per_token = per_token + beta * kl
    return per_token * mask, kl


def reduce_loss(per_token: torch.Tensor, mask: torch.Tensor, loss_type: LossType, max_new_tokens: int) -> torch.Tensor:
    """The step's loss as TRL reduces it: "grpo" per-completion token means averaged, "bnpo" the token mean,
    "dr_grpo" the token sum over (completions × max_new_tokens)."""
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    return (per_token * mask).sum() / (per_token.size(0) * max_new_tokens)


# ---- rollouts as the loop's batches -------------------------------------------------------------------------


@dataclass
class RolloutBatch(Batch):
    """Completions of one micro-batch: prompt + completion ids (labels only on completion tokens), each
    completion's advantage, and the reference policy's token log-probs (aligned with labels) when β > 0."""

    advantages: torch.Tensor | None = None
    ref_logps: torch.Tensor | None = None
    loss_type: LossType = "grpo"
    max_new_tokens: int = 1

    @property
    def num_targets(self) -> int:
        # The loop divides the summed loss by the step's targets: completions for the per-completion mean
        # ("grpo", "dr_grpo"), tokens for "bnpo".
        return int((self.labels != IGNORE_INDEX).sum()) if self.loss_type == "bnpo" else self.input_ids.shape[0]

    def to(self, device: torch.device) -> RolloutBatch:
        return dataclasses.replace(
            self,
            input_ids=self.input_ids.to(device),
            labels=self.labels.to(device),
            advantages=self.advantages.to(device) if self.advantages is not None else None,
            ref_logps=self.ref_logps.to(device) if self.ref_logps is not None else None,
        )


def token_logps(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Each label's log-probability [N, T] (0 where there is no label)."""
    logits = model(batch.input_ids)
    nll = F.cross_entropy(
        logits.float().flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    )
    return -nll.view_as(batch.labels)


class RolloutLoss:
    """The loop's loss for rollout batches; reports KL, clipped share and the rollouts' statistics per step.

    Args:
        settings: the RL section (β, ε, loss type).
        source: the batch source, whose rollout statistics are added to the step's log.
    """

    def __init__(self, settings: RLSection, source: RolloutBatches | None = None) -> None:
        self.settings = settings
        self.source = source
        self._kl: list[float] = []

    def __call__(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        if not isinstance(batch, RolloutBatch) or batch.advantages is None:
            raise TypeError(f"an RL loss needs a RolloutBatch, got {type(batch).__name__}")
        s = self.settings
        logps = token_logps(model, batch)
        mask = (batch.labels != IGNORE_INDEX).float()
        per_token, kl = policy_loss(
            logps, None, batch.ref_logps, batch.advantages, mask, beta=s.beta, epsilon=s.epsilon,
            epsilon_high=s.epsilon_high,
        )  # fmt: skip
        if kl is not None:
            self._kl.append(float((kl.detach() * mask).sum() / mask.sum().clamp(min=1.0)))
        # The loop divides the summed losses by the step's targets (see RolloutBatch.num_targets), so each
        # micro-batch gives its reduced loss times its own targets.
        return reduce_loss(per_token, mask, s.loss_type, s.max_new_tokens) * batch.num_targets

    def pop_metrics(self) -> dict[str, float]:
        metrics = self.source.pop_metrics() if self.source is not None else {}
        if self._kl:
            metrics["kl"] = sum(self._kl) / len(self._kl)
        self._kl = []
        return metrics


@dataclass
class PromptRecord:
    """One RL prompt: the conversation (or raw text) to complete and the record the rewards read."""

    messages: list[dict[str, Any]] | None
    text: str | None
    fields: dict[str, Any]


def load_prompts(paths: Sequence[str | Path]) -> list[PromptRecord]:
    """Prompt records from JSONL files: `{"messages": [...]}` or `{"prompt": "text"}` (a user message when
    the model chats), plus any fields the rewards read (`answer` …). Bad lines are one-line errors."""
    records: list[PromptRecord] = []
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise PuyuError(f"{path}: cannot read prompts ({exc})") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PuyuError(f"{path}:{number}: not JSON ({exc.msg})") from None
            messages = record.get("messages") if isinstance(record, dict) else None
            prompt = record.get("prompt") if isinstance(record, dict) else None
            valid_messages = isinstance(messages, list) and all(
                isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
            )
            if not valid_messages and not isinstance(prompt, str):
                raise PuyuError(f"{path}:{number}: a prompt record needs 'messages' (a list) or 'prompt' (a string)")
            records.append(PromptRecord(messages if valid_messages else None, prompt, record))
    if not records:
        raise PuyuError("no prompts in " + ", ".join(str(p) for p in paths))
    return records


class RolloutBatches:
    """The loop's batch source for online RL: every step samples fresh completions from the policy.

    Args:
        model: the policy being trained (the engine runs this very module).
        tokenizer, template: to render prompts and stop at the end of the turn.
        prompts: the prompt records.
        settings: the RL section.
        reward_fns: the reward functions (built from `settings.rewards` when None).
        micro_batch_size: completions per forward/backward.
        seed: the run's seed; step k's prompt order and sampling depend on (seed, k) only, so a resumed run
            draws what the uninterrupted one would.
        reference: a frozen copy of the start for a full fine-tune (None: adapters off, or β = 0).
        pad_id: written into padding.
        chat: render prompts with the chat template and stop at its end of turn.
        advantage: "grpo" (group-normalised) or "rloo" (leave-one-out baseline).
    """

    def __init__(
        self,
        model: CausalLM,
        tokenizer: Any,
        template: Any,
        prompts: list[PromptRecord],
        settings: RLSection,
        *,
        micro_batch_size: int,
        seed: int,
        pad_id: int,
        reward_fns: list[RewardFn] | None = None,
        reference: CausalLM | None = None,
        chat: bool = True,
        advantage: Advantage = "grpo",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.prompts = prompts
        self.settings = settings
        self.reward_fns = reward_fns or [load_reward(spec) for spec in settings.rewards]
        self.weights = settings.reward_weights or [1.0] * len(self.reward_fns)
        self.micro_batch_size = max(1, micro_batch_size)
        self.seed = seed
        self.pad_id = pad_id
        self.reference = reference
        self.chat = chat
        self.advantage = advantage
        self.step = 0
        self._engine: Any = None
        self._metrics: dict[str, float] = {}
        self.last_rollouts: list[dict[str, Any]] = []

    # ---- the loop's interface

    def next_step(self, device: torch.device) -> list[Batch]:
        """Sample this step's completions, score them, and cut them into micro-batches."""
        rng = random.Random(self.seed * 1_000_003 + self.step)
        chosen = [rng.randrange(len(self.prompts)) for _ in range(self.settings.prompts_per_step)]
        rows = self._rollouts(chosen, device)
        self.step += 1
        return self._micro_batches(rows, device)

    def state_dict(self, info: DistInfo) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any] | None, info: DistInfo) -> None:
        self.step = int((state or {}).get("step", 0))

    def pop_metrics(self) -> dict[str, float]:
        metrics, self._metrics = self._metrics, {}
        return metrics

    # ---- rollouts

    def prompt_ids(self, record: PromptRecord) -> list[int]:
        if record.messages is not None or self.chat:
            messages = record.messages or [{"role": "user", "content": record.text or ""}]
            rendered = self.template.render(messages, add_generation_prompt=True).text
            return self.tokenizer.encode(rendered, add_special_tokens=False)
        return self.tokenizer.encode(record.text or "")

    def engine(self) -> Any:
        """The rollout engine over the policy module (prefix caching off: the weights change every step)."""
        if self._engine is None:
            from puyu.engine.config import EngineConfig
            from puyu.engine.engine import LLMEngine

            config = EngineConfig(
                max_num_seqs=self.settings.prompts_per_step * self.settings.group_size,
                enable_prefix_caching=False,
                device=self.model.device.type,
                seed=self.seed,
            )
            self._engine = LLMEngine(self.model, self.tokenizer, config, self.template)
        return self._engine

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    def _rollouts(self, chosen: list[int], device: torch.device) -> list[dict[str, Any]]:
        s = self.settings
        engine = self.engine()
        requests: list[tuple[int, list[int]]] = []  # (prompt record, prompt ids), group after group
        params: list[SamplingParams] = []
        for p, index in enumerate(chosen):
            ids = self.prompt_ids(self.prompts[index])
            for g in range(s.group_size):
                sampling = SamplingParams(
                    max_tokens=s.max_new_tokens,
                    temperature=s.temperature,
                    top_p=s.top_p,
                    seed=(self.seed * 1_000_003 + self.step) * 4096 + p * s.group_size + g,
                )
                requests.append((index, ids))
                params.append(engine.chat_params(sampling) if self.chat else sampling)
        with self._eval_mode():
            outputs = SharedEngine(engine).run_outputs([ids for _, ids in requests], params)
        rows: list[dict[str, Any]] = []
        for (index, ids), request_outputs in zip(requests, outputs, strict=True):
            completion = [token for out in request_outputs for token in out.token_ids] or [self.pad_id]
            text = "".join(out.text for out in request_outputs)
            scores = [fn(text, self.prompts[index].fields) for fn in self.reward_fns]
            reward = sum(w * float(r) for w, r in zip(self.weights, scores, strict=True))
            rows.append({"prompt": ids, "completion": completion, "text": text, "reward": reward})
        rewards = torch.tensor([r["reward"] for r in rows], dtype=torch.float32)
        if self.advantage == "rloo":
            advantages = rloo_advantages(rewards, s.group_size)
        else:
            advantages = group_advantages(rewards, s.group_size, s.scale_rewards)
        for row, advantage in zip(rows, advantages.tolist(), strict=True):
            row["advantage"] = advantage
        grouped = rewards.view(-1, s.group_size)
        self._metrics = {
            "reward": float(rewards.mean()),
            "reward_std": float(grouped.std(dim=1).mean()),
            "completion_length": sum(len(r["completion"]) for r in rows) / len(rows),
            "solved": float((grouped.max(dim=1).values > 0).float().mean()),
        }
        self.last_rollouts = [
            {"step": self.step, "text": r["text"], "reward": r["reward"], "advantage": r["advantage"]} for r in rows
        ]
        return rows

    def _micro_batches(self, rows: list[dict[str, Any]], device: torch.device) -> list[Batch]:
        s = self.settings
        batches: list[Batch] = []
        for start in range(0, len(rows), self.micro_batch_size):
            chunk = rows[start : start + self.micro_batch_size]
            width = max(len(r["prompt"]) + len(r["completion"]) for r in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            labels = torch.full((len(chunk), width - 1), IGNORE_INDEX, dtype=torch.long)
            for i, r in enumerate(chunk):
                full = r["prompt"] + r["completion"]
                ids[i, : len(full)] = torch.tensor(full)
                # Labels are shifted by one: position t predicts token t + 1; only completion tokens count.
                labels[i, len(r["prompt"]) - 1 : len(full) - 1] = torch.tensor(r["completion"])
            batch = RolloutBatch(
                ids[:, :-1],
                labels,
                advantages=torch.tensor([r["advantage"] for r in chunk], dtype=torch.float32),
                loss_type=s.loss_type,
                max_new_tokens=s.max_new_tokens,
            ).to(device)
            if s.beta > 0:
                batch.ref_logps = self._reference_logps(batch)
            batches.append(batch)
        return batches

    @torch.no_grad()
    def _reference_logps(self, batch: RolloutBatch) -> torch.Tensor:
        with self._eval_mode():
            if self.reference is not None:
                return token_logps(self.reference, batch)
            from puyu.finetune.lora import lora_disabled

            with lora_disabled(self.model):
                return token_logps(self.model, batch)


def frozen_reference(model: CausalLM) -> CausalLM:
    """A frozen copy of the model as it is now (the reference of a full fine-tune)."""
    reference = copy.deepcopy(model).eval()
    for param in reference.parameters():
        param.requires_grad_(False)
    return reference
