"""One rank of the distributed tests: run under torchrun, writes what it saw to OUT/rank{RANK}.pt.

`python -m torch.distributed.run --nproc-per-node 2 dist_worker.py OUT`. The test module also imports the
step functions below to compute the single-process references, so both sides run the same code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from puyu.model import CausalLM, ModelConfig
from puyu.model.init import random_model

ROWS, SEQ = 4, 9


def tiny_model(preset: str) -> CausalLM:
    """The same random model on every rank (FSDP does not broadcast weights)."""
    return random_model(ModelConfig.from_name(preset), seed=0, std=0.3).train()


def batch(seed: int, vocab: int = 512) -> torch.Tensor:
    """A fixed [ROWS, SEQ] batch of token ids."""
    return torch.randint(0, vocab, (ROWS, SEQ), generator=torch.Generator().manual_seed(seed))


def lm_loss(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of `ids` (every row the same length, so row means average fairly)."""
    logits = model(ids[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())


def train_steps(model: torch.nn.Module, rank: int, world_size: int) -> list[float]:
    """Two AdamW steps on this rank's share of two batches; the second accumulates two micro-batches,
    skipping the gradient reduction on the first. Returns the losses of the first micro-batch of each step."""
    from puyu.train.distributed import no_sync

    # eps well above rounding noise: some gradients are zero up to rounding (a key bias barely changes the
    # softmax), and Adam's normalisation would otherwise turn that noise into full-size steps that differ
    # between a sharded and an unsharded run.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, eps=1e-3, weight_decay=0.1)
    losses = []
    for step, micro_batches in enumerate((1, 2)):
        shard = batch(seed=10 + step).chunk(world_size)[rank]
        for index, micro in enumerate(shard.chunk(micro_batches)):
            with no_sync(model, active=index < micro_batches - 1):
                loss = lm_loss(model, micro)
                (loss / micro_batches).backward()
            if index == 0:
                losses.append(loss.item())
        optimizer.step()
        optimizer.zero_grad()
    return losses


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def run_info(record: dict[str, object]) -> None:
    from puyu.train.distributed import all_reduce, barrier, init_distributed

    info = init_distributed()
    again = init_distributed()
    value = torch.tensor([info.rank + 1.0, 10.0 * (info.rank + 1)])
    record["info"] = {
        "rank": info.rank,
        "world_size": info.world_size,
        "local_rank": info.local_rank,
        "device": str(info.device),
        "backend": info.backend,
        "is_main": info.is_main,
        "is_distributed": info.is_distributed,
    }
    record["idempotent"] = again == info
    record["sum"] = all_reduce(value, "sum")
    record["mean"] = all_reduce(value, "mean")
    record["max"] = all_reduce(value, "max")
    record["min"] = all_reduce(value, "min")
    record["input_untouched"] = torch.equal(value, torch.tensor([info.rank + 1.0, 10.0 * (info.rank + 1)]))
    barrier()


def run_ddp(record: dict[str, object]) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from puyu.train.distributed import init_distributed, no_sync, unwrap_model, wrap_model

    info = init_distributed()
    model = tiny_model("llama-tiny")
    wrapped = wrap_model(model, info)  # "auto" is DDP with two processes
    record["ddp_wrapped"] = isinstance(wrapped, DistributedDataParallel)
    record["ddp_unwrapped"] = unwrap_model(wrapped) is model
    lm_loss(wrapped, batch(seed=1).chunk(info.world_size)[info.rank]).backward()
    record["ddp_grads"] = grads(model)

    model = tiny_model("llama-tiny")
    wrapped = wrap_model(model, info, "ddp")
    micro_batches = batch(seed=2).chunk(info.world_size)[info.rank].chunk(2)
    with no_sync(wrapped, active=True):
        (lm_loss(wrapped, micro_batches[0]) / 2).backward()
    record["no_sync_local_grads"] = grads(model)
    with no_sync(wrapped, active=False):
        (lm_loss(wrapped, micro_batches[1]) / 2).backward()
    record["no_sync_final_grads"] = grads(model)


def run_fsdp(record: dict[str, object]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    from puyu.train.distributed import init_distributed, no_sync, unwrap_model, wrap_model

    info = init_distributed()
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    for preset in ("internlm2-tiny", "qwen2-tiny"):
        model = wrap_model(tiny_model(preset), info, "fsdp")
        record[f"{preset}_sharded"] = isinstance(model, FSDPModule) and isinstance(model.lm_head.weight, DTensor)
        record[f"{preset}_tied"] = unwrap_model(model).lm_head.weight is model.model.embed_tokens.weight
        # One backward on this rank's half: the reduced gradient shards, gathered whole.
        lm_loss(model, batch(seed=1).chunk(info.world_size)[info.rank]).backward()
        record[f"{preset}_grads"] = {name: p.grad.full_tensor() for name, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
        record[f"{preset}_losses"] = train_steps(model, info.rank, info.world_size)
        # Collective: every rank calls it; with cpu_offload only rank 0 receives the tensors.
        record[f"{preset}_state"] = get_model_state_dict(model, options=options)

    # Activation checkpointing recomputes each sharded layer in the backward pass (FSDP re-gathers it).
    model = tiny_model("qwen2-tiny")
    model.activation_checkpointing = True
    model = wrap_model(model, info, "fsdp")
    lm_loss(model, batch(seed=1).chunk(info.world_size)[info.rank]).backward()
    record["checkpointed_grads"] = {name: p.grad.full_tensor() for name, p in model.named_parameters()}

    model = wrap_model(tiny_model("qwen2-tiny"), info, "fsdp")
    with no_sync(model, active=True):
        lm_loss(model, batch(seed=1).chunk(info.world_size)[info.rank]).backward()
    # Unreduced gradients stay in FSDP's unsharded buffers: no sharded gradient exists yet.
    record["fsdp_no_sync_grads"] = [name for name, p in model.named_parameters() if p.grad is not None]

    model = wrap_model(tiny_model("qwen2-tiny"), info, "fsdp", mixed_precision_dtype=torch.bfloat16)
    ids = batch(seed=10).chunk(info.world_size)[info.rank]
    logits = model(ids[:, :-1])
    F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten()).backward()
    weight = model.model.layers[0].mlp.up_proj.weight
    record["mp_dtypes"] = (logits.dtype, weight.dtype, weight.grad.dtype)


def main(out: Path) -> None:
    from puyu.train.distributed import cleanup, init_distributed

    record: dict[str, object] = {}
    run_info(record)
    run_ddp(record)
    run_fsdp(record)
    rank = init_distributed().rank
    cleanup()
    record["cleaned_up"] = not torch.distributed.is_initialized()
    torch.save(record, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
