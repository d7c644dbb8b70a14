"""Settings of a training run: the YAML files under configs/ map onto these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from puyu.errors import PuyuError
from puyu.train.optimizer import OptimizerConfig
from puyu.train.schedule import ScheduleConfig


@dataclass
class ModelSection:
    """Which model to train.

    Args:
        preset: a `ModelConfig` preset to initialise randomly (pretraining from scratch).
        init_from: an HF model folder to continue from (continued pretraining); its tokenizer is used.
        overrides: `ModelConfig` fields to change on the preset (e.g. num_layers: 4).
        tokenizer: tokenizer folder for a run from scratch (default: the one the data was tokenized with).
        init_std: standard deviation of the random initialisation.
    """

    preset: str | None = None
    init_from: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if (self.preset is None) == (self.init_from is None):
            raise PuyuError("model: give exactly one of preset (train from scratch) or init_from (an HF folder)")


@dataclass
class DataSource:
    """A token-shard folder (`puyu data tokenize` output) and its sampling weight."""

    path: str
    weight: float = 1.0


@dataclass
class DataSection:
    """Training and validation data.

    Args:
        train: token-shard folders, mixed by weight.
        seq_len: tokens per training sequence.
        document_mask: no attention across document boundaries inside a packed sequence (and no loss on
            predicting a document's first token from the previous document).
        validation: folders for validation loss; default: the "validation" split of the train folders, when present.
    """

    train: list[DataSource]
    seq_len: int = 512
    document_mask: bool = True
    validation: list[DataSource] | None = None

    def __post_init__(self) -> None:
        if not self.train:
            raise PuyuError("data.train: name at least one token-shard folder")
        if self.seq_len < 2:
            raise PuyuError(f"data.seq_len must be at least 2, got {self.seq_len}")


@dataclass
class TrainConfig:
    """One training run.

    Args:
        run_dir: where checkpoints, metrics, plots and the resolved config go; a run resumes from here.
        model, data, optimizer, schedule: the sections above.
        max_steps: optimizer steps.
        micro_batch_size: sequences per forward pass per process.
        grad_accum: micro-batches per optimizer step.
        max_grad_norm: gradient clipping (None = off).
        dtype: autocast compute dtype; weights and optimizer state stay float32. "auto": bfloat16 on CUDA
            where supported, float32 on CPU (fp32 is the faster CPU path, see docs/models.md).
        device: "auto", "cpu" or "cuda".
        distributed: "auto" (DDP when launched with torchrun on several processes), "none", "ddp", "fsdp".
        activation_checkpointing: recompute block activations in backward (less memory, ~30% more compute).
        compile: `torch.compile` the model.
        seed: initialisation, data order and dropout-free determinism.
        log_every, eval_every, eval_batches, checkpoint_every, keep_checkpoints: cadence of logs, validation and
            checkpoints (0 = never).
        tensorboard: also write TensorBoard scalars (needs the `tensorboard` package).
        peak_flops: FLOP/s the MFU is quoted against; default: measured on this machine at start.
        progress: show a progress bar.
    """

    run_dir: str
    model: ModelSection
    data: DataSection
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    max_steps: int = 1000
    micro_batch_size: int = 8
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    device: str = "auto"
    distributed: Literal["auto", "none", "ddp", "fsdp"] = "auto"
    activation_checkpointing: bool = False
    compile: bool = False
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    eval_batches: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    tensorboard: bool = False
    peak_flops: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("max_steps", "micro_batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise PuyuError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("log_every", "eval_every", "checkpoint_every", "eval_batches"):
            if getattr(self, name) < 0:
                raise PuyuError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise PuyuError(f"keep_checkpoints must be at least 1, got {self.keep_checkpoints}")
