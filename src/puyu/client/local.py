"""An in-process model client: batched log-likelihoods with a shared context per question, perplexity, and
generation, chat with tools and streaming through the engine (or the reference generator where the engine is
not available).

Callers in several threads (or asyncio tasks, which run here in worker threads) share one engine: whoever
waits for output runs the next step for everyone, so concurrent requests are batched together.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from puyu.chat import ChatTemplate
from puyu.chat.tool_stream import ToolCallStream
from puyu.client.base import ChatDelta, ChatResult, ToolCall
from puyu.client.threads import aiterate_in_thread
from puyu.engine.shared import SharedEngine
from puyu.errors import PuyuError
from puyu.generation.sampling import SamplingParams
from puyu.model.checkpoint import load_model
from puyu.model.decoder import hidden_states
from puyu.tokenizer import Tokenizer
from puyu.tokenizer.files import read_chat_template


@dataclass
class _Group:
    """One context and the continuations scored after it, packed into one row.

    The row is the context followed by each continuation but its last token; each continuation's tokens
    see the context and their own earlier tokens only (a tree mask), with positions continuing the context.
    """

    context: list[int]
    continuations: list[list[int]]
    request_index: list[int]

    def row(self) -> tuple[list[int], list[int], list[int]]:
        """(tokens, positions, branch id per token: -1 for the context, i for continuation i)."""
        tokens, positions, branch = list(self.context), list(range(len(self.context))), [-1] * len(self.context)
        for i, cont in enumerate(self.continuations):
            tokens += cont[:-1]
            positions += range(len(self.context), len(self.context) + len(cont) - 1)
            branch += [i] * (len(cont) - 1)
        return tokens, positions, branch

    def __len__(self) -> int:
        return len(self.context) + sum(len(c) - 1 for c in self.continuations)


def has_own_chat_template(folder: Path) -> bool:
    """Whether the folder ships a chat template (tokenizer_config.json's, or chat_template.jinja): a chat model."""
    config_file = folder / "tokenizer_config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    except (OSError, ValueError):
        config = {}
    source, named = read_chat_template(folder, config if isinstance(config, dict) else {})
    return bool(source or named)


def folder_fingerprint(folder: Path) -> str:
    """The folder's path plus a hash of its files' names, sizes and modification times: cached outputs of a
    model are not reused once its weights are rewritten in place."""
    entries = sorted(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in folder.iterdir() if p.is_file())
    digest = hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]
    return f"{folder.resolve()}@{digest}"


class LocalModel:
    """A model folder evaluated in this process.

    Args:
        model_dir: HF model folder.
        batch_size: questions (log-likelihood) or sequences (perplexity, generation) per forward.
        max_batch_tokens: most padded tokens in one log-likelihood forward (long prompts go fewer at a time).
        device: "auto" (CUDA when present), "cpu" or "cuda".
        chat: use chat prompts by default (None: when the folder ships its own chat template).
        dtype: compute dtype; default float32 on CPU, the stored dtype on CUDA.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        batch_size: int = 16,
        max_batch_tokens: int = 16384,
        device: str = "auto",
        chat: bool | None = None,
        dtype: str | None = None,
    ) -> None:
        folder = Path(model_dir)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = load_model(
            folder, dtype=dtype or ("float32" if self.device.type == "cpu" else "auto"), device=device
        )
        self.tokenizer = Tokenizer.from_pretrained(folder)
        self.template = ChatTemplate.for_model(self.tokenizer, self.model.config.family)
        self.name = folder.resolve().name
        self.model_dir = folder
        self.model_id = folder_fingerprint(folder)
        self.max_length = int(self.model.config.max_position_embeddings)
        self.batch_size = max(1, batch_size)
        self.max_batch_tokens = max_batch_tokens
        self.is_chat = has_own_chat_template(folder) if chat is None else chat
        self.calls = 0  # model-level batches run (tests count them to check the cache)
        self._generator: Any = None
        self._engine: SharedEngine | bool | None = None  # False where the engine cannot be built

    # ---- tokens ---------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def render_chat(self, messages: list[dict]) -> str:
        """The conversation as the model sees it, with the assistant's turn opened."""
        return self.template.render(messages, add_generation_prompt=True).text

    def _prefix_id(self) -> int:
        for candidate in (self.tokenizer.bos_id, self.tokenizer.eos_id):
            if candidate is not None:
                return candidate
        return 0

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's split: trailing spaces move to the continuation; the continuation's tokens are those of
        the whole text after the context's tokens."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            return [self._prefix_id()], self.tokenizer.encode(continuation, add_special_tokens=False)
        whole = self.tokenizer.encode(context + continuation)
        context_ids = self.tokenizer.encode(context)
        return context_ids, whole[len(context_ids) :]

    # ---- scoring --------------------------------------------------------------------------------

    @torch.inference_mode()
    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Sum log-probability of each continuation after its context, and whether it is the greedy one.

        Requests sharing a context are scored in one row: the context runs once for all its options.
        """
        groups: dict[tuple[int, ...], _Group] = {}
        results: list[tuple[float, bool]] = [(-math.inf, False)] * len(requests)
        for index, (context, continuation) in enumerate(requests):
            context_ids, cont_ids = self.encode_pair(context, continuation)
            if not cont_ids:
                results[index] = (0.0, True)
                continue
            group = groups.setdefault(tuple(context_ids), _Group(context_ids, [], []))
            group.continuations.append(cont_ids)
            group.request_index.append(index)
        ordered = sorted(groups.values(), key=len, reverse=True)
        for batch in self._batches(ordered):
            for group, scores in zip(batch, self._score_groups(batch), strict=True):
                for index, score in zip(group.request_index, scores, strict=True):
                    results[index] = score
        return results

    def _batches(self, ordered: list[_Group]) -> list[list[_Group]]:
        """Up to `batch_size` groups per batch, and no more padded tokens than `max_batch_tokens` (one at least)."""
        batches: list[list[_Group]] = []
        for group in ordered:  # longest first: a batch's first group sets its width
            last = batches[-1] if batches else None
            width = min(len(last[0]), self.max_length) if last else 0
            if last and len(last) < self.batch_size and (len(last) + 1) * width <= self.max_batch_tokens:
                last.append(group)
            else:
                batches.append([group])
        return batches

    def _truncate(self, group: _Group) -> _Group:
        # Too long for the model: drop the context's oldest tokens (as lm-eval does).
        excess = len(group) - self.max_length
        if excess <= 0:
            return group
        if excess >= len(group.context):
            raise PuyuError(
                f"continuations of {len(group) - len(group.context)} tokens exceed the model's {self.max_length}"
            )
        return _Group(group.context[excess:], group.continuations, group.request_index)

    def _score_groups(self, groups: Sequence[_Group]) -> list[list[tuple[float, bool]]]:
        self.calls += 1
        groups = [self._truncate(g) for g in groups]
        rows = [g.row() for g in groups]
        width = max(len(tokens) for tokens, _, _ in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        pos = torch.zeros(len(rows), width, dtype=torch.long)
        # One-token options (MMLU's " A"…" D") add no tokens to a row: plain causal attention then, since
        # right padding is never seen by a real token; otherwise the tree mask.
        tree = any(len(tokens) > len(group.context) for (tokens, _, _), group in zip(rows, groups, strict=True))
        mask = torch.zeros(len(rows), 1, width, width, dtype=torch.bool) if tree else None
        for r, (tokens, positions, branch) in enumerate(rows):
            n = len(tokens)
            ids[r, :n] = torch.tensor(tokens)
            pos[r, :n] = torch.tensor(positions)
            if mask is None:
                continue
            b = torch.tensor(branch)
            causal = torch.ones(n, n, dtype=torch.bool).tril()
            # A token sees the context and tokens of its own branch (the context sees only the context).
            visible = (b[None, :] == -1) | (b[None, :] == b[:, None])
            mask[r, 0, :n, :n] = causal & visible
            idx = torch.arange(n, width)
            mask[r, 0, idx, idx] = True  # padding attends to itself (an all-false row would give NaN)
        on_device = mask.to(self.device) if mask is not None else None
        hidden = hidden_states(self.model, ids.to(self.device), pos.to(self.device), on_device)
        # Where each continuation token is predicted from: the last context token, then its own branch.
        rows_idx, cols_idx, targets = [], [], []
        for r, group in enumerate(groups):
            offset = len(group.context)
            for cont in group.continuations:
                sources = [len(group.context) - 1, *range(offset, offset + len(cont) - 1)]
                offset += len(cont) - 1
                rows_idx += [r] * len(cont)
                cols_idx += sources
                targets += cont
        picked = hidden[torch.tensor(rows_idx, device=self.device), torch.tensor(cols_idx, device=self.device)]
        logprobs = F.log_softmax(self.model.lm_head(picked).float(), dim=-1)
        target = torch.tensor(targets, device=self.device)
        token_lp = logprobs.gather(-1, target[:, None])[:, 0].tolist()
        greedy = (logprobs.argmax(-1) == target).tolist()
        out, k = [], 0
        for group in groups:
            scores = []
            for cont in group.continuations:
                scores.append((float(sum(token_lp[k : k + len(cont)])), bool(all(greedy[k : k + len(cont)]))))
                k += len(cont)
            out.append(scores)
        return out

    @torch.inference_mode()
    def perplexity(self, texts: list[str]) -> list[tuple[float, int]]:
        """(sum of negative log-likelihoods, tokens scored) per text; long texts in disjoint windows."""
        windows: list[tuple[int, list[int], list[int]]] = []  # (text index, inputs, targets)
        for index, text in enumerate(texts):
            ids = self.tokenizer.encode(text)
            if self.tokenizer.bos_id is None or not ids or ids[0] != self.tokenizer.bos_id:
                ids = [self._prefix_id(), *ids]
            for start in range(0, len(ids) - 1, self.max_length):
                chunk = ids[start : start + self.max_length + 1]
                windows.append((index, chunk[:-1], chunk[1:]))
        totals = [(0.0, 0) for _ in texts]
        windows.sort(key=lambda w: len(w[1]), reverse=True)
        for start in range(0, len(windows), self.batch_size):
            batch = windows[start : start + self.batch_size]
            self.calls += 1
            width = max(len(w[1]) for w in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            targets = torch.full((len(batch), width), -100, dtype=torch.long)
            for r, (_, inputs, target) in enumerate(batch):
                ids[r, : len(inputs)] = torch.tensor(inputs)
                targets[r, : len(target)] = torch.tensor(target)
            # Right padding: plain causal attention never lets a real token see a pad.
            logits = self.model(ids.to(self.device)).float()
            nll = F.cross_entropy(logits.transpose(1, 2), targets.to(self.device), reduction="none").sum(-1).tolist()
            for (index, _, target), value in zip(batch, nll, strict=True):
                total, count = totals[index]
                totals[index] = (total + value, count + len(target))
        return totals

    # ---- generation -----------------------------------------------------------------------------

    def generate(self, prompts: list[str], params: SamplingParams) -> list[str]:
        """Completions of plain-text prompts."""
        return self._generate([self.tokenizer.encode(p) for p in prompts], params, chat=False)

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[str]:
        """Assistant replies, rendered with the model's chat template and stopped at its end of turn."""
        ids = [self.tokenizer.encode(self.render_chat(c), add_special_tokens=False) for c in conversations]
        return self._generate(ids, params, chat=True)

    def complete_text(self, prompt: str, params: SamplingParams) -> str:
        """A raw prompt's completion; control tokens in the prompt and the output are kept as text (the caller
        renders and parses a text protocol itself)."""
        return self._generate([self.tokenizer.encode(prompt)], params, chat=False)[0]

    def complete_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> ChatResult:
        """One assistant turn; with `tools`, the template renders them and the reply's calls are parsed out."""
        return ChatResult.from_deltas(list(self.stream_chat(messages, params, tools)))

    def stream_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> Iterator[ChatDelta]:
        """The turn as it is generated: content deltas (tool-call markup held back), then a last delta with the
        parsed calls and the finish reason."""
        reference = self._reference()
        template = reference.tool_template if tools else reference.template
        ids = reference.chat_prompt_ids(messages, tools)
        splitter = ToolCallStream(template) if tools else None
        finish, generated = "stop", 0
        self.calls += 1
        for text, token_count, finish_reason in self._stream_ids(ids, params, chat=True):
            generated += token_count
            finish = finish_reason or finish
            shown = splitter.feed(text) if splitter is not None else text
            if shown:
                yield ChatDelta(content=shown)
        rest, calls = splitter.finish() if splitter is not None else ("", [])
        tool_calls = [ToolCall.from_openai(call) for call in calls]
        finish = "tool_calls" if tool_calls else finish
        yield ChatDelta(rest, tool_calls, finish, prompt_tokens=len(ids), completion_tokens=generated)

    async def acomplete_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> ChatResult:
        """`complete_chat` without blocking the event loop; concurrent calls are batched by the engine."""
        return ChatResult.from_deltas([piece async for piece in self.astream_chat(messages, params, tools)])

    def astream_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> AsyncIterator[ChatDelta]:
        """`stream_chat` as an async iterator (closing it early aborts the request)."""
        return aiterate_in_thread(lambda: self.stream_chat(messages, params, tools))

    def embed(self, texts: list[str]) -> list[list[float]]:
        raise PuyuError(f"{self.name}: a decoder model gives no embeddings; use an encoder folder or endpoint")

    def _generate(self, prompt_ids: list[list[int]], params: SamplingParams, *, chat: bool) -> list[str]:
        self.calls += 1
        engine = self._get_engine()
        if engine is None:
            return self._reference_generate(prompt_ids, params, chat=chat)
        run_params = engine.engine.chat_params(params) if chat else params
        return engine.run(prompt_ids, run_params)

    def _stream_ids(
        self, ids: list[int], params: SamplingParams, *, chat: bool
    ) -> Iterator[tuple[str, int, str | None]]:
        """(text, new tokens, finish reason when finished) as the request advances."""
        engine = self._get_engine()
        if engine is None:
            reference = self._reference()
            extra_ids, extra_stops = (
                (sorted(reference.chat_stop_ids), reference.chat_stop_strings) if chat else ((), ())
            )
            result: list[Any] = []
            for piece in reference.stream(
                ids, params, extra_stop_ids=extra_ids, extra_stops=extra_stops, result=result
            ):
                yield piece, 0, None
            yield "", len(result[0].token_ids), result[0].finish_reason
            return
        run_params = engine.engine.chat_params(params) if chat else params
        for out in engine.stream(ids, run_params):
            yield out.text, len(out.token_ids), out.finish_reason if out.finished else None

    def _get_engine(self) -> SharedEngine | None:
        """The batching engine over this model, or None where it is not available (reference path then)."""
        if self._engine is False:
            return None
        if self._engine is None:
            try:
                from puyu.engine.config import EngineConfig
                from puyu.engine.engine import LLMEngine

                config = EngineConfig(max_num_seqs=self.batch_size, device=self.device.type)
                self._engine = SharedEngine(LLMEngine(self.model, self.tokenizer, config, self.template))
            except (ImportError, NotImplementedError, TypeError, AttributeError):
                self._engine = False
                return None
        return self._engine  # type: ignore[return-value]

    def _reference(self) -> Any:
        """The reference generator: the chat template, tool template and stops it derives are the engine's too."""
        if self._generator is None:
            from puyu.generation.generator import Generator

            self._generator = Generator(self.model, self.tokenizer, self.template)
        return self._generator

    def _reference_generate(self, prompt_ids: list[list[int]], params: SamplingParams, *, chat: bool) -> list[str]:
        return ["".join(text for text, _, _ in self._stream_ids(ids, params, chat=chat)) for ids in prompt_ids]
