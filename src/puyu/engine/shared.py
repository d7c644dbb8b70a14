"""One engine shared by callers in several threads.

There is no stepping thread: a caller waiting for output takes the lock and runs one step for every request
in flight, handing each output to its request's queue. Requests from concurrent callers thus share steps
(continuous batching), and a caller that stops reading aborts only its own request.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterator

from puyu.engine.engine import LLMEngine
from puyu.engine.outputs import RequestOutput
from puyu.errors import PuyuError
from puyu.generation.sampling import SamplingParams


class SharedEngine:
    """An `LLMEngine` that any thread may drive.

    Args:
        engine: the engine; from now on only this object calls into it.
    """

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._queues: dict[str, deque[RequestOutput]] = {}
        self._ids = itertools.count()

    def submit(self, prompt_ids: list[int], params: SamplingParams, prefix: str = "shared") -> str:
        """Add a request now (it joins the next step); read it with `outputs`.

        Raises:
            PuyuError: what `LLMEngine.add_request` rejects (empty or too long prompt…).
        """
        with self._lock:
            request_id = f"{prefix}-{next(self._ids)}"
            self.engine.add_request(request_id, prompt_ids, params)
            self._queues[request_id] = deque()
        return request_id

    def stream(self, prompt_ids: list[int], params: SamplingParams) -> Iterator[RequestOutput]:
        """Add a request and yield its outputs until it finishes; closing the iterator early aborts it."""
        return self.outputs(self.submit(prompt_ids, params))

    def outputs(self, request_id: str) -> Iterator[RequestOutput]:
        """A submitted request's outputs until it finishes; closing the iterator early aborts it."""
        finished = False
        try:
            while not finished:
                for out in self._take(request_id):
                    finished = out.finished
                    yield out
        finally:
            with self._lock:
                self._queues.pop(request_id, None)
                if not finished:
                    self.engine.abort(request_id)

    def run(self, prompts: list[list[int]], params: SamplingParams) -> list[str]:
        """Every prompt's completed text, in order (the prompts are batched together)."""
        return ["".join(out.text for out in outputs) for outputs in self.run_outputs(prompts, [params] * len(prompts))]

    def run_outputs(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[list[RequestOutput]]:
        """Every prompt's outputs, in order; all requests are added before any is read, so they share steps."""
        ids: list[str] = []
        try:
            for prompt, p in zip(prompts, params, strict=True):
                ids.append(self.submit(prompt, p))
            return [list(self.outputs(request_id)) for request_id in ids]
        finally:
            with self._lock:
                for request_id in ids:
                    if self._queues.pop(request_id, None) is not None:
                        self.engine.abort(request_id)

    def _take(self, request_id: str) -> list[RequestOutput]:
        """The request's queued outputs, stepping the engine (for everyone) until there is one."""
        with self._lock:
            queue = self._queues[request_id]
            while not queue:
                if not self.engine.has_unfinished_requests():
                    raise PuyuError(f"request {request_id} left the engine without finishing")
                for out in self.engine.step():
                    target = self._queues.get(out.request_id)
                    if target is not None:
                        target.append(out)
            items = list(queue)
            queue.clear()
        return items
