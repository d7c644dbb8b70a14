"""Training checkpoints: everything a run needs to continue exactly as if it had never stopped.

A checkpoint is a folder `run_dir/checkpoints/step-NNNNNNNN/`:

    model.safetensors   weights in puyu's internal (HF Llama) names and the training dtype
    config.json         the model's HF config (`ModelConfig.to_hf()`)
    optimizer.pt        optimizer state keyed by parameter name (step counts, moments, param groups)
    scheduler.pt        LR scheduler state (last_epoch, base and last LRs)
    train_state.json    `TrainState`: steps, tokens, data position, best validation loss
    rng.pt              every rank's torch CPU/CUDA, Python `random` and NumPy generator states
    train_config.json   the run's configuration, for the record
    checkpoint.json     manifest: format, step, world size and the size of every file above

The folder is published atomically (`puyu.train.checkpoint_folders`): a kill -9 at any moment leaves
either no `step-*` folder or a complete one. Model and optimizer states are gathered as full tensors
through `torch.distributed.checkpoint.state_dict`, so one code path serves a plain module, DDP, FSDP2 and
`torch.compile`, and a checkpoint resumes under any of them. Only rank 0 reads and writes files; the other
ranks get what they need by broadcast, so the run folder need not be on a shared disk.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from puyu.errors import PuyuError, one_line
from puyu.model.config import ModelConfig
from puyu.train.checkpoint_folders import (
    CHECKPOINTS,
    atomic_folder,
    prune,
    remove_stale_temps,
    step_folder,
    step_folders,
)
from puyu.train.checkpoint_folders import verify_checkpoint as _verify_files
from puyu.train.signals import StopSignal

__all__ = [
    "CHECKPOINTS",
    "StopSignal",
    "TrainState",
    "latest_checkpoint",
    "load_checkpoint",
    "read_model_weights",
    "save_checkpoint",
    "verify_checkpoint",
]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
STATE_FILE = "train_state.json"
RNG_FILE = "rng.pt"
TRAIN_CONFIG_FILE = "train_config.json"

# Shape fields a checkpoint's model must share with the model it is loaded into.
_SHAPE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                 "head_dim", "qkv_bias", "tie_word_embeddings")  # fmt: skip


@dataclass
class TrainState:
    """Where a run stands, beyond the model and optimizer.

    Args:
        step: optimizer steps done.
        tokens: training tokens consumed (all ranks).
        data: the data position (`TokenDataset.state_dict()` or the loop's gathered form); JSON-serialisable.
        best_val_loss: lowest validation loss so far.
        extra: anything else the loop wants back on resume; JSON-serialisable.
    """

    step: int = 0
    tokens: int = 0
    data: dict | None = None
    best_val_loss: float | None = None
    extra: dict = field(default_factory=dict)


# ---- helpers shared by save and load ----------------------------------------------------------------------


def save_weights(weights: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """`safetensors.torch.save_file` with the header's metadata in sorted key order.

    safetensors writes metadata from a hash map whose order changes from process to process, so two runs
    with identical tensors would otherwise give different bytes.
    """
    save_file(weights, str(path), metadata=metadata)
    with path.open("r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
        ordered = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(ordered) > size:  # cannot happen for a reordering; left as written rather than risk the file
            return
        handle.seek(8)
        handle.write(ordered.ljust(size, b" "))  # safetensors pads its header with spaces too


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _broadcast(value: Any, world: int) -> Any:
    if world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _raise_together(error: BaseException | None, world: int, what: str) -> None:
    """Every rank raises when rank 0 failed (instead of the others hanging in the next collective)."""
    summary = None
    if error is not None:
        kind = "puyu" if isinstance(error, PuyuError) else "os" if isinstance(error, OSError) else "other"
        summary = (kind, one_line(error))
    summary = _broadcast(summary, world)
    if error is not None:
        raise error
    if summary is not None:
        kind, message = summary
        raise {"puyu": PuyuError, "os": OSError}.get(kind, RuntimeError)(f"rank 0 could not {what}: {message}")


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside torch.compile's and DDP's wrappers (an FSDP2 model is its own self)."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def _trainable_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters with `requires_grad`, as the (full) model state dict spells them."""
    return {name for name, param in _unwrapped(model).named_parameters() if param.requires_grad}


# ---- RNG ---------------------------------------------------------------------------------------------------


def _capture_rng() -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # As plain ints: torch.load(weights_only=True) refuses NumPy arrays.
        "numpy": {**numpy_state, "state": {**numpy_state["state"], "key": numpy_state["state"]["key"].tolist()}},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    key = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state({**numpy_state, "state": {**numpy_state["state"], "key": key}})
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        for device, value in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(value, device)


# ---- saving ------------------------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    state: TrainState,
    *,
    model_config: ModelConfig,
    train_config: dict,
    keep: int = 3,
    trainable_only: bool = False,
) -> Path | None:
    """Write `run_dir/checkpoints/step-{state.step:08d}/` atomically, then keep only the newest `keep`.

    A collective under a process group: every rank must call it at the same step (FSDP shards are gathered
    to rank 0, which alone writes; the others wait until the folder is in place).

    Args:
        run_dir: the run folder.
        model: plain, DDP-wrapped, FSDP2-sharded or compiled model.
        optimizer: its optimizer.
        scheduler: its LR scheduler, or None.
        state: the loop's position; `state.step` names the folder (an existing folder of that step is replaced).
        model_config: the model's shape, written as `config.json`.
        train_config: the run's configuration (plain data), written as `train_config.json`.
        keep: checkpoints to keep, newest first, the one just written always among them; 0 keeps all.
        trainable_only: store only parameters with `requires_grad` (adapter or partly frozen fine-tuning:
            the frozen weights come from the base model again on resume, so checkpoints stay small).

    Returns:
        The checkpoint folder on rank 0, None on the other ranks.
    """
    rank, world = _rank_world()
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    if trainable_only:
        keep_names = _trainable_names(model)
        model_state = {name: value for name, value in model_state.items() if name in keep_names}
    optimizer_state = get_optimizer_state_dict(model, optimizer, options=options)
    rng = _capture_rng()
    if world > 1:
        gathered: list[Any] | None = [None] * world if rank == 0 else None
        dist.gather_object(rng, gathered, dst=0)
        rng_ranks = gathered
    else:
        rng_ranks = [rng]
    folder: Path | None = None
    error: BaseException | None = None
    if rank == 0:
        try:
            payload = {
                MODEL_FILE: model_state,
                OPTIMIZER_FILE: optimizer_state,
                SCHEDULER_FILE: scheduler.state_dict() if scheduler is not None else None,
                RNG_FILE: {"world_size": world, "ranks": rng_ranks},
            }
            folder = _write(Path(run_dir) / CHECKPOINTS, payload, state, model_config, train_config, world, keep)
        except Exception as exc:  # re-raised below, on every rank
            error = exc
    _raise_together(error, world, "save the checkpoint")
    return folder


def _write(
    root: Path,
    payload: dict[str, Any],
    state: TrainState,
    model_config: ModelConfig,
    train_config: dict,
    world: int,
    keep: int,
) -> Path:
    # Serialise the JSON parts first: a value that is not JSON fails before anything touches the disk.
    texts = {
        STATE_FILE: json.dumps(dataclasses.asdict(state), indent=2) + "\n",
        CONFIG_FILE: json.dumps(model_config.to_hf(), indent=2) + "\n",
        TRAIN_CONFIG_FILE: json.dumps(train_config, indent=2, default=str) + "\n",
    }
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(root, any_host=True)
    final = step_folder(root, state.step)
    with atomic_folder(final, {"step": state.step, "world_size": world}) as temp:
        weights = {name: t.detach().contiguous() for name, t in payload[MODEL_FILE].items()}
        if model_config.tie_word_embeddings:
            weights.pop("lm_head.weight", None)  # the embedding itself; safetensors refuses shared storage
        save_weights(weights, temp / MODEL_FILE, {"format": "pt", "step": str(state.step)})
        for name in (OPTIMIZER_FILE, SCHEDULER_FILE, RNG_FILE):
            if payload[name] is not None:
                torch.save(payload[name], temp / name)
        for name, text in texts.items():
            (temp / name).write_text(text, encoding="utf-8")
    prune(root, keep, final)
    return final


# ---- finding and checking ----------------------------------------------------------------------------------


def verify_checkpoint(folder: str | Path) -> dict[str, Any]:
    """The manifest of a complete training checkpoint, after checking its files are all there in full.

    Raises:
        PuyuError: the folder, its manifest or a file is missing or damaged.
    """
    return _verify_files(folder, required=(MODEL_FILE, CONFIG_FILE, STATE_FILE))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (by step number), or None.

    Temporary folders of interrupted saves are ignored; so is a `step-*` folder that fails
    `verify_checkpoint` (with a warning), in which case the next newest is returned. Under a process group
    this is a collective: rank 0 looks, and every rank gets its answer (the run folder need not be shared).

    Args:
        run_dir: the run folder (holding `checkpoints/`).
    """
    rank, world = _rank_world()
    found: Path | None = None
    if rank == 0:
        for _, folder in reversed(step_folders(Path(run_dir) / CHECKPOINTS)):
            try:
                verify_checkpoint(folder)
            except PuyuError as bad:
                logger.warning("skipping incomplete checkpoint: %s", bad)
                continue
            found = folder
            break
    return _broadcast(found, world)


def _check_shape(folder: Path, model: torch.nn.Module) -> None:
    mine = getattr(_unwrapped(model), "config", None)
    if not isinstance(mine, ModelConfig):
        return  # not a CausalLM: tensor shapes are checked on load
    theirs = ModelConfig.from_pretrained(folder / CONFIG_FILE)
    diffs = [f"{n} {getattr(theirs, n)} vs {getattr(mine, n)}" for n in _SHAPE_FIELDS
             if getattr(theirs, n) != getattr(mine, n)]  # fmt: skip
    if diffs:
        raise PuyuError(
            f"checkpoint {folder} was made for a model of a different shape: {', '.join(diffs)} (checkpoint vs model)"
        )


def _read_torch(path: Path) -> Any:
    try:
        # mmap: the optimizer state of a large model is read page by page, not copied into memory at once.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as bad:  # torch raises many types for a truncated or foreign file
        raise PuyuError(f"{path}: unreadable ({one_line(bad)[:200]})") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as bad:
        raise PuyuError(f"{path}: not valid JSON ({one_line(bad)})") from None


def read_model_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint folder, in puyu's internal names (tied output matrix omitted)."""
    path = Path(folder) / MODEL_FILE
    try:
        return load_file(path)
    except (SafetensorError, OSError) as bad:
        raise PuyuError(f"{path}: unreadable ({one_line(bad)})") from None


def _train_state(raw: Any, path: Path) -> TrainState:
    known = {f.name for f in dataclasses.fields(TrainState)}
    if not isinstance(raw, dict) or not {"step", "tokens"} <= raw.keys() or not raw.keys() <= known:
        raise PuyuError(f"{path}: not a training state (keys {sorted(raw) if isinstance(raw, dict) else raw!r})")
    return TrainState(**raw)


def _restore_tuples(optimizer: torch.optim.Optimizer) -> None:
    # The state-dict round trip turns tuple hyperparameters (Adam's betas) into lists; give back the type.
    for group in optimizer.param_groups:
        for key, value in group.items():
            if isinstance(value, list) and isinstance(optimizer.defaults.get(key), tuple):
                group[key] = tuple(value)


def _check_trainable(folder: Path, model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    missing = sorted(_trainable_names(model) - weights.keys())
    if missing:
        more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        raise PuyuError(
            f"checkpoint {folder} lacks trainable weights {', '.join(missing[:4])}{more} (made by another kind of run?)"
        )


# ---- loading -----------------------------------------------------------------------------------------------


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    *,
    trainable_only: bool = False,
) -> TrainState:
    """Restore model, optimizer, scheduler and RNG states from a checkpoint folder; return its `TrainState`.

    A collective under a process group (every rank calls it; rank 0 reads the files and broadcasts).
    Random generators are restored per rank when the world size is the one the checkpoint was written with;
    otherwise they are left alone, with a warning.

    Args:
        path: a `step-*` folder (see `latest_checkpoint`).
        model: the model, wrapped as during training (plain, DDP, FSDP2, compiled), of the checkpoint's shape.
        optimizer: its optimizer (built over the same parameters), or None to load weights only.
        scheduler: its LR scheduler, or None.
        trainable_only: the checkpoint holds only the trainable parameters (see `save_checkpoint`); the
            frozen ones keep their current values, and every trainable one must be in the checkpoint.

    Raises:
        PuyuError: files missing or corrupt, or the checkpoint's model has another shape.
    """
    folder = Path(path)
    rank, world = _rank_world()
    model_state: dict[str, torch.Tensor] = {}
    optimizer_state: dict[str, Any] = {}
    small: dict[str, Any] | None = None
    error: BaseException | None = None
    if rank == 0:
        try:
            remove_stale_temps(folder.parent, any_host=False)
            verify_checkpoint(folder)
            _check_shape(folder, model)
            model_state = read_model_weights(folder)
            if trainable_only:
                _check_trainable(folder, model, model_state)
            if optimizer is not None:
                if not (folder / OPTIMIZER_FILE).is_file():
                    raise PuyuError(f"{folder / OPTIMIZER_FILE}: missing from the checkpoint")
                optimizer_state = _read_torch(folder / OPTIMIZER_FILE)
            small = {
                "state": _train_state(_read_json(folder / STATE_FILE), folder / STATE_FILE),
                "scheduler": _read_torch(folder / SCHEDULER_FILE) if (folder / SCHEDULER_FILE).is_file() else None,
                "rng": _read_torch(folder / RNG_FILE) if (folder / RNG_FILE).is_file() else None,
            }
        except Exception as exc:
            error = exc
    _raise_together(error, world, f"read checkpoint {folder}")
    small = _broadcast(small, world)
    assert small is not None
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=world > 1, strict=not trainable_only)
    try:
        set_model_state_dict(model, model_state, options=options)
        if optimizer is not None:
            set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)
            _restore_tuples(optimizer)
    except (RuntimeError, KeyError, ValueError) as bad:
        raise PuyuError(f"checkpoint {folder} does not fit this model or optimizer ({one_line(bad)[:300]})") from None
    if scheduler is not None:
        if small["scheduler"] is None:
            raise PuyuError(f"{folder / SCHEDULER_FILE}: missing from the checkpoint")
        scheduler.load_state_dict(small["scheduler"])
    rng = small["rng"]
    if rng is not None and rng.get("world_size") == world:
        _restore_rng(rng["ranks"][rank])
    elif rank == 0:
        logger.warning("%s: written by %s processes, not %s; random generators not restored", folder,
                       rng and rng.get("world_size"), world)  # fmt: skip
    return small["state"]
