"""LLMEngine: requests in, outputs out, one `step()` at a time.

Each step the scheduler picks chunks of sequences within the token budget, the runner forwards them in
one flattened batch over the paged KV cache, the sampler picks a token for every sequence whose known
tokens are now all computed, and the engine turns tokens into text deltas (UTF-8 safe, stop strings held
back) and decides which requests are finished.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from puyu.chat import ChatTemplate
from puyu.engine.block_manager import BlockManager
from puyu.engine.config import EngineConfig
from puyu.engine.outputs import EngineStats, RequestOutput, TokenLogprob
from puyu.engine.paged_cache import PagedKVPool
from puyu.engine.runner import ModelRunner
from puyu.engine.sampler import Sample, Sampler, SamplingState
from puyu.engine.scheduler import ScheduledChunk, Scheduler
from puyu.engine.sequence import Sequence
from puyu.errors import PuyuError
from puyu.generation.generator import Generator, template_for
from puyu.generation.sampling import SamplingParams
from puyu.generation.stop_strings import StopStringMatcher
from puyu.model.checkpoint import available_memory_bytes, load_model, parse_device, parse_size
from puyu.model.decoder import CausalLM
from puyu.model.generation_config import read_end_ids
from puyu.tokenizer import IncrementalDetokenizer, Tokenizer


@dataclass(eq=False)
class _Request:
    """The engine's bookkeeping for one request besides its `Sequence`."""

    seq: Sequence
    sampling: SamplingState
    stop_ids: set[int]
    detokenizer: IncrementalDetokenizer
    matcher: StopStringMatcher
    prompt_logprobs: list[TokenLogprob | None] | None = None
    reported_prompt_logprobs: bool = False


class LLMEngine:
    """Continuous batching over a paged KV cache with prefix caching.

    Args:
        model: the model (on its device, in its compute dtype).
        tokenizer: its tokenizer.
        config: engine settings.
        template: chat template; default the folder's own, else the family's built-in.
        end_ids: further end-of-sequence ids (from the folder's generation_config.json).
    """

    def __init__(
        self,
        model: CausalLM,
        tokenizer: Tokenizer,
        config: EngineConfig,
        template: ChatTemplate | None = None,
        end_ids: list[int] | tuple[int, ...] = (),
    ) -> None:
        # The reference Generator already knows how a model's EOS ids, chat template and stop tokens combine.
        reference = Generator(model, tokenizer, template, end_ids)
        self._reference = reference
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.template = reference.template
        self.tool_template = reference.tool_template
        self.eos_token_ids = list(reference.eos_token_ids)
        self.chat_stop_ids = set(reference.chat_stop_ids)
        self.chat_stop_strings = list(reference.chat_stop_strings)
        self.model_config = model.config
        self.max_model_len = config.max_model_len or model.config.max_position_embeddings
        self.num_blocks = self._num_blocks()
        self.block_manager = BlockManager(self.num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs, config.max_num_batched_tokens)
        self.runner = ModelRunner(model, config, self.num_blocks)
        self.sampler = Sampler(tokenizer.vocab_size, config.seed, model.device)
        self._requests: dict[str, _Request] = {}
        self._token_text: dict[int, str] = {}
        self.vision: Any = None  # a VisionRuntime when the model reads images (attach_vision)
        self._token_bytes: dict[int, bytes] = {}
        self.adapters: dict[str, int] = {}  # served LoRA adapter name -> number (see `load_adapters`)

    def load_adapters(self, adapters: Mapping[str, str | os.PathLike[str]]) -> None:
        """Serve LoRA adapters over this engine's base model, each under its own name, batched together.

        Args:
            adapters: name → PEFT LoRA adapter folder. Call once, before the first request.
        """
        from puyu.engine.lora_slots import install_adapters

        if self.adapters or self._requests:
            raise PuyuError("load adapters once, before the first request")
        self.adapters = install_adapters(self.model, adapters)

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | os.PathLike[str],
        config: EngineConfig | None = None,
        *,
        template: str | None = None,
        adapters: Mapping[str, str | os.PathLike[str]] | None = None,
    ) -> LLMEngine:
        """Load model, tokenizer and chat template from an HF folder (quantized folders included), and any
        LoRA adapters to serve beside the base (name → adapter folder)."""
        config = config or EngineConfig()
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        folder = Path(model_dir)
        from puyu.model.vision.config import is_vlm_folder

        if is_vlm_folder(folder):
            return cls._from_vlm_folder(folder, config, parse_device(device), template)
        model = load_model(folder, dtype=config.dtype, device=parse_device(device))
        tokenizer = Tokenizer.from_pretrained(folder)
        chat_template = template_for(tokenizer, model.config.family, template)
        engine = cls(model, tokenizer, config, chat_template, read_end_ids(folder))
        if adapters:
            engine.load_adapters(adapters)
        return engine

    @classmethod
    def _from_vlm_folder(
        cls, folder: Path, config: EngineConfig, device: torch.device, template: str | None
    ) -> LLMEngine:
        """An InternVL folder: the language model runs in the engine, the image encoder beside it."""
        from puyu.model.vision import load_vlm
        from puyu.model.vision.runtime import VisionRuntime

        vlm = load_vlm(folder, dtype=config.dtype, device=device)
        tokenizer = Tokenizer.from_pretrained(folder)
        model = vlm.language_model
        engine = cls(model, tokenizer, config, ChatTemplate.for_model(tokenizer, model.config.family, template))
        engine.attach_vision(VisionRuntime.for_folder(folder, vlm.encoder, tokenizer))
        return engine

    # ---- images ---------------------------------------------------------------------------------

    def attach_vision(self, vision: Any) -> None:
        """Give the engine an image encoder (`puyu.model.vision.runtime.VisionRuntime`)."""
        self.vision = vision
        self.runner.vision = vision

    def chat_request(self, messages: list[dict], tools: list[dict] | None = None) -> tuple[list[int], list[Any]]:
        """Prompt ids and image spans of a conversation whose user messages may hold image parts.

        Raises:
            PuyuError: images sent to a model without a vision encoder, or a bad image.
        """
        from puyu.model.vision.prompt import has_images

        if not has_images(messages):
            return self.chat_prompt_ids(messages, tools), []
        if self.vision is None:
            raise PuyuError("this model does not accept images (it has no vision encoder)")
        template = self.tool_template if tools else self.template

        def render(plain: list[dict]) -> str:
            return template.render(plain, tools=tools, add_generation_prompt=True).text

        return self.vision.prompt(messages, render, lambda text: self.tokenizer.encode(text, add_special_tokens=False))

    # ---- requests -------------------------------------------------------------------------------

    def validate_prompt(self, prompt_ids: list[int]) -> None:
        """Raise PuyuError for an empty, too long or out-of-vocabulary prompt (what add_request rejects)."""
        if not prompt_ids:
            raise PuyuError("the prompt is empty")
        if len(prompt_ids) > self.max_model_len:
            raise PuyuError(
                f"the prompt has {len(prompt_ids)} tokens, more than the maximum context length of "
                f"{self.max_model_len} tokens"
            )
        vocab = self.model_config.vocab_size
        if max(prompt_ids) >= vocab or min(prompt_ids) < 0:
            raise PuyuError(f"prompt has token ids outside the model's vocabulary (0..{vocab - 1})")
        if self.block_manager.blocks_needed(len(prompt_ids) + 1) > self.num_blocks:
            raise PuyuError(
                f"the prompt has {len(prompt_ids)} tokens but the KV cache holds only "
                f"{self.num_blocks * self.config.block_size} tokens"
            )

    def add_request(
        self,
        request_id: str,
        prompt_ids: list[int],
        params: SamplingParams,
        images: list[Any] | None = None,
        adapter: str | None = None,
    ) -> None:
        """Queue a request, computed with the LoRA adapter of that name if given (see `load_adapters`).

        `images` are the prompt's image spans (from `chat_request`), for a model with a vision encoder.
        Raises PuyuError for an empty, too long or out-of-vocabulary prompt, a reused id or an unknown adapter.
        """
        prompt = [int(t) for t in prompt_ids]
        if request_id in self._requests:
            raise PuyuError(f"request id {request_id!r} is already in use")
        if adapter is not None and adapter not in self.adapters:
            raise PuyuError(f"no adapter named {adapter!r} (loaded: {', '.join(self.adapters) or 'none'})")
        self.validate_prompt(prompt)
        vocab = self.model_config.vocab_size
        for name, ids in (("stop_token_ids", params.stop_token_ids), ("logit_bias", list(params.logit_bias))):
            bad = [token for token in ids if not 0 <= token < vocab]
            if bad:
                raise PuyuError(f"{name} has token id {bad[0]}, outside the vocabulary (0..{vocab - 1})")
        stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else set(self.eos_token_ids))
        seq = Sequence(
            request_id, prompt, params, adapter=self.adapters.get(adapter or "", 0), images=list(images or [])
        )
        if seq.images and self.vision is None:
            raise PuyuError("this model does not accept images (it has no vision encoder)")
        sampling = SamplingState(params, prompt, sorted(stop_ids), self.model_config.vocab_size, self.model.device)
        request = _Request(
            seq,
            sampling,
            stop_ids,
            IncrementalDetokenizer(self.tokenizer),
            StopStringMatcher(params.stop),
            prompt_logprobs=[None] if params.prompt_logprobs is not None else None,
        )
        seq.state = request
        self._requests[request_id] = request
        self.scheduler.add(seq)

    def abort(self, request_id: str) -> None:
        """Drop a request and free its blocks (unknown or finished ids are ignored)."""
        request = self._requests.pop(request_id, None)
        if request is not None:
            self.scheduler.finish(request.seq)

    def request_ids(self) -> list[str]:
        """Ids of the requests not yet finished."""
        return list(self._requests)

    def has_unfinished_requests(self) -> bool:
        return bool(self._requests)

    def stats(self) -> EngineStats:
        blocks = self.block_manager.stats()
        return EngineStats(
            num_waiting=len(self.scheduler.waiting),
            num_running=len(self.scheduler.running),
            num_preempted_total=self.scheduler.num_preempted_total,
            kv_blocks_total=blocks.total,
            kv_blocks_used=blocks.used,
            kv_usage=blocks.used / blocks.total,
            prefix_cache_hit_rate=blocks.hit_rate,
        )

    # ---- chat -----------------------------------------------------------------------------------

    def chat_prompt_ids(
        self, messages: list[dict], tools: list[dict] | None = None, *, trust_control_tokens: bool = False
    ) -> list[int]:
        """Token ids of `messages` rendered with the chat template (the tool template when tools are given);
        content is tokenized as plain text unless `trust_control_tokens`."""
        return self._reference.chat_prompt_ids(messages, tools, trust_control_tokens=trust_control_tokens)

    def chat_params(self, params: SamplingParams) -> SamplingParams:
        """`params` plus the template's end-of-turn stop ids and strings."""
        stop_ids = sorted(set(params.stop_token_ids) | self.chat_stop_ids)
        stops = [*params.stop, *(s for s in self.chat_stop_strings if s not in params.stop)]
        return dataclasses.replace(params, stop_token_ids=stop_ids, stop=stops)

    # ---- stepping -------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[RequestOutput]:
        """Run one forward over the scheduled chunks; return what each request produced."""
        plan = self.scheduler.schedule()
        # A sequence that cannot grow even with the whole pool ends as if it had hit its length limit.
        outputs = [self._finish(seq.state, "length", None, "", new_token=False) for seq in plan.out_of_blocks]
        if not plan.chunks:
            return outputs
        try:
            outputs.extend(self._run(plan.chunks))
        except Exception as exc:
            if len(plan.chunks) == 1:
                outputs.append(self._fail(plan.chunks[0].seq.state, exc))
                return outputs
            # One request's extreme input must not fail the others: run each chunk alone (nothing was
            # committed yet, so rerunning writes the same KV slots again); only those that fail again end.
            for chunk in plan.chunks:
                try:
                    outputs.extend(self._run([chunk]))
                except Exception as alone:
                    outputs.append(self._fail(chunk.seq.state, alone))
        return outputs

    def _run(self, chunks: list[ScheduledChunk]) -> list[RequestOutput]:
        """Forward and sample `chunks`; their progress is committed only once both succeeded."""
        logits = self.runner.execute(chunks)
        requests = [chunks[i].seq.state for i in logits.completing]
        samples = self.sampler(logits.last, [r.sampling for r in requests]) if requests else []
        for chunk in chunks:
            chunk.seq.num_computed_tokens += chunk.num_tokens
            self.block_manager.commit(chunk.seq)
        for index, rows in logits.full.items():
            self._collect_prompt_logprobs(chunks[index], rows)
        return [self._emit(r, s) for r, s in zip(requests, samples, strict=True)]

    def _fail(self, request: _Request, exc: BaseException) -> RequestOutput:
        """End a request whose step raised; its output carries the error instead of text."""
        self._requests.pop(request.seq.request_id, None)
        self.scheduler.finish(request.seq)
        out = self._output(request, "", None, finished=True, new_token=False)
        out.finish_reason, out.error = "error", f"{type(exc).__name__}: {exc}"
        return out

    def _emit(self, request: _Request, sample: Sample) -> RequestOutput:
        """Append a sampled token; decide text and whether the request is done."""
        seq, params = request.seq, request.seq.params
        seq.output_ids.append(sample.token)
        logprob = None
        if params.logprobs:
            logprob = TokenLogprob(
                sample.token,
                self._text(sample.token),
                sample.logprob if sample.logprob is not None else 0.0,
                [(t, self._text(t), lp) for t, lp in sample.top],
            )
        produced = len(seq.output_ids)
        # Before min_tokens the sampler masks stop ids unless nothing else is allowed; one it let through ends.
        if sample.token in request.stop_ids:
            return self._finish(request, "stop", sample.token, "", logprob)
        text = request.matcher.feed(request.detokenizer.push(sample.token))
        if request.matcher.matched is not None:
            return self._finish(request, "stop", request.matcher.matched, text, logprob, flush=False)
        if produced >= params.max_tokens or seq.num_tokens >= self.max_model_len:
            return self._finish(request, "length", None, text, logprob)
        return self._output(request, text, logprob, finished=False)

    def _finish(
        self,
        request: _Request,
        reason: str,
        stop_reason: str | int | None,
        text: str,
        logprob: TokenLogprob | None = None,
        flush: bool = True,
        new_token: bool = True,
    ) -> RequestOutput:
        if flush:  # the held-back tail (an incomplete character, a possible stop-string start) is final now
            text += request.matcher.feed(request.detokenizer.flush())
            if request.matcher.matched is None:
                text += request.matcher.flush()
            else:
                reason, stop_reason = "stop", request.matcher.matched
        self._requests.pop(request.seq.request_id, None)
        self.scheduler.finish(request.seq)
        out = self._output(request, text, logprob, finished=True, new_token=new_token)
        out.finish_reason, out.stop_reason = reason, stop_reason
        return out

    def _output(
        self, request: _Request, text: str, logprob: TokenLogprob | None, finished: bool, new_token: bool = True
    ) -> RequestOutput:
        seq = request.seq
        prompt_logprobs = None
        if request.prompt_logprobs is not None and not request.reported_prompt_logprobs:
            prompt_logprobs, request.reported_prompt_logprobs = request.prompt_logprobs, True
        return RequestOutput(
            request_id=seq.request_id,
            token_ids=seq.output_ids[-1:] if new_token else [],
            text=text,
            logprobs=[logprob] if logprob is not None else None,
            prompt_logprobs=prompt_logprobs,
            finished=finished,
            num_prompt_tokens=len(seq.prompt_ids),
            num_output_tokens=len(seq.output_ids),
            num_cached_tokens=seq.num_cached_tokens,
        )

    def _collect_prompt_logprobs(self, chunk: ScheduledChunk, logits: torch.Tensor) -> None:
        """Position p's logits score prompt token p + 1 (raw model distribution, before any processing)."""
        request: _Request = chunk.seq.state
        collected = request.prompt_logprobs
        assert collected is not None
        prompt = chunk.seq.prompt_ids
        k = chunk.seq.params.prompt_logprobs or 0
        logprobs = logits.float().log_softmax(dim=-1)
        for row, position in enumerate(range(chunk.start, chunk.start + chunk.num_tokens)):
            target = position + 1
            if target >= len(prompt) or target != len(collected):
                continue  # past the prompt, or already scored before a preemption
            token = prompt[target]
            top = logprobs[row].topk(k) if k else None
            alternatives = []
            if top is not None:
                alternatives = [
                    (t, self._text(t), v) for t, v in zip(top.indices.tolist(), top.values.tolist(), strict=True)
                ]
            collected.append(TokenLogprob(token, self._text(token), float(logprobs[row, token]), alternatives))

    def token_bytes(self, token: int) -> bytes:
        """The bytes token `token` stands for (cached; tokens of a multi-byte character carry their part)."""
        raw = self._token_bytes.get(token)
        if raw is None:
            raw = self._token_bytes[token] = self.tokenizer.token_bytes(token)
        return raw

    def _text(self, token: int) -> str:
        text = self._token_text.get(token)
        if text is None:
            text = self._token_text[token] = self.tokenizer.decode([token])
        return text

    # ---- sizing ---------------------------------------------------------------------------------

    def _num_blocks(self) -> int:
        """KV blocks: as configured, else from kv_cache_memory, else from free device memory."""
        config, mc = self.config, self.model_config
        if config.num_blocks is not None:
            return config.num_blocks
        per_block = PagedKVPool.bytes_per_block(
            mc.num_layers, mc.num_kv_heads, mc.head_dim or 0, config.block_size, self.model.dtype, config.kv_cache_dtype
        )
        per_seq = -(-self.max_model_len // config.block_size)
        if config.kv_cache_memory != "auto":
            budget = parse_size(config.kv_cache_memory)
        elif self.model.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.model.device)
            budget = int(free * 0.85)
        else:
            available = available_memory_bytes() or 4 * 2**30
            budget = min(int(available * 0.25), config.max_num_seqs * per_seq * per_block)
        blocks = budget // per_block
        if blocks < per_seq and config.kv_cache_memory != "auto":
            raise PuyuError(
                f"kv_cache_memory {config.kv_cache_memory} holds {blocks} blocks of {config.block_size} tokens, "
                f"fewer than one sequence of max_model_len {self.max_model_len} needs ({per_seq})"
            )
        return max(blocks, per_seq)
