"""`finetune(config)`: full, LoRA, QLoRA, DPO/ORPO and online RL (GRPO/RLOO) on the one training loop.

Read top to bottom: processes and seed → tokenizer, chat template and data (with a per-line report) → the
base model and the method's changes to it (frozen embeddings, LoRA adapters, NF4 base) → objective and
batch source → `puyu.train.loop.run_training` (which resumes from the run's checkpoints) → the artefact:
`run_dir/adapter` (a PEFT folder) when adapters were trained, `run_dir/model` (an HF folder) otherwise,
each with the base's tokenizer files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from puyu.configuration import to_dict
from puyu.errors import PuyuError
from puyu.finetune.config import PREFERENCE_METHODS, RL_METHODS, FinetuneConfig
from puyu.finetune.hooks import EvaluateChatHook
from puyu.finetune.objectives import PreferenceLoss, causal_lm_loss
from puyu.finetune.preference_data import PreferenceBatches, attach_reference, load_preference_pairs
from puyu.finetune.sft_data import DataReport, SampleBatches, chat_templates, load_chat_samples, load_text_samples
from puyu.io import atomic_write_text
from puyu.model.checkpoint import load_model, save_model
from puyu.model.config import ModelConfig
from puyu.model.convert import copy_tokenizer_files
from puyu.model.decoder import CausalLM
from puyu.tokenizer import Tokenizer
from puyu.train.distributed import init_distributed, seed_everything
from puyu.train.loop import LossFn, StepHook, TrainResult, run_training

ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
DATA_REPORT = "data_report.json"
CONFIG_FILE = "finetune_config.json"


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced.

    Attributes:
        output: the artefact: `run_dir/adapter` (PEFT folder) or `run_dir/model` (HF folder).
        train: the loop's result (steps, final loss, throughput).
        data: the data report (per-line errors, truncated and dropped counts).
        samples: samples (or pairs) trained on; truncated, skipped: as counted in the report
            (skipped = invalid records + dropped samples).
    """

    output: Path
    train: TrainResult
    data: DataReport
    samples: int
    truncated: int
    skipped: int


def finetune(config: FinetuneConfig) -> FinetuneResult:
    """Fine-tune `config.model` on `config.data` with `config.method`; resumes from `run_dir` if it holds checkpoints.

    Args:
        config: the run's settings.

    Raises:
        PuyuError: bad settings, unusable data, a chat template that does not fit the model, a checkpoint of
            another kind of run.
    """
    info = init_distributed(config.device)
    seed_everything(config.seed, info.rank)
    run_dir = Path(config.run_dir)
    model_dir = Path(config.model)
    if not (model_dir / "config.json").is_file():
        raise PuyuError(f"{model_dir}: not a model folder (no config.json)")
    tokenizer = Tokenizer.from_pretrained(model_dir)
    model_config = ModelConfig.from_pretrained(model_dir)
    show = config.progress and info.is_main
    data, report, template = read_data(config, tokenizer, model_config, progress=show)
    if info.is_main:
        print(f"data: {report.summary()}")
        for error in report.errors[:5]:
            print(f"  {error}")
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, json.dumps(to_dict(config), indent=2) + "\n")
        atomic_write_text(run_dir / DATA_REPORT, json.dumps(report.to_json(), indent=2) + "\n")

    model = prepare_model(config, info.device)
    train_config = config.to_train_config()
    pad_id = pad_token_id(tokenizer)
    loss_fn: LossFn
    held_out: list[Any] = []
    batch_settings = {
        "micro_batch_size": config.micro_batch_size,
        "grad_accum": config.grad_accum,
        "seed": config.seed,
        "rank": info.rank,
        "world_size": info.world_size,
    }
    if config.method == "rm":
        from puyu.finetune.reward_model import RewardLoss, RewardModel

        data, held_out = split_holdout(data, config.rm_holdout, config.seed)
        model = RewardModel(model).train()  # type: ignore[assignment]
        loss_fn = RewardLoss()
        batches: Any = PreferenceBatches(data, pad_id=pad_id, **batch_settings)
    elif config.method in RL_METHODS:
        batches, loss_fn = rollout_source(config, model, tokenizer, template, data, pad_id)
    elif config.method in PREFERENCE_METHODS:
        loss_fn = PreferenceLoss(
            "orpo" if config.method == "orpo" else config.dpo.loss,
            beta=config.dpo.beta,
            reference=reference_kind(config),
            label_smoothing=config.dpo.label_smoothing,
            simpo_gamma=config.dpo.simpo_gamma,
        )
        if reference_kind(config) == "precomputed":
            # The model is still the base here (a resumed run loads its checkpoint inside the loop).
            attach_reference(
                model, data, pad_id=pad_id, batch_size=config.micro_batch_size, device=info.device, progress=show
            )
        batches = PreferenceBatches(data, pad_id=pad_id, **batch_settings)
    else:
        loss_fn = causal_lm_loss
        batches = SampleBatches(
            data, seq_len=config.data.seq_len, pad_id=pad_id, packing=config.data.packing, **batch_settings
        )
    hooks: list[StepHook] = []
    if config.eval_prompts:
        hooks.append(
            EvaluateChatHook(
                tokenizer,
                template,
                config.eval_prompts,
                every=config.eval_every,
                max_steps=config.max_steps,
                run_dir=run_dir,
                max_tokens=config.eval_max_tokens,
                echo=show,
            )
        )
    train = run_training(train_config, model, batches, loss_fn, info, hooks=hooks)
    output = run_dir / (ADAPTER_DIR if config.uses_adapters else MODEL_DIR)
    if info.is_main and config.method == "rm":
        save_reward_artefact(config, model, output, held_out, pad_id, echo=show)
    elif info.is_main:
        save_artefact(config, model, output)
    return FinetuneResult(
        output=output,
        train=train,
        data=report,
        samples=report.samples,
        truncated=report.truncated,
        skipped=report.invalid + report.dropped,
    )


def read_data(
    config: FinetuneConfig, tokenizer: Tokenizer, model_config: ModelConfig, *, progress: bool
) -> tuple[list[Any], DataReport, Any]:
    """The run's samples (or pairs), the data report and the chat template."""
    data = config.data
    template, tool_template = chat_templates(tokenizer, model_config.family, data.template, owner=config.model)
    kind = config.data_kind
    if kind == "prompts":
        from puyu.finetune.grpo import load_prompts

        prompts = load_prompts(data.paths)
        return prompts, DataReport(kind="prompts", samples=len(prompts), files=list(data.paths)), template
    if kind == "text":
        samples, report = load_text_samples(
            data.paths, tokenizer, seq_len=data.seq_len, text_field=data.text_field, progress=progress
        )
        return samples, report, template
    loader = load_preference_pairs if kind == "preference" else load_chat_samples
    items, report = loader(
        data.paths,
        tokenizer,
        template,
        tool_template,
        seq_len=data.seq_len,
        truncation=data.truncation,
        format=data.format,
        progress=progress,
    )
    if data.replay_paths:
        replayed, report.replay = load_text_samples(
            data.replay_paths, tokenizer, seq_len=data.seq_len, text_field=data.text_field, progress=progress
        )
        items += replayed  # shuffled and packed together with the conversations
    return items, report, template


def reference_kind(config: FinetuneConfig) -> str:
    """Where DPO's reference log-probs come from (see `puyu.finetune.objectives`)."""
    if config.dpo.loss == "simpo" or config.method == "orpo":
        return "none"
    return "adapters_off" if config.uses_adapters else "precomputed"


def split_holdout(pairs: list[Any], share: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(training pairs, held-out pairs): a seeded share of the pairs, at least one when share > 0."""
    if share <= 0 or len(pairs) < 2:
        return pairs, []
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    count = min(len(pairs) - 1, max(1, round(share * len(pairs))))
    held = set(order[:count])
    return [p for i, p in enumerate(pairs) if i not in held], [pairs[i] for i in sorted(held)]


def save_reward_artefact(
    config: FinetuneConfig, model: Any, output: Path, held_out: list[Any], pad_id: int, *, echo: bool
) -> Path:
    """The reward model's folder, and its pairwise accuracy on the held-out pairs (`rm_eval.json`)."""
    from puyu.finetune.preference_data import pair_batch
    from puyu.finetune.reward_model import pairwise_accuracy, save_reward_model

    save_reward_model(model, output, pad_token_id=pad_id)
    copy_tokenizer_files(Path(config.model), output)
    if held_out:
        device = model.lm.device
        batches = [pair_batch(held_out[i : i + 8], pad_id).to(device) for i in range(0, len(held_out), 8)]
        result = {"held_out_pairs": len(held_out), "pairwise_accuracy": pairwise_accuracy(model, batches)}
        atomic_write_text(Path(config.run_dir) / "rm_eval.json", json.dumps(result, indent=2) + "\n")
        if echo:
            print(
                f"reward model: pairwise accuracy {result['pairwise_accuracy']:.3f} on {len(held_out)} held-out pairs"
            )
    return output


def rollout_source(
    config: FinetuneConfig, model: CausalLM, tokenizer: Tokenizer, template: Any, prompts: list[Any], pad_id: int
) -> tuple[Any, LossFn]:
    """Online RL's batch source (rollouts from the policy itself) and its loss."""
    from puyu.finetune.grpo import RolloutBatches, RolloutLoss, frozen_reference

    settings = config.rl
    reference = frozen_reference(model) if settings.beta > 0 and not config.uses_adapters else None
    source = RolloutBatches(
        model,
        tokenizer,
        template,
        prompts,
        settings,
        micro_batch_size=config.micro_batch_size,
        seed=config.seed,
        pad_id=pad_id,
        reference=reference,
        advantage="rloo" if config.method == "rloo" else "grpo",
    )
    return source, RolloutLoss(settings, source)


def base_dtype(config: FinetuneConfig, device: torch.device) -> torch.dtype:
    """float32 on the CPU; on CUDA a frozen base is held in bfloat16 (a full fine-tune keeps float32 master
    weights and computes under bf16 autocast, as pretraining does)."""
    if device.type == "cuda" and config.uses_adapters and config.dtype != "float32":
        return torch.bfloat16
    return torch.float32


def prepare_model(config: FinetuneConfig, device: torch.device) -> CausalLM:
    """The base model with the method applied: frozen embeddings, LoRA adapters, NF4 base."""
    dtype = base_dtype(config, device)
    model = load_model(config.model, dtype=dtype, device=device)
    if config.trains == "full":
        if config.freeze_embeddings:
            model.model.embed_tokens.weight.requires_grad_(False)
        return model.train()
    from puyu.finetune.lora import apply_lora, lora_parameters

    if config.trains == "qlora":
        from puyu.quant.nf4 import quantize_model_nf4

        model = quantize_model_nf4(
            model, double_quant=config.qlora.double_quant, block_size=config.qlora.block_size, compute_dtype=dtype
        )
    model = apply_lora(model, config.lora, seed=config.seed)
    for param in lora_parameters(model):
        param.data = param.data.float()  # adapter weights and their optimizer state stay float32
    return model.train()


def pad_token_id(tokenizer: Tokenizer) -> int:
    """The id written into padding (never trained on or attended to): pad, else EOS, else 0."""
    for candidate in (tokenizer.pad_id, tokenizer.eos_id):
        if candidate is not None:
            return candidate
    return 0


def save_artefact(config: FinetuneConfig, model: CausalLM, output: Path) -> Path:
    """Write the adapter (PEFT folder) or the whole model (HF folder), with the base's tokenizer files."""
    base = Path(config.model)
    model.eval()
    if config.uses_adapters:
        from puyu.finetune.adapter import save_adapter

        save_adapter(model, output, config.lora, base_model=base)
    else:
        stored = ModelConfig.from_pretrained(base).torch_dtype
        save_model(model, output, dtype=stored)
    copy_tokenizer_files(base, output)
    return output
