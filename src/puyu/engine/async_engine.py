"""AsyncLLMEngine: the engine behind asyncio, for the HTTP server.

One background thread owns the `LLMEngine`: it applies queued additions and aborts, runs `step()` while
there is work, and hands each output to its request's asyncio queue through the request's event loop.
The event loop never waits for a step: it validates a request, queues it for the thread and awaits outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator
from typing import Any

from puyu.engine.engine import LLMEngine
from puyu.engine.outputs import EngineStats, RequestOutput
from puyu.errors import PuyuError
from puyu.generation.sampling import SamplingParams


class QueueFullError(RuntimeError):
    """Too many requests are waiting, or the engine is shutting down; retry later (the server answers 429)."""


class RequestFailedError(RuntimeError):
    """The engine could not run this request (its step raised); other requests were not affected."""


class _Stream:
    """Where a request's outputs go: its event loop and queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[RequestOutput | BaseException] = asyncio.Queue()

    def put(self, item: RequestOutput | BaseException) -> None:
        # A closed loop (RuntimeError) means the consumer is gone: nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class AsyncLLMEngine:
    """Async front of an `LLMEngine`.

    Args:
        engine: the engine to drive (from now on only the stepping thread calls into it).
        max_queue: most requests allowed to wait for a slot; None = unbounded.
    """

    def __init__(self, engine: LLMEngine, max_queue: int | None = None) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self._images: dict[str, list[Any]] = {}  # image spans of requests on their way to the engine
        self._inbox: queue.SimpleQueue[tuple[str, str, list[int], SamplingParams | None]] = queue.SimpleQueue()
        self._pending_adds = 0
        self._count_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._streams: dict[str, _Stream] = {}
        self._adapter_of: dict[str, str] = {}  # request id -> adapter, until the request reaches the engine
        self._thread: threading.Thread | None = None
        self._accepting = True

    async def start(self) -> None:
        """Start the stepping thread (done on the first request otherwise)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="puyu-engine", daemon=True)
            self._thread.start()

    async def generate(
        self,
        request_id: str,
        prompt_ids: list[int],
        params: SamplingParams,
        images: list[Any] | None = None,
        adapter: str | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Add a request (`images`: the prompt's image spans; `adapter`: the served LoRA adapter of that name) and
        yield its outputs until it finishes.

        Raises:
            QueueFullError: `max_queue` requests are already waiting, or the engine is shutting down
                (raised before anything is yielded).
            PuyuError: the prompt is empty or too long, or the id is in use.
        """
        if not self._accepting:
            raise QueueFullError("the engine is shutting down")
        if self.max_queue is not None and self._num_waiting() >= self.max_queue:
            raise QueueFullError(f"{self.max_queue} requests are already waiting")
        if request_id in self._streams:
            raise PuyuError(f"request id {request_id!r} is already in use")
        prompt = [int(t) for t in prompt_ids]
        self.engine.validate_prompt(prompt)
        await self.start()
        stream = _Stream(asyncio.get_running_loop())
        self._streams[request_id] = stream
        if adapter is not None:
            self._adapter_of[request_id] = adapter
        with self._count_lock:
            self._pending_adds += 1
        if images:
            self._images[request_id] = images
        self._inbox.put(("add", request_id, prompt, params))
        self._wake.set()
        finished = False
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            # The consumer stopped early (client disconnect): free the request's KV blocks.
            if not finished and self._streams.get(request_id) is stream:
                self._inbox.put(("abort", request_id, [], None))
                self._wake.set()
            if self._streams.get(request_id) is stream:
                del self._streams[request_id]

    def abort(self, request_id: str) -> None:
        """Stop a request; its consumer receives a final output with finish_reason "abort"."""
        stream = self._streams.pop(request_id, None)
        self._inbox.put(("abort", request_id, [], None))
        self._wake.set()
        if stream is not None:
            stream.put(RequestOutput(request_id, [], "", finished=True, finish_reason="abort"))

    def stats(self) -> EngineStats:
        """The engine's statistics; `num_waiting` includes requests not yet handed to the engine."""
        stats = self.engine.stats()
        stats.num_waiting += self._pending_adds
        return stats

    async def shutdown(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop accepting requests; with `drain`, let in-flight ones finish (up to `timeout` s); abort the rest."""
        self._accepting = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Open streams count too: a request the engine just finished may not have handed over its last output.
        while drain and (self._has_work() or self._streams) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for request_id in list(self._streams):
            self.abort(request_id)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._apply_inbox()  # the thread may have stopped before the last aborts
        for request_id in self.engine.request_ids():
            self.engine.abort(request_id)

    def _num_waiting(self) -> int:
        return len(self.engine.scheduler.waiting) + self._pending_adds

    def _has_work(self) -> bool:
        return self._pending_adds > 0 or not self._inbox.empty() or self.engine.has_unfinished_requests()

    def _apply_inbox(self) -> None:
        """Hand queued additions and aborts to the engine (stepping thread, or after it stopped)."""
        while True:
            try:
                kind, request_id, prompt, params = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "abort":
                self.engine.abort(request_id)
                continue
            stream = self._streams.get(request_id)
            adapter = self._adapter_of.pop(request_id, None)
            images = self._images.pop(request_id, None)
            try:
                if stream is None or params is None:  # aborted before it reached the engine
                    continue
                # Only requests with an adapter or images pass them: engines wrapped by tests and tools keep the
                # plain signature.
                extra: dict[str, Any] = {"adapter": adapter} if adapter is not None else {}
                if images:
                    extra["images"] = images
                self.engine.add_request(request_id, prompt, params, **extra)
            except Exception as exc:  # e.g. an id reused before the previous request left the engine
                self._streams.pop(request_id, None)
                stream.put(exc)  # type: ignore[union-attr]
            finally:
                # Only now: until the engine holds it, the request still counts as work for a draining shutdown.
                with self._count_lock:
                    self._pending_adds -= 1

    def _run(self) -> None:
        """The stepping thread: apply the inbox, step while there is work, sleep on the wake event otherwise."""
        while not self._stop.is_set():
            self._apply_inbox()
            if not self.engine.has_unfinished_requests():
                self._wake.wait(timeout=0.1)
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
            except Exception as exc:  # not one request's fault (those fail alone inside step): fail all in flight
                for request_id in self.engine.request_ids():
                    self.engine.abort(request_id)
                for request_id, stream in list(self._streams.items()):
                    self._streams.pop(request_id, None)
                    stream.put(exc)
                continue
            for out in outputs:
                stream = self._streams.get(out.request_id)
                if stream is None:
                    continue
                if out.finish_reason == "error":
                    self._streams.pop(out.request_id, None)
                    stream.put(RequestFailedError(out.error or "generation failed"))
                else:
                    stream.put(out)
