"""Graceful stop: SIGTERM and SIGINT ask the training loop to save and exit instead of killing it.

Schedulers (SLURM, Kubernetes, torchrun's agent) send SIGTERM some seconds before SIGKILL; a checkpoint
written at the end of the current step loses no work. A second Ctrl-C still interrupts at once, for the
impatient user whose step is slow.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

import torch
import torch.distributed as dist


class StopSignal:
    """Context manager that turns SIGTERM/SIGINT into a flag the loop polls once per step.

    The old handlers come back on exit. Outside the main thread (where Python cannot install handlers)
    it installs nothing and `requested` stays False unless set by hand.

    Attributes:
        requested: a stop was asked for; the loop should save a checkpoint after this step and return.
        signal_name: the name of the signal that asked ("SIGTERM", "SIGINT"), or None.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested and self.signal_name == "SIGINT":
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, without the checkpoint
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def agreed(self) -> bool:
        """Whether any process of the run was asked to stop (a collective: every rank must call it at the
        same point of the step). Torchrun forwards SIGTERM to every worker, but not at the same instant, so
        ranks that each read their own flag could disagree on whether to save, and hang in the save's
        collectives. Without a process group it is `requested`."""
        if not (dist.is_available() and dist.is_initialized()):
            return self.requested
        device = torch.device("cpu")
        if dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        flag = torch.tensor([1 if self.requested else 0], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and not self.requested:
            self.requested, self.signal_name = True, self.signal_name or "another rank"
        return self.requested

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            # None means the old handler was not installed from Python; the default is the closest match.
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
