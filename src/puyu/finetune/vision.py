"""LLaVA-style fine-tuning of an InternVL model on the one training loop.

Two stages, as LLaVA and XTuner run them: `projector` trains only the MLP projector (the ViT and the
language model frozen) to align image features with the text embedding space; `lora` then trains LoRA
adapters on the language model's projections (saved as a PEFT adapter, plus the merged model folder), and
`full` trains the language model and the projector. Data is a JSONL of OpenAI-style `messages` whose user
content holds `{"type": "image", "image": "path/relative/to/the/jsonl.png"}` parts; the loss is on the
assistant's tokens only. Images become placeholder runs exactly as at inference (`puyu.model.vision.prompt`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from puyu.chat import ChatTemplate
from puyu.chat.template import assistant_mask
from puyu.errors import PuyuError
from puyu.finetune.lora import LoraConfig, apply_lora, merge_lora
from puyu.model.vision import load_vlm, save_vlm
from puyu.model.vision.images import ImageLimits, load_image
from puyu.model.vision.model import VisionLanguageModel
from puyu.model.vision.prompt import split_images
from puyu.model.vision.runtime import VisionRuntime
from puyu.tokenizer import Tokenizer
from puyu.train.config import DataSection, DataSource, ModelSection, OptimizerConfig, TrainConfig
from puyu.train.distributed import init_distributed, seed_everything
from puyu.train.loop import TrainResult, run_training
from puyu.train.objectives import IGNORE_INDEX

Stage = Literal["projector", "lora", "full"]


@dataclass
class VisionFinetuneConfig:
    """One LLaVA-style stage.

    Args:
        model: InternVL model folder (either layout).
        data: JSONL of `messages` with image parts (paths relative to the file).
        run_dir: checkpoints, metrics and the output (`model/`, and `adapter/` for LoRA).
        stage: "projector", "lora" or "full".
        max_steps, micro_batch_size, grad_accum, lr, seq_len, seed, device, dtype: the loop's settings; samples
            longer than `seq_len` are skipped (an image run cannot be cut).
        lora: adapter shape for the lora stage.
        peak_flops: FLOP/s for MFU; default measured at start.
    """

    model: str
    data: str
    run_dir: str
    stage: Stage = "projector"
    max_steps: int = 100
    micro_batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-3
    seq_len: int = 1024
    seed: int = 0
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    lora: LoraConfig = field(default_factory=LoraConfig)
    peak_flops: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.stage not in ("projector", "lora", "full"):
            raise PuyuError(f"stage must be projector, lora or full, got {self.stage!r}")
        if self.max_steps < 1 or self.micro_batch_size < 1 or self.grad_accum < 1 or self.seq_len < 8:
            raise PuyuError("max_steps, micro_batch_size and grad_accum must be >= 1 and seq_len >= 8")


@dataclass
class ImageSample:
    ids: list[int]
    mask: list[bool]  # True where the token is the assistant's (a loss target)
    pixels: np.ndarray  # [tiles, 3, S, S]


@dataclass
class ImageBatch:
    """Padded ids and labels [B, T] and every sample's tiles, in placeholder order [N, 3, S, S]."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor

    def to(self, device: torch.device) -> ImageBatch:
        return ImageBatch(self.input_ids.to(device), self.labels.to(device), self.pixel_values.to(device))

    @property
    def num_targets(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


class ImageTextModel(nn.Module):
    """The loop's view of a vision model: `config` is the language model's shape (FLOPs, checkpoints)."""

    def __init__(self, vlm: VisionLanguageModel) -> None:
        super().__init__()
        self.vlm = vlm
        self.config = vlm.config.text
        self.activation_checkpointing = False

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        self.vlm.language_model.activation_checkpointing = self.activation_checkpointing
        return self.vlm(input_ids, pixel_values)


def image_lm_loss(model: nn.Module, batch: ImageBatch) -> torch.Tensor:
    """Summed next-token cross-entropy over the assistant's tokens (float32)."""
    logits = model(batch.input_ids, batch.pixel_values)
    return F.cross_entropy(
        logits.float().flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def encode_sample(
    messages: list[dict], runtime: VisionRuntime, template: ChatTemplate, tokenizer: Tokenizer, base: Path
) -> ImageSample:
    """Token ids, assistant mask and tiles of one conversation with images."""

    def load(part: dict, where: str) -> Any:
        reference = part.get("image") or (part.get("image_url") or {}).get("url")
        if isinstance(reference, str) and not reference.startswith("data:"):
            reference = base / reference
        return load_image(reference, runtime.limits, where)

    plain, images, sentinel = split_images(messages, load, runtime.limits.max_images)
    rendered = template.render(plain)
    pieces = rendered.text.split(sentinel)
    if len(pieces) != len(images) + 1:
        raise PuyuError("the chat template dropped or repeated an image")
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    tiles = []
    at = 0  # position of the piece in the rendered text
    for i, piece in enumerate(pieces):
        piece_ids, piece_offsets = tokenizer.encode_with_offsets(piece, add_special_tokens=False)
        if runtime.image_tokens.context in piece_ids:
            raise PuyuError("message text contains the image placeholder token")
        ids.extend(piece_ids)
        offsets.extend((start + at, end + at) for start, end in piece_offsets)
        at += len(piece) + len(sentinel)
        if i == len(images):
            break
        pixels = runtime.processor(images[i].image)
        tiles.append(pixels)
        count = pixels.shape[0] * runtime.tokens_per_tile
        run = [runtime.image_tokens.start, *[runtime.image_tokens.context] * count, runtime.image_tokens.end]
        ids.extend(run)
        offsets.extend([(at - len(sentinel), at - len(sentinel))] * len(run))  # empty spans: never targets
    mask = assistant_mask(offsets, rendered.assistant_spans)
    return ImageSample(ids, mask, np.concatenate(tiles) if tiles else np.zeros((0, 3, 1, 1), np.float32))


def read_samples(
    path: Path, runtime: VisionRuntime, template: ChatTemplate, tokenizer: Tokenizer, seq_len: int
) -> tuple[list[ImageSample], int]:
    """The file's samples that fit `seq_len`, and how many records were skipped (too long)."""
    samples, skipped = [], 0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                messages = record["messages"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise PuyuError(f"{path}:{number}: expected a JSON object with 'messages'") from None
            try:
                sample = encode_sample(messages, runtime, template, tokenizer, path.parent)
            except PuyuError as bad:
                raise PuyuError(f"{path}:{number}: {bad}") from None
            if len(sample.ids) > seq_len + 1:
                skipped += 1
                continue
            samples.append(sample)
    if not samples:
        raise PuyuError(f"{path}: no usable samples ({skipped} longer than seq_len {seq_len})")
    return samples, skipped


class ImageBatches:
    """Shuffled micro-batches, epoch after epoch; its position is checkpointed so a resumed run continues."""

    def __init__(self, samples: list[ImageSample], micro_batch_size: int, grad_accum: int, pad_id: int, seed: int):
        self.samples, self.micro, self.accum, self.pad_id, self.seed = (
            samples,
            micro_batch_size,
            grad_accum,
            pad_id,
            seed,
        )
        self.epoch, self.index = 0, 0
        self._order = self._shuffle()

    def _shuffle(self) -> list[int]:
        order = list(range(len(self.samples)))
        random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
        return order

    def _take(self) -> ImageSample:
        if self.index >= len(self._order):
            self.epoch, self.index = self.epoch + 1, 0
            self._order = self._shuffle()
        self.index += 1
        return self.samples[self._order[self.index - 1]]

    def next_step(self, device: torch.device) -> list[ImageBatch]:
        return [self._collate([self._take() for _ in range(self.micro)]).to(device) for _ in range(self.accum)]

    def _collate(self, samples: list[ImageSample]) -> ImageBatch:
        width = max(len(s.ids) for s in samples) - 1
        ids = torch.full((len(samples), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        for row, s in enumerate(samples):
            n = len(s.ids) - 1
            ids[row, :n] = torch.tensor(s.ids[:-1])
            targets = torch.tensor(s.ids[1:])
            targets[~torch.tensor(s.mask[1:])] = IGNORE_INDEX
            labels[row, :n] = targets
        pixels = torch.from_numpy(np.concatenate([s.pixels for s in samples if s.pixels.shape[0]]))
        return ImageBatch(ids, labels, pixels)

    def state_dict(self, info: Any) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, Any] | None, info: Any) -> None:
        if state:
            self.epoch, self.index = int(state["epoch"]), int(state["index"])
            self._order = self._shuffle()


def set_trainable(vlm: VisionLanguageModel, config: VisionFinetuneConfig) -> None:
    """Freeze what the stage does not train: the ViT always; the language model except in `full` (or its
    LoRA adapters in `lora`); the projector is trained in `projector` and `full`."""
    for param in vlm.parameters():
        param.requires_grad_(False)
    if config.stage == "lora":
        apply_lora(vlm.language_model, config.lora, seed=config.seed)
    elif config.stage == "full":
        for param in vlm.language_model.parameters():
            param.requires_grad_(True)
    if config.stage in ("projector", "full"):
        for param in vlm.encoder.multi_modal_projector.parameters():
            param.requires_grad_(True)


@dataclass
class VisionFinetuneResult:
    output: Path
    adapter: Path | None
    train: TrainResult
    samples: int
    skipped: int


def finetune_vision(config: VisionFinetuneConfig) -> VisionFinetuneResult:
    """Run one stage; writes `run_dir/model` (the whole InternVL folder) and, for `lora`, `run_dir/adapter`
    (a PEFT adapter of the language model)."""
    info = init_distributed(config.device)
    seed_everything(config.seed, info.rank)
    folder, run_dir = Path(config.model), Path(config.run_dir)
    vlm = load_vlm(folder, dtype="float32", device=info.device)
    tokenizer = Tokenizer.from_pretrained(folder)
    runtime = VisionRuntime.for_folder(folder, vlm.encoder, tokenizer, ImageLimits())
    template = ChatTemplate.for_model(tokenizer, vlm.config.text.family)
    samples, skipped = read_samples(Path(config.data), runtime, template, tokenizer, config.seq_len)
    set_trainable(vlm, config)
    model = ImageTextModel(vlm)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)
    batches = ImageBatches(samples, config.micro_batch_size, config.grad_accum, pad_id, config.seed)
    train_config = TrainConfig(
        run_dir=str(run_dir),
        model=ModelSection(init_from=str(folder)),
        data=DataSection(train=[DataSource(path=config.data)], seq_len=config.seq_len),
        optimizer=OptimizerConfig(lr=config.lr),
        max_steps=config.max_steps,
        micro_batch_size=config.micro_batch_size,
        grad_accum=config.grad_accum,
        dtype=config.dtype,
        device=config.device,
        distributed="none",
        seed=config.seed,
        eval_every=0,
        checkpoint_every=0,
        peak_flops=config.peak_flops,
        progress=config.progress,
    )
    train = run_training(train_config, model, batches, image_lm_loss, info)  # type: ignore[arg-type]
    adapter = None
    if config.stage == "lora":
        from puyu.finetune.adapter import save_adapter

        adapter = save_adapter(vlm.language_model, run_dir / "adapter", config.lora, str(folder))
        merge_lora(vlm.language_model)
    output = save_vlm(vlm, run_dir / "model")
    tokenizer.save_pretrained(output)
    for name in ("preprocessor_config.json",):
        if (folder / name).is_file():
            (output / name).write_bytes((folder / name).read_bytes())
    return VisionFinetuneResult(output, adapter, train, len(samples), skipped)
