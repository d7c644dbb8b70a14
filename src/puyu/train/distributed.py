"""Multi-process training setup: process group from torchrun's environment, DDP and FSDP2 wrapping.

A run started by `torchrun --nproc-per-node N` gets one process per device; each reads its rank from the
environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). A plain `python` run
has none of these and trains as a single process with no process group, so the same code path serves both.
NCCL carries the collectives on CUDA, gloo on the CPU (slow, but it lets tests exercise the real wrappers).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from puyu.errors import PuyuError

logger = logging.getLogger(__name__)

Strategy = Literal["auto", "none", "ddp", "fsdp"]
STRATEGIES = ("auto", "none", "ddp", "fsdp")
DEVICES = ("auto", "cpu", "cuda")
_REDUCE_OPS = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}


@dataclass
class DistInfo:
    """Where this process stands in the run.

    Args:
        rank: global rank, 0..world_size-1.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: the device this process computes on.
        backend: the process group's backend ("nccl", "gloo"); None without a process group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """The process that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """More than one process shares the work."""
        return self.world_size > 1


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise PuyuError(f"environment variable {name}={value!r} is not an integer") from None


def _launch_env() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) from torchrun's environment, or None for a plain single-process run."""
    rank, world_size, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if rank is None and world_size is None:
        return None
    if rank is None or world_size is None:
        missing = "RANK" if rank is None else "WORLD_SIZE"
        raise PuyuError(f"environment variable {missing} is not set (launch with torchrun, or set both or neither)")
    if world_size < 1 or not 0 <= rank < world_size:
        raise PuyuError(f"environment variables RANK={rank} WORLD_SIZE={world_size} are inconsistent")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise PuyuError(f"environment variable {name} is not set (launch with torchrun)")
    return rank, world_size, rank if local_rank is None else local_rank


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device not in DEVICES:
        raise PuyuError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise PuyuError("device 'cuda' was asked for but CUDA is not available (use device 'cpu' or 'auto')")
    if local_rank >= torch.cuda.device_count():
        raise PuyuError(
            f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are visible "
            "(start at most one process per GPU)"
        )
    return torch.device("cuda", local_rank)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun set up, or describe a single-process run.

    With torchrun's variables in the environment the default process group is created (once: later calls
    return the same description); without them nothing is initialised and the run has world size 1.

    Args:
        device: "auto" (cuda:LOCAL_RANK when CUDA is available, else the CPU), "cuda" or "cpu".
            The backend follows the device: NCCL on CUDA, gloo on the CPU.

    Returns:
        This process's rank, world size, local rank, device and backend.

    Raises:
        PuyuError: an unknown device, "cuda" without CUDA, or an incomplete launch environment.
    """
    env = _launch_env()
    if env is None and not dist.is_initialized():
        return DistInfo(device=_pick_device(device, 0))
    if env is None:
        # A group created by someone else (a test harness): take its ranks, assume one process per device.
        env = (dist.get_rank(), dist.get_world_size(), dist.get_rank())
    rank, world_size, local_rank = env
    target = _pick_device(device, local_rank)
    if target.type == "cuda":
        # Before the group exists: NCCL binds each process to the current device.
        torch.cuda.set_device(target)
    if not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        kwargs = {"device_id": target} if target.type == "cuda" else {}
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
    return DistInfo(rank, world_size, local_rank, target, str(dist.get_backend()))


def cleanup() -> None:
    """Destroy the default process group, if there is one (the end of a run, or of a test)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process; a no-op without a process group."""
    if not dist.is_initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce(value: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """A copy of `value` reduced over all processes (the input is left untouched).

    Args:
        value: the tensor to reduce; a CPU tensor is carried to the GPU and back under NCCL.
        op: "sum", "mean", "max" or "min".

    Returns:
        The reduced copy, on `value`'s device; a plain copy without a process group.
    """
    if op not in _REDUCE_OPS:
        raise ValueError(f"all_reduce op {op!r} is not one of sum, mean, max, min")
    if not dist.is_initialized():
        return value.clone()
    work = value.detach().clone()
    if dist.get_backend() == "nccl" and work.device.type != "cuda":
        work = work.to(torch.device("cuda", torch.cuda.current_device()))
    # Gloo has no AVG: "mean" sums, then divides (an integer tensor's mean comes back as a float).
    dist.all_reduce(work, op=_REDUCE_OPS[op])
    if op == "mean":
        work = work / dist.get_world_size()
    return work.to(value.device)


def _fsdp_api() -> tuple[Any, Any]:
    """(MixedPrecisionPolicy, fully_shard): FSDP2 is public in torch.distributed.fsdp from torch 2.6."""
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    except ImportError:
        raise PuyuError(f"strategy 'fsdp' needs torch >= 2.6 (FSDP2); this is torch {torch.__version__}") from None
    return MixedPrecisionPolicy, fully_shard


def _is_fsdp(model: torch.nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return False
    return isinstance(model, FSDPModule)


def wrap_model(
    model: torch.nn.Module,
    info: DistInfo,
    strategy: Strategy = "auto",
    *,
    mixed_precision_dtype: torch.dtype | None = None,
) -> torch.nn.Module:
    """Wrap a `CausalLM` for data-parallel training.

    Every process must pass the same model (same initialisation or checkpoint): FSDP shards the local
    copy without broadcasting it.

    Args:
        model: the model, on the CPU or already on `info.device`.
        info: from `init_distributed`.
        strategy: "none" returns the model as is; "ddp" replicates it (DistributedDataParallel, gradients
            all-reduced and averaged); "fsdp" shards parameters, gradients and optimizer state (FSDP2: each
            decoder layer is one unit, embeddings, final norm and output matrix the root unit, so tied
            embeddings stay one parameter); "auto" is "ddp" with more than one process, else "none".
            "ddp" and "fsdp" without a process group fall back to "none" with a warning.
        mixed_precision_dtype: FSDP only: dtype the layers compute in (e.g. torch.bfloat16) while the
            sharded master weights and optimizer stay in theirs and gradients are reduced in float32.

    Returns:
        The wrapped model. Under FSDP it is the same object, its parameters now DTensor shards on
        `info.device`: read whole weights with `torch.distributed.checkpoint.state_dict.get_model_state_dict`
        (a collective: every rank calls it).
    """
    if strategy not in STRATEGIES:
        raise PuyuError(f"parallel strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if strategy == "auto":
        strategy = "ddp" if info.world_size > 1 else "none"
    if strategy != "none" and not dist.is_initialized():
        logger.warning("strategy %r needs a process group (launch with torchrun); training unwrapped", strategy)
        strategy = "none"
    if strategy == "none":
        return model
    if strategy == "ddp":
        model.to(info.device)
        # The only buffers are rotary tables computed from the config, identical everywhere: no re-broadcast
        # before every forward (the flag was renamed in torch 2.13).
        ddp_params = inspect.signature(DistributedDataParallel.__init__).parameters
        sync_flag = "forward_sync_buffers" if "forward_sync_buffers" in ddp_params else "broadcast_buffers"
        return DistributedDataParallel(
            model,
            device_ids=[info.device.index] if info.device.type == "cuda" else None,
            # Gradients live inside the all-reduce buckets: one copy of them instead of two.
            gradient_as_bucket_view=True,
            **{sync_flag: False},
        )
    return _fully_shard(model, info, mixed_precision_dtype)


def _fully_shard(model: torch.nn.Module, info: DistInfo, dtype: torch.dtype | None) -> torch.nn.Module:
    policy_type, fully_shard = _fsdp_api()
    from torch.distributed.device_mesh import init_device_mesh

    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise PuyuError(f"strategy 'fsdp' needs a CausalLM (model.model.layers); got {type(model).__name__}")
    mesh = init_device_mesh(info.device.type, (info.world_size,))
    kwargs: dict[str, object] = {"mesh": mesh}
    if dtype is not None:
        kwargs["mp_policy"] = policy_type(param_dtype=dtype, reduce_dtype=torch.float32)
    for layer in layers:
        fully_shard(layer, **kwargs)
    # The root unit takes everything left: embeddings, final norm and the output matrix. A tied output
    # matrix *is* the embedding parameter, so it must be sharded in the same unit as the embedding.
    fully_shard(model, **kwargs)
    return model


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The `CausalLM` inside a wrapper: DDP's `.module`; an FSDP2 model is its own (sharded) self."""
    return model.module if isinstance(model, DistributedDataParallel) else model


@contextlib.contextmanager
def _fsdp_no_sync(model: torch.nn.Module) -> Iterator[None]:
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


def no_sync(model: torch.nn.Module, active: bool) -> contextlib.AbstractContextManager[None]:
    """Skip the gradient reduction of the backward passes inside (gradient accumulation).

    Use `active=True` on every micro-batch but the last of a step; the last one's backward then reduces
    the accumulated gradients once. Put both the forward and the backward inside: DDP reads the switch in
    the forward, FSDP in the backward.

    Args:
        model: as returned by `wrap_model`.
        active: whether to skip the reduction.

    Returns:
        DDP's `no_sync()`, FSDP2's gradient sync switched off for the block, or a null context when not
        active or the model is not wrapped.
    """
    if not active:
        return contextlib.nullcontext()
    if isinstance(model, DistributedDataParallel):
        return model.no_sync()
    if _is_fsdp(model):
        return _fsdp_no_sync(model)
    return contextlib.nullcontext()


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed torch (CPU and every CUDA device), Python's `random` and NumPy.

    Torch gets `seed` on every rank, so weights initialised from the global generator agree across ranks
    (FSDP does not broadcast them). Python's `random` and NumPy get `seed + rank`: nothing that must agree
    across ranks uses them, and per-rank streams keep any sampling they do independent.

    Args:
        seed: the run's seed.
        rank: this process's rank.
    """
    torch.manual_seed(seed)  # also seeds every CUDA device
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
