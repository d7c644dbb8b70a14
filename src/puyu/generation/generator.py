"""Text in, text out over reference generation: tokenizer, chat template, stop strings, streaming."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from puyu.chat import FAMILY_DEFAULTS, ChatTemplate
from puyu.chat.content_tokens import encode_chat
from puyu.chat.jinja_env import SPECIAL_TOKEN_NAMES
from puyu.errors import PuyuError
from puyu.generation.generate import FinishReason, GenerationOutput, stream_tokens
from puyu.generation.sampling import SamplingParams
from puyu.generation.stop_strings import StopStringMatcher
from puyu.model.checkpoint import load_model
from puyu.model.decoder import CausalLM
from puyu.model.generation_config import read_end_ids
from puyu.tokenizer import IncrementalDetokenizer, Tokenizer


@dataclass
class ChatOutput:
    """An assistant reply: text with any tool-call markup parsed out."""

    content: str
    tool_calls: list[dict] = field(default_factory=list)
    finish_reason: str = "stop"
    output: GenerationOutput | None = None


class Generator:
    """A model with its tokenizer and chat template, generating through the reference path.

    Args:
        model: the model.
        tokenizer: its tokenizer.
        template: chat template; default the folder's own, else the family's built-in.
        end_ids: further end-of-sequence ids (a folder's generation_config.json lists the turn end there).
    """

    def __init__(
        self,
        model: CausalLM,
        tokenizer: Tokenizer,
        template: ChatTemplate | None = None,
        end_ids: Sequence[int] = (),
    ) -> None:
        if tokenizer.vocab_size > model.config.vocab_size:
            raise PuyuError(
                f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size} embeddings"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.template = template or ChatTemplate.for_model(tokenizer, model.config.family)
        # A folder template that ignores `tools` (InternLM2's shipped one) would drop them silently;
        # requests with tools use the family's built-in template, which renders its tool protocol.
        self.tool_template = self.template
        if not self.template.renders_tools:
            self.tool_template = ChatTemplate.for_model(
                tokenizer, model.config.family, FAMILY_DEFAULTS[model.config.family]
            )
        eos = set(model.config.eos_token_ids) | {i for i in end_ids if i < model.config.vocab_size}
        if tokenizer.eos_id is not None:
            eos.add(tokenizer.eos_id)
        self.chat_stop_ids: set[int] = set()
        self.chat_stop_strings: list[str] = []
        for stop in self.template.stop_strings:
            token_id = tokenizer.token_to_id(stop)
            if token_id is not None and stop in tokenizer.added_tokens:
                self.chat_stop_ids.add(token_id)
            else:
                self.chat_stop_strings.append(stop)
        self.eos_token_ids = sorted(eos)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        dtype: str | torch.dtype | None = "auto",
        device: str | torch.device = "cpu",
        template: str | None = None,
        adapter: str | os.PathLike[str] | None = None,
    ) -> Generator:
        """Load model, tokenizer and chat template from an HF folder.

        Args:
            path: the model folder.
            dtype: compute dtype ("auto": stored dtype where the device computes it fast, else float32).
            device: "cpu" or "cuda".
            template: a built-in chat template name to use instead of the folder's own.
            adapter: a LoRA adapter folder to apply (folded into the weights in the compute dtype, as
                `puyu merge` does on disk; kept beside a quantized base).
        """
        folder = Path(path)
        model = load_model(folder, dtype=dtype, device=device)
        if adapter is not None:
            apply_adapter(model, adapter)
        tokenizer = Tokenizer.from_pretrained(folder)
        chat_template = template_for(tokenizer, model.config.family, template)
        return cls(model, tokenizer, chat_template, read_end_ids(folder))

    # ---- plain text -----------------------------------------------------------------------------

    def encode_prompt(self, prompt: str | Sequence[int]) -> list[int]:
        return self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)

    def stream(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams | None = None,
        *,
        extra_stop_ids: Sequence[int] = (),
        extra_stops: Sequence[str] = (),
        result: list[GenerationOutput] | None = None,
    ) -> Iterator[str]:
        """Yield text as it is generated; never broken UTF-8, never a piece of a stop string.

        Args:
            prompt: text (encoded with the tokenizer's BOS rule) or token ids.
            params: sampling parameters.
            extra_stop_ids, extra_stops: stops on top of `params` (the chat template's end-of-turn).
            result: if given, the final `GenerationOutput` is appended to it when the stream ends.
        """
        params = params or SamplingParams()
        prompt_ids = self.encode_prompt(prompt)
        stop_ids = set(params.stop_token_ids) | set(extra_stop_ids)
        if not params.ignore_eos:
            stop_ids |= set(self.eos_token_ids)
        run_params = dataclasses.replace(params, stop_token_ids=sorted(stop_ids), stop=[])
        detokenizer = IncrementalDetokenizer(self.tokenizer)
        matcher = StopStringMatcher([*params.stop, *extra_stops])
        emitted: list[str] = []
        token_ids: list[int] = []
        logprobs: list[float] = []
        finish: FinishReason = "length"
        stop_reason: str | int | None = None
        for step in stream_tokens(self.model, prompt_ids, run_params, vocab_limit=self.tokenizer.vocab_size):
            token_ids.append(step.token_id)
            if step.logprob is not None:
                logprobs.append(step.logprob)
            if step.finish_reason == "stop":  # a stop id: its text is not part of the reply
                finish, stop_reason = "stop", step.token_id
                break
            text = matcher.feed(detokenizer.push(step.token_id))
            if text:
                emitted.append(text)
                yield text
            if matcher.matched is not None:
                break
        if matcher.matched is None:
            text = matcher.feed(detokenizer.flush())
            text += matcher.flush() if matcher.matched is None else ""
            if text:
                emitted.append(text)
                yield text
        if matcher.matched is not None:
            finish, stop_reason = "stop", matcher.matched
        if result is not None:
            result.append(
                GenerationOutput(
                    text="".join(emitted),
                    token_ids=token_ids,
                    finish_reason=finish,
                    logprobs=logprobs if params.logprobs else None,
                    prompt_tokens=len(prompt_ids),
                    stop_reason=stop_reason,
                )
            )

    def generate(self, prompt: str | Sequence[int], params: SamplingParams | None = None) -> GenerationOutput:
        """Generate to completion."""
        result: list[GenerationOutput] = []
        for _ in self.stream(prompt, params, result=result):
            pass
        return result[0]

    # ---- chat -----------------------------------------------------------------------------------

    def chat_prompt_ids(
        self, messages: list[dict], tools: list[dict] | None = None, *, trust_control_tokens: bool = False
    ) -> list[int]:
        """Token ids of `messages` rendered with the chat template and the assistant's turn opened.

        Message content is tokenized as plain text (control tokens come only from the template) unless
        `trust_control_tokens` is set.
        """
        template = self.tool_template if tools else self.template
        return encode_chat(template, self.tokenizer, messages, tools=tools, trust_control_tokens=trust_control_tokens)

    def stream_chat(
        self,
        messages: list[dict],
        params: SamplingParams | None = None,
        *,
        tools: list[dict] | None = None,
        result: list[GenerationOutput] | None = None,
    ) -> Iterator[str]:
        """Stream the assistant's reply text (tool-call markup included; `parse_tool_calls` takes it apart)."""
        yield from self.stream(
            self.chat_prompt_ids(messages, tools),
            params,
            extra_stop_ids=sorted(self.chat_stop_ids),
            extra_stops=self.chat_stop_strings,
            result=result,
        )

    def chat(
        self, messages: list[dict], params: SamplingParams | None = None, *, tools: list[dict] | None = None
    ) -> ChatOutput:
        """The assistant's reply to `messages`, with tool calls parsed out when `tools` are offered."""
        result: list[GenerationOutput] = []
        for _ in self.stream_chat(messages, params, tools=tools, result=result):
            pass
        output = result[0]
        content, tool_calls = self.tool_template.parse_tool_calls(output.text) if tools else (output.text, [])
        finish = "tool_calls" if tool_calls else output.finish_reason
        return ChatOutput(content=content, tool_calls=tool_calls, finish_reason=finish, output=output)


def apply_adapter(model: CausalLM, adapter: str | os.PathLike[str]) -> None:
    """Load a LoRA adapter into `model` and fold it into plain linear weights (quantized ones keep it beside)."""
    from torch import nn

    from puyu.finetune.adapter import load_adapter
    from puyu.finetune.lora import lora_modules, merge_lora

    load_adapter(model, adapter)
    for _, module in lora_modules(model):
        module.to(next(module.base_layer.parameters()).device)
    if all(isinstance(m.base_layer, nn.Linear) for _, m in lora_modules(model)):
        merge_lora(model)


def template_for(tokenizer: Tokenizer, family: str, template: str | None) -> ChatTemplate:
    """The chat template a `--template` / `--chat-template` value picks: the path of a Jinja file, a built-in
    name, or None for the folder's own (else the family's built-in)."""
    if template is None or not Path(template).is_file():
        return ChatTemplate.for_model(tokenizer, family, template)
    try:
        source = Path(template).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as bad:
        raise PuyuError(f"chat template {template}: unreadable ({bad})") from None
    tokens = {key: getattr(tokenizer, key, None) for key in SPECIAL_TOKEN_NAMES}
    return ChatTemplate.from_source(source, special_tokens=tokens, family_hint=family)
