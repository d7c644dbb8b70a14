"""Settings of a fine-tuning run: the YAML files under configs/finetune/ map onto these dataclasses.

A `FinetuneConfig` becomes a `TrainConfig` for the one training loop (`to_train_config`); what it adds is
the method (full, lora, qlora, dpo), the data kind and its tokenization, and the adapter settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from puyu.errors import PuyuError
from puyu.finetune.grpo import RLSection
from puyu.finetune.lora import LoraConfig
from puyu.train.config import DataSection, DataSource, ModelSection, TrainConfig
from puyu.train.optimizer import OptimizerConfig
from puyu.train.schedule import ScheduleConfig

Method = Literal["full", "lora", "qlora", "dpo", "orpo", "rm", "grpo", "rloo"]
PREFERENCE_METHODS = ("dpo", "orpo", "rm")
RL_METHODS = ("grpo", "rloo")


@dataclass
class FinetuneData:
    """What to train on.

    Args:
        path: a data file, or a list of them.
        kind: "chat" (SFT conversations, JSONL), "preference" (prompt/chosen/rejected JSONL), "text" (raw
            .txt/.md/.jsonl documents: continued pretraining), "prompts" (online RL: `messages` or `prompt`
            plus the fields the rewards read) or "auto" (preference for dpo/orpo, prompts for grpo/rloo, else
            chat).
        format: force one record format (e.g. "alpaca", "sharegpt") instead of detecting it per record.
        seq_len: most tokens per sequence (a packed row, or one sample).
        truncation: a longer sample is cut on the right ("right") or left out ("drop"); both are counted.
        packing: put several samples in one row (positions restart per sample and attention stays inside
            each); False pads one sample per row. Preference pairs are always padded.
        template: a built-in chat template (internlm2, llama3, qwen2) instead of the model's own.
        text_field: the JSON field holding a document's text (kind text and replay).
        replay: plain-text documents (read as kind text reads them, every token trained) mixed in with chat
            data: replaying some pretraining text keeps what fine-tuning would otherwise overwrite.
    """

    path: str | list[str]
    kind: Literal["auto", "chat", "preference", "text", "prompts"] = "auto"
    format: str | None = None
    seq_len: int = 1024
    truncation: Literal["right", "drop"] = "right"
    packing: bool = True
    template: str | None = None
    text_field: str = "text"
    replay: str | list[str] | None = None

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, got {self.seq_len}")
        if isinstance(self.path, list) and not self.path:
            raise ValueError("path: name at least one file")

    @property
    def paths(self) -> list[str]:
        return _file_list(self.path)

    @property
    def replay_paths(self) -> list[str]:
        return _file_list(self.replay)


def _file_list(files: str | list[str] | None) -> list[str]:
    """A file setting (one path, a list of them, or none) as a list."""
    if files is None:
        return []
    return [files] if isinstance(files, str) else list(files)


@dataclass
class PreferenceSection:
    """Preference optimisation (methods dpo and orpo).

    Args:
        loss: "sigmoid" (DPO), "ipo" or "simpo" (reference-free, length-normalised); method orpo uses its own.
        beta: inverse temperature β of the implicit reward (DPO/IPO ~0.1; SimPO ~2); ORPO's λ (~0.1).
        label_smoothing: DPO's assumed share of flipped labels (conservative DPO); 0 = plain DPO.
        simpo_gamma: SimPO's target margin.
        train: what is trained: "lora" / "qlora" adapters (reference = the base with adapters off) or
            "full" (reference log-probs computed once from the base before training).
    """

    loss: Literal["sigmoid", "ipo", "simpo"] = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    train: Literal["lora", "qlora", "full"] = "lora"

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")


@dataclass
class QLoraSection:
    """NF4 quantization of the frozen base (method qlora, or dpo with train: qlora)."""

    block_size: int = 64
    double_quant: bool = True


@dataclass
class FinetuneConfig:
    """One fine-tuning run.

    Args:
        run_dir: checkpoints, metrics, samples and the final artefact go here; a run resumes from here.
        method: "full" (every weight), "lora" (adapters on a frozen base), "qlora" (adapters on an NF4 base),
            "dpo" / "orpo" (preference pairs; adapters or full, see `dpo.train`), "rm" (a reward model trained
            on preference pairs: the whole decoder plus a scalar head), "grpo" / "rloo" (online RL on prompts with
            reward functions; adapters or full, see `rl.train`).
        model: the HF model folder to start from.
        data, lora, qlora, dpo, rl: the sections above (rl: `puyu.finetune.grpo.RLSection`).
        freeze_embeddings: full fine-tuning: keep the token embeddings (and a tied output matrix) frozen.
        optimizer, schedule, max_steps, micro_batch_size, grad_accum, max_grad_norm, dtype, device,
            activation_checkpointing, seed, log_every, checkpoint_every, keep_checkpoints, tensorboard,
            peak_flops, progress: as in `puyu.train.config.TrainConfig`.
        eval_prompts: user messages answered (greedy) every `eval_every` steps and logged to samples.jsonl.
        eval_every: steps between sample generations (0 = only at the end when prompts are given).
        eval_max_tokens: most tokens per sample answer.
        rm_holdout: method rm: the share of pairs held out to report pairwise accuracy on (0 = none).
    """

    run_dir: str
    model: str
    data: FinetuneData
    method: Method = "lora"
    lora: LoraConfig = field(default_factory=LoraConfig)
    qlora: QLoraSection = field(default_factory=QLoraSection)
    dpo: PreferenceSection = field(default_factory=PreferenceSection)
    rl: RLSection = field(default_factory=RLSection)
    freeze_embeddings: bool = False
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=2e-4, weight_decay=0.0))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(kind="cosine", warmup_steps=10))
    max_steps: int = 100
    micro_batch_size: int = 4
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    device: str = "auto"
    activation_checkpointing: bool = False
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    tensorboard: bool = False
    peak_flops: float | None = None
    progress: bool = True
    eval_prompts: list[str] = field(default_factory=list)
    eval_every: int = 0
    eval_max_tokens: int = 64
    rm_holdout: float = 0.1

    def __post_init__(self) -> None:
        if self.eval_every < 0 or self.eval_max_tokens < 1:
            raise PuyuError("eval_every must be >= 0 and eval_max_tokens >= 1")
        kind = self.data_kind
        if self.method in PREFERENCE_METHODS and kind != "preference":
            raise PuyuError(f"method {self.method} trains on preference pairs, not data.kind {kind!r}")
        if self.method not in PREFERENCE_METHODS and kind == "preference":
            raise PuyuError(f"preference data needs method dpo, orpo or rm, not {self.method!r}")
        if not 0.0 <= self.rm_holdout < 1.0:
            raise PuyuError(f"rm_holdout must be in [0, 1), got {self.rm_holdout}")
        if (self.method in RL_METHODS) != (kind == "prompts"):
            raise PuyuError(f"method {self.method} does not train on data.kind {kind!r} (prompts go with grpo/rloo)")
        if self.data.replay_paths and kind != "chat":
            raise PuyuError(f"data.replay mixes text into chat data, not into data.kind {kind!r}")
        self.to_train_config()  # the loop's own checks (steps, batch sizes, cadences), before any work

    @property
    def data_kind(self) -> str:
        """The data kind, with "auto" resolved by the method."""
        if self.data.kind != "auto":
            return self.data.kind
        if self.method in RL_METHODS:
            return "prompts"
        return "preference" if self.method in PREFERENCE_METHODS else "chat"

    @property
    def trains(self) -> str:
        """What the weights updates go to: "full", "lora" or "qlora" (preference methods resolved by `dpo.train`,
        RL methods by `rl.train`)."""
        if self.method == "rm":
            return "full"
        if self.method in PREFERENCE_METHODS:
            return self.dpo.train
        return self.rl.train if self.method in RL_METHODS else self.method

    @property
    def uses_adapters(self) -> bool:
        return self.trains in ("lora", "qlora")

    def to_train_config(self) -> TrainConfig:
        """The loop's settings for this run (no validation split; sample generation replaces it)."""
        return TrainConfig(
            run_dir=self.run_dir,
            model=ModelSection(init_from=self.model),
            data=DataSection(train=[DataSource(path=p) for p in self.data.paths], seq_len=self.data.seq_len),
            optimizer=self.optimizer,
            schedule=self.schedule,
            max_steps=self.max_steps,
            micro_batch_size=self.micro_batch_size,
            grad_accum=self.grad_accum,
            max_grad_norm=self.max_grad_norm,
            dtype=self.dtype,
            device=self.device,
            activation_checkpointing=self.activation_checkpointing,
            seed=self.seed,
            log_every=self.log_every,
            eval_every=0,
            checkpoint_every=self.checkpoint_every,
            keep_checkpoints=self.keep_checkpoints,
            tensorboard=self.tensorboard,
            peak_flops=self.peak_flops,
            progress=self.progress,
        )
