"""Training checkpoints: exact save/restore, atomic folders under kill -9, pruning, errors, stop signals."""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from puyu.errors import PuyuError
from puyu.model import ModelConfig
from puyu.model.init import random_model
from puyu.train.checkpoint import (
    StopSignal,
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)

REPO = Path(__file__).resolve().parents[2]


def _setup(preset: str = "internlm2-tiny", seed: int = 0, **overrides):
    config = ModelConfig.from_name(preset, **overrides)
    model = random_model(config, seed=seed).train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-2, betas=(0.9, 0.95)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 3) * 0.9**step)
    return config, model, optimizer, scheduler


def _step(model, optimizer, scheduler) -> None:
    # Batches drawn from the global generator: resuming must continue its stream exactly.
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    logits = model(ids[:, :-1])
    F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _draws() -> tuple:
    return torch.rand(3).tolist(), random.random(), float(np.random.rand())


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _save(run_dir: Path, model, optimizer, scheduler, config, step: int, keep: int = 3, **state) -> Path | None:
    return save_checkpoint(
        run_dir, model, optimizer, scheduler, TrainState(step=step, **state),
        model_config=config, train_config={"run_dir": run_dir, "lr": 1e-2}, keep=keep,
    )  # fmt: skip


@pytest.mark.parametrize("preset", ["internlm2-tiny", "qwen2-tiny"])  # separate and tied embeddings
def test_resume_continues_bit_identically(tmp_path: Path, preset: str):
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    config, model, optimizer, scheduler = _setup(preset)
    for _ in range(3):
        _step(model, optimizer, scheduler)
    data = {"ranks": [{"step": 3, "cursors": [[1, 2]]}]}
    folder = _save(tmp_path, model, optimizer, scheduler, config, 3, tokens=66, data=data, best_val_loss=2.5,
                   extra={"note": "x"})  # fmt: skip
    assert folder == tmp_path / "checkpoints" / "step-00000003"
    saved_weights, saved_optimizer = _weights(model), copy.deepcopy(optimizer.state_dict())
    draws = _draws()
    _step(model, optimizer, scheduler)
    expected_one = _weights(model)
    _step(model, optimizer, scheduler)
    expected_two, expected_lr = _weights(model), scheduler.get_last_lr()

    # A fresh process would build everything anew, from another seed, before loading.
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    _, model2, optimizer2, scheduler2 = _setup(preset, seed=7)
    state = load_checkpoint(latest_checkpoint(tmp_path), model2, optimizer2, scheduler2)
    assert state == TrainState(step=3, tokens=66, data=data, best_val_loss=2.5, extra={"note": "x"})
    assert all(torch.equal(saved_weights[k], v) for k, v in _weights(model2).items())
    if config.tie_word_embeddings:
        assert model2.lm_head.weight is model2.model.embed_tokens.weight
    restored = optimizer2.state_dict()
    assert restored["param_groups"] == saved_optimizer["param_groups"]
    for index, entry in saved_optimizer["state"].items():
        assert all(torch.equal(entry[key], restored["state"][index][key]) for key in ("step", "exp_avg", "exp_avg_sq"))
    assert scheduler2.last_epoch == 3
    assert _draws() == draws
    _step(model2, optimizer2, scheduler2)  # one step after the restore = one step without it
    assert all(torch.equal(expected_one[k], v) for k, v in _weights(model2).items())
    _step(model2, optimizer2, scheduler2)
    assert all(torch.equal(expected_two[k], v) for k, v in _weights(model2).items())
    assert scheduler2.get_last_lr() == expected_lr


def test_folder_contents(tmp_path: Path):
    config, model, optimizer, scheduler = _setup()
    _step(model, optimizer, scheduler)
    folder = _save(tmp_path, model, optimizer, scheduler, config, 1)
    names = {p.name for p in folder.iterdir()}
    assert names == {"model.safetensors", "config.json", "optimizer.pt", "scheduler.pt", "train_state.json", "rng.pt",
                     "train_config.json", "checkpoint.json"}  # fmt: skip
    assert json.loads((folder / "config.json").read_text()) == json.loads(json.dumps(config.to_hf()))
    assert json.loads((folder / "train_config.json").read_text()) == {"run_dir": str(tmp_path), "lr": 1e-2}
    manifest = verify_checkpoint(folder)
    assert manifest["step"] == 1 and manifest["world_size"] == 1
    assert manifest["files"]["optimizer.pt"] == (folder / "optimizer.pt").stat().st_size
    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    assert weights.keys() == model.state_dict().keys()  # internal (Llama) names, not InternLM2's wqkv
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_keep_last_k_and_resaving_a_step(tmp_path: Path):
    config, model, optimizer, scheduler = _setup()
    for step in range(1, 6):
        _save(tmp_path, model, optimizer, scheduler, config, step, keep=2)
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000004", "step-00000005"]
    _step(model, optimizer, scheduler)
    _save(tmp_path, model, optimizer, scheduler, config, 5, keep=2)  # same step again: replaced
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000004", "step-00000005"]
    from safetensors.torch import load_file

    saved = load_file(checkpoints / "step-00000005" / "model.safetensors")
    assert torch.equal(saved["model.norm.weight"], model.model.norm.weight)
    # The one just written survives even when older than the rest (a run rewound by hand).
    _save(tmp_path, model, optimizer, scheduler, config, 2, keep=2)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000002", "step-00000005"]
    for step in range(6, 9):
        _save(tmp_path, model, optimizer, scheduler, config, step, keep=0)
    assert len(list(checkpoints.iterdir())) == 5


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_a_crashed_save_are_never_latest(tmp_path: Path):
    config, model, optimizer, scheduler = _setup()
    good = _save(tmp_path, model, optimizer, scheduler, config, 2)
    checkpoints = tmp_path / "checkpoints"
    host = socket.gethostname()
    # A save killed mid-write: a temp folder of a dead process holding a truncated file.
    stale = checkpoints / f".tmp-step-00000003@{host}.{_dead_pid()}"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes()[:1000])
    foreign = checkpoints / ".tmp-step-00000003@other-machine.1"
    foreign.mkdir()
    # A step folder made by other means (a copy interrupted half way): no manifest.
    partial = checkpoints / "step-00000004"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"")
    # A complete folder whose file was truncated afterwards.
    truncated = checkpoints / "step-00000005"
    os.system(f"cp -r {good} {truncated}")
    with open(truncated / "optimizer.pt", "r+b") as handle:
        handle.truncate(100)
    assert latest_checkpoint(tmp_path) == good
    with pytest.raises(PuyuError, match=r"step-00000005/optimizer.pt: corrupt \(100 bytes"):
        load_checkpoint(truncated, model, optimizer, scheduler)
    with pytest.raises(PuyuError, match="step-00000004: not a complete training checkpoint"):
        load_checkpoint(partial, model, optimizer, scheduler)
    assert not stale.exists() and foreign.exists()  # a load removes only what is surely dead
    (stale).mkdir()
    _save(tmp_path, model, optimizer, scheduler, config, 6, keep=0)
    assert not stale.exists() and not foreign.exists()  # the run's writer removes every leftover


def test_same_size_garbage_is_reported_not_loaded(tmp_path: Path):
    config, model, optimizer, scheduler = _setup()
    _step(model, optimizer, scheduler)
    folder = _save(tmp_path, model, optimizer, scheduler, config, 1)
    size = (folder / "optimizer.pt").stat().st_size
    (folder / "optimizer.pt").write_bytes(b"\0" * size)
    with pytest.raises(PuyuError, match=r"optimizer.pt: unreadable"):
        load_checkpoint(folder, model, optimizer, scheduler)


_KILLED_SAVER = textwrap.dedent(
    """
    import sys, torch
    from puyu.model import ModelConfig
    from puyu.model.init import random_model
    from puyu.train.checkpoint import TrainState, latest_checkpoint, save_checkpoint
    config = ModelConfig.from_name("internlm2-tiny", vocab_size=4096, intermediate_size=512)
    model = random_model(config).train()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 2, dtype=torch.long)).sum().backward()
    optimizer.step()
    latest = latest_checkpoint(sys.argv[1])
    print("ready", flush=True)
    for step in range(int(latest.name[5:]) + 1 if latest else 1, 100_000):
        with torch.no_grad():
            model.model.norm.weight.fill_(step)
        save_checkpoint(sys.argv[1], model, optimizer, None, TrainState(step=step), model_config=config,
                        train_config={}, keep=2)
    """
)


def test_kill_9_during_saves_leaves_a_loadable_latest(tmp_path: Path):
    # The saver does nothing but save, so a kill at a random moment lands inside a save (writing, fsyncing,
    # renaming or pruning); whatever it interrupted, the latest checkpoint must load in full.
    script = tmp_path / "saver.py"
    script.write_text(_KILLED_SAVER)
    config = ModelConfig.from_name("internlm2-tiny", vocab_size=4096, intermediate_size=512)
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run")], stdout=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    time.sleep(random.Random(0).uniform(0.1, 0.4))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    latest = latest_checkpoint(tmp_path / "run")
    assert latest is not None
    model = random_model(config, seed=1).train()
    optimizer = torch.optim.AdamW(model.parameters())
    state = load_checkpoint(latest, model, optimizer, None)
    assert int(latest.name[5:]) == state.step > 1
    assert torch.all(model.model.norm.weight == state.step)
    assert optimizer.state_dict()["state"][0]["step"].item() == 1
    # The next save clears whatever the killed one left behind.
    save_checkpoint(tmp_path / "run", model, optimizer, None, TrainState(step=state.step + 1), model_config=config,
                    train_config={}, keep=2)  # fmt: skip
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == [f"step-{state.step:08d}", f"step-{state.step + 1:08d}"]


def test_shape_mismatch_is_refused(tmp_path: Path):
    config, model, optimizer, scheduler = _setup()
    folder = _save(tmp_path, model, optimizer, scheduler, config, 1)
    _, wider, wider_optimizer, wider_scheduler = _setup(hidden_size=128)
    shape = "step-00000001 was made for a model of a different shape: hidden_size 64 vs 128"
    with pytest.raises(PuyuError, match=shape):
        load_checkpoint(folder, wider, wider_optimizer, wider_scheduler)


def test_missing_scheduler_state_and_weights_only_load(tmp_path: Path):
    config, model, optimizer, _ = _setup()
    _step(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
    folder = _save(tmp_path, model, optimizer, None, config, 1)
    _, fresh, fresh_optimizer, fresh_scheduler = _setup(seed=3)
    with pytest.raises(PuyuError, match=r"scheduler\.pt: missing"):
        load_checkpoint(folder, fresh, fresh_optimizer, fresh_scheduler)
    _, fresh, _, _ = _setup(seed=4)
    assert load_checkpoint(folder, fresh, None, None).step == 1
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters(), strict=True))


def test_not_json_state_fails_before_writing(tmp_path: Path):
    config, model, optimizer, scheduler = _setup()
    with pytest.raises(TypeError):
        _save(tmp_path, model, optimizer, scheduler, config, 1, extra={"bad": object()})
    assert latest_checkpoint(tmp_path) is None
    assert not (tmp_path / "checkpoints").exists()


def test_stop_signal_turns_sigterm_into_a_flag():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignal() as stop:
        assert not stop.requested and not stop.agreed()
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.time() + 5
        while not stop.requested and time.time() < deadline:
            time.sleep(0.001)
        assert stop.requested and stop.signal_name == "SIGTERM" and stop.agreed()
    assert signal.getsignal(signal.SIGTERM) is before


def test_second_ctrl_c_interrupts_at_once():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.requested and stop.signal_name == "SIGINT"
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.gpu
def test_cuda_training_resumes_bit_identically(tmp_path: Path):
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    config = ModelConfig.from_name("internlm2-tiny")

    def build(seed: int):
        model = random_model(config, seed=seed).cuda().train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
        return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step)

    def step(model, optimizer, scheduler) -> None:
        ids = torch.randint(0, config.vocab_size, (2, 12), device="cuda")  # the CUDA generator's stream
        F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten()).backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

    torch.cuda.manual_seed(1)
    model, optimizer, scheduler = build(0)
    step(model, optimizer, scheduler)
    _save(tmp_path, model, optimizer, scheduler, config, 1)
    draws = torch.rand(3, device="cuda")
    step(model, optimizer, scheduler)
    expected = _weights(model)
    torch.cuda.manual_seed(2)
    model2, optimizer2, scheduler2 = build(5)
    load_checkpoint(latest_checkpoint(tmp_path), model2, optimizer2, scheduler2)
    assert torch.equal(torch.rand(3, device="cuda"), draws)
    step(model2, optimizer2, scheduler2)
    assert all(torch.equal(expected[k], v) for k, v in _weights(model2).items())


# ---- two processes on gloo: DDP and FSDP2 ------------------------------------------------------------------


def _distributed_worker(rank: int, port: int, run_root: str) -> None:
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        for strategy in ("ddp", "fsdp"):
            run_dir = Path(run_root) / strategy

            def build(seed: int, strategy: str = strategy):
                config, model, _, _ = _setup(seed=seed)
                if strategy == "ddp":
                    model = DistributedDataParallel(model)
                else:
                    for layer in model.model.layers:
                        fully_shard(layer)
                    fully_shard(model)
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
                scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step)
                return config, model, optimizer, scheduler

            def full(model) -> dict[str, torch.Tensor]:
                return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

            def step(model, optimizer, scheduler) -> None:
                ids = torch.randint(0, 512, (2, 8))  # per-rank streams: the generators differ by rank
                F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten()).backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()

            torch.manual_seed(100 + rank)
            config, model, optimizer, scheduler = build(0)
            step(model, optimizer, scheduler)
            folder = _save(run_dir, model, optimizer, scheduler, config, 1, tokens=32)
            assert (folder is not None) == (rank == 0)
            draws = torch.rand(2)
            step(model, optimizer, scheduler)
            expected = full(model)

            torch.manual_seed(5)
            _, model2, optimizer2, scheduler2 = build(9)
            state = load_checkpoint(run_dir / "checkpoints" / "step-00000001", model2, optimizer2, scheduler2)
            assert state.step == 1 and state.tokens == 32
            assert torch.equal(torch.rand(2), draws), f"rank {rank}: RNG not restored"
            step(model2, optimizer2, scheduler2)
            resumed = full(model2)
            if rank == 0:
                assert expected.keys() == resumed.keys()
                for key in expected:
                    assert torch.equal(expected[key], resumed[key]), f"{strategy}: {key} differs after resume"
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_and_fsdp2_on_two_processes(tmp_path: Path):
    import torch.multiprocessing as mp

    mp.start_processes(_distributed_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    # A sharded run's checkpoint is an ordinary one: it loads into a plain single-process model.
    _, model, optimizer, scheduler = _setup(seed=11)
    state = load_checkpoint(tmp_path / "fsdp" / "checkpoints" / "step-00000001", model, optimizer, scheduler)
    assert state.step == 1
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "fsdp" / "checkpoints" / "step-00000001" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert verify_checkpoint(tmp_path / "fsdp" / "checkpoints" / "step-00000001")["world_size"] == 2
