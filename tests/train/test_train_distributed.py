"""Distributed setup: single-process behaviour in this process, DDP and FSDP2 in two gloo processes
started by torchrun and compared with single-process references of the same steps."""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from puyu.errors import PuyuError
from puyu.train.distributed import (
    DistInfo,
    all_reduce,
    barrier,
    cleanup,
    init_distributed,
    no_sync,
    seed_everything,
    unwrap_model,
    wrap_model,
)

HERE = Path(__file__).resolve().parent
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _load_worker():
    spec = importlib.util.spec_from_file_location("dist_worker", HERE / "dist_worker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_launch_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- one process, no torchrun ---


def test_without_launch_env_no_process_group(no_launch_env: pytest.MonkeyPatch) -> None:
    info = init_distributed()
    assert info == DistInfo(0, 1, 0, torch.device("cuda:0" if torch.cuda.is_available() else "cpu"), None)
    assert info.is_main and not info.is_distributed
    assert not dist.is_initialized()
    assert init_distributed("cpu").device == torch.device("cpu")
    cleanup()  # nothing to destroy
    barrier()


def test_bad_device(no_launch_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(PuyuError, match="'tpu' is not one of"):
        init_distributed("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(no_launch_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(PuyuError, match="CUDA is not available"):
        init_distributed("cuda")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "0"}, "WORLD_SIZE is not set"),
        ({"WORLD_SIZE": "2"}, "RANK is not set"),
        ({"RANK": "zero", "WORLD_SIZE": "2"}, "RANK='zero' is not an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 WORLD_SIZE=2 are inconsistent"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "1234"}, "MASTER_ADDR is not set"),
    ],
)
def test_incomplete_launch_env(no_launch_env: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        no_launch_env.setenv(name, value)
    with pytest.raises(PuyuError, match=message):
        init_distributed()


@pytest.fixture
def one_process_env(no_launch_env: pytest.MonkeyPatch) -> None:
    """What `torchrun --nproc-per-node 1` sets."""
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for name, value in {**env, "MASTER_PORT": str(free_port())}.items():
        no_launch_env.setenv(name, value)


def test_launch_env_of_one_process_creates_group(one_process_env: None) -> None:
    try:
        info = init_distributed("cpu")
        assert info == DistInfo(0, 1, 0, torch.device("cpu"), "gloo")
        assert dist.is_initialized() and info.is_main and not info.is_distributed
        assert init_distributed("cpu") == info  # idempotent: the group is reused
        value = torch.tensor([1.5, -2.0])
        reduced = all_reduce(value, "mean")
        assert torch.equal(reduced, value) and reduced is not value
        barrier()
    finally:
        cleanup()
    assert not dist.is_initialized()


def test_single_process_wrapping(no_launch_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    info = init_distributed("cpu")
    model = worker.tiny_model("llama-tiny")
    assert wrap_model(model, info) is model
    assert wrap_model(model, info, "none") is model
    with caplog.at_level(logging.WARNING, logger="puyu.train.distributed"):
        assert wrap_model(model, info, "fsdp") is model
    assert "needs a process group" in caplog.text
    with pytest.raises(PuyuError, match="'zero3' is not one of"):
        wrap_model(model, info, "zero3")  # type: ignore[arg-type]
    assert unwrap_model(model) is model
    with no_sync(model, active=True):
        pass
    value = torch.arange(3)
    assert torch.equal(all_reduce(value, "max"), value) and all_reduce(value) is not value
    with pytest.raises(ValueError, match="'avg' is not one of"):
        all_reduce(value, "avg")


def test_seed_everything() -> None:
    def draw() -> tuple[torch.Tensor, float, float]:
        return torch.rand(3), random.random(), float(np.random.rand())

    seed_everything(7)
    first = draw()
    seed_everything(7)
    again = draw()
    assert torch.equal(again[0], first[0]) and again[1:] == first[1:]
    seed_everything(7, rank=1)
    other = draw()
    # Torch stays identical across ranks (weights must agree); Python and NumPy get per-rank streams.
    assert torch.equal(other[0], first[0])
    assert other[1] != first[1] and other[2] != first[2]
    seed_everything(8)
    assert not torch.equal(draw()[0], first[0])


# --- two processes under torchrun, against single-process references ---


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """Run dist_worker.py on two gloo ranks once; what each rank recorded."""
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--max-restarts", "0"]
    command += ["--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(HERE / "dist_worker.py"), str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


def reference_grads(preset: str, ids: torch.Tensor, scale: float = 1.0) -> dict[str, torch.Tensor]:
    model = worker.tiny_model(preset)
    (worker.lm_loss(model, ids) * scale).backward()
    return worker.grads(model)


def assert_close_dicts(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol: float) -> None:
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, atol=atol, rtol=0, msg=lambda m, name=name: f"{name}: {m}")


def test_ranks_join_and_reduce(ranks: list[dict[str, object]]) -> None:
    for rank, record in enumerate(ranks):
        assert record["info"] == {
            "rank": rank,
            "world_size": 2,
            "local_rank": rank,
            "device": "cpu",
            "backend": "gloo",
            "is_main": rank == 0,
            "is_distributed": True,
        }
        assert record["idempotent"] and record["input_untouched"] and record["cleaned_up"]
        # Rank r contributes [r + 1, 10 (r + 1)].
        assert torch.equal(record["sum"], torch.tensor([3.0, 30.0]))
        assert torch.equal(record["mean"], torch.tensor([1.5, 15.0]))
        assert torch.equal(record["max"], torch.tensor([2.0, 20.0]))
        assert torch.equal(record["min"], torch.tensor([1.0, 10.0]))


def test_ddp_gradients_match_full_batch(ranks: list[dict[str, object]]) -> None:
    expected = reference_grads("llama-tiny", worker.batch(seed=1))
    for record in ranks:
        assert record["ddp_wrapped"] and record["ddp_unwrapped"]
        assert_close_dicts(record["ddp_grads"], expected, atol=1e-6)


def test_ddp_no_sync_accumulates_locally(ranks: list[dict[str, object]]) -> None:
    ids = worker.batch(seed=2)
    for rank, record in enumerate(ranks):
        # Inside no_sync each rank keeps the gradient of its own first micro-batch: nothing was reduced.
        local = reference_grads("llama-tiny", ids.chunk(2)[rank].chunk(2)[0], scale=0.5)
        assert_close_dicts(record["no_sync_local_grads"], local, atol=1e-6)
        # The synced last micro-batch reduces the accumulated sum: the full batch's mean-loss gradient.
        assert_close_dicts(record["no_sync_final_grads"], reference_grads("llama-tiny", ids), atol=1e-6)
    first = ranks[0]["no_sync_local_grads"]["lm_head.weight"]
    assert not torch.allclose(first, ranks[1]["no_sync_local_grads"]["lm_head.weight"], atol=1e-4)


@pytest.mark.parametrize(("preset", "tied"), [("internlm2-tiny", False), ("qwen2-tiny", True)])
def test_fsdp_training_matches_single_process(ranks: list[dict[str, object]], preset: str, tied: bool) -> None:
    model = worker.tiny_model(preset)
    losses = worker.train_steps(model, rank=0, world_size=1)
    expected = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    first, second = ranks
    assert first[f"{preset}_sharded"] and first[f"{preset}_tied"] is tied and second[f"{preset}_tied"] is tied
    full_batch = reference_grads(preset, worker.batch(seed=1))
    for record in ranks:
        assert_close_dicts(record[f"{preset}_grads"], full_batch, atol=1e-6)
    # Each rank's first micro-batch loss is its share of the single-process batch, so the mean over ranks
    # of step 1 (whole shard) equals the reference loss.
    assert (first[f"{preset}_losses"][0] + second[f"{preset}_losses"][0]) / 2 == pytest.approx(losses[0], abs=1e-5)
    assert second[f"{preset}_state"] == {}  # the full state dict lands on rank 0 only
    assert_close_dicts(first[f"{preset}_state"], expected, atol=1e-5)
    # The two steps moved the weights: the comparison is not between two untouched initialisations.
    initial = worker.tiny_model(preset).state_dict()
    assert not torch.allclose(first[f"{preset}_state"]["model.norm.weight"], initial["model.norm.weight"])


def test_fsdp_with_activation_checkpointing(ranks: list[dict[str, object]]) -> None:
    expected = reference_grads("qwen2-tiny", worker.batch(seed=1))
    for record in ranks:
        assert_close_dicts(record["checkpointed_grads"], expected, atol=1e-6)


def test_fsdp_no_sync_defers_reduction(ranks: list[dict[str, object]]) -> None:
    for record in ranks:
        assert record["fsdp_no_sync_grads"] == []


def test_fsdp_mixed_precision_dtypes(ranks: list[dict[str, object]]) -> None:
    # bf16 compute, fp32 sharded weights and fp32 (reduced) gradients.
    for record in ranks:
        assert record["mp_dtypes"] == (torch.bfloat16, torch.float32, torch.float32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nccl_on_one_gpu(one_process_env: None) -> None:
    info = init_distributed()
    try:
        assert info == DistInfo(0, 1, 0, torch.device("cuda", 0), "nccl")
        assert torch.cuda.current_device() == 0
        # A CPU tensor is carried through the GPU (NCCL reduces only device tensors) and comes back.
        reduced = all_reduce(torch.tensor([2.0, 3.0]), "sum")
        assert reduced.device.type == "cpu" and torch.equal(reduced, torch.tensor([2.0, 3.0]))
        barrier()
        ids = worker.batch(seed=1)
        expected = reference_grads("qwen2-tiny", ids)
        for strategy in ("ddp", "fsdp"):
            model = worker.tiny_model("qwen2-tiny")
            wrapped = wrap_model(model, info, strategy)  # type: ignore[arg-type]
            worker.lm_loss(wrapped, ids.to(info.device)).backward()
            grads = {name: p.grad for name, p in model.named_parameters()}
            full = {name: (g.full_tensor() if strategy == "fsdp" else g).cpu() for name, g in grads.items()}
            assert_close_dicts(full, expected, atol=1e-4)
    finally:
        cleanup()
