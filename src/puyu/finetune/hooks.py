"""Step hooks for fine-tuning runs: watch what the model says while it trains."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from puyu.chat import ChatTemplate
from puyu.generation.generator import Generator
from puyu.generation.sampling import SamplingParams
from puyu.model.decoder import CausalLM
from puyu.tokenizer import Tokenizer
from puyu.train.metrics import MetricsLogger

SAMPLES_FILE = "samples.jsonl"


class EvaluateChatHook:
    """Every `every` steps (and at the last step), answer fixed prompts greedily with the live model.

    Answers go to `run_dir/samples.jsonl` (one line per prompt: step, prompt, response), to the metric log
    (split "samples") and to the progress output. The model is put in eval mode without gradients for the
    generation and back in train mode after.

    Args:
        tokenizer: the model's tokenizer.
        template: the chat template the run trains with.
        prompts: user messages to answer.
        every: steps between generations (0: only at the last step).
        max_steps: the run's last step.
        run_dir: where samples.jsonl goes.
        max_tokens: most new tokens per answer.
        echo: also print the answers (above the progress bar).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        prompts: Sequence[str],
        *,
        every: int,
        max_steps: int,
        run_dir: str | Path,
        max_tokens: int = 64,
        echo: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.prompts = list(prompts)
        self.every = every
        self.max_steps = max_steps
        self.path = Path(run_dir) / SAMPLES_FILE
        self.params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        self.echo = echo

    def due(self, step: int) -> bool:
        return bool(self.prompts) and (step == self.max_steps or (self.every > 0 and step % self.every == 0))

    def answers(self, model: CausalLM) -> list[str]:
        """The model's greedy answer to each prompt, generated in eval mode without gradients."""
        was_training = model.training
        model.eval()
        generator = Generator(model, self.tokenizer, self.template)
        # A bf16 base with float32 adapters (CUDA) computes under autocast, as in training.
        autocast = torch.autocast(model.device.type, dtype=model.dtype, enabled=model.dtype != torch.float32)
        try:
            with torch.no_grad(), autocast:
                return [
                    generator.chat([{"role": "user", "content": prompt}], self.params).content
                    for prompt in self.prompts
                ]
        finally:
            model.train(was_training)

    def after_step(self, step: int, model: CausalLM, logger: MetricsLogger) -> None:
        if not self.due(step):
            return
        answers = self.answers(model)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as sink:  # an append-only log, like metrics.jsonl
            for prompt, answer in zip(self.prompts, answers, strict=True):
                sink.write(json.dumps({"step": step, "prompt": prompt, "response": answer}, ensure_ascii=False) + "\n")
        logger.log(step, {f"response_{i}": answer for i, answer in enumerate(answers)}, split="samples")
        if self.echo:
            for prompt, answer in zip(self.prompts, answers, strict=True):
                tqdm.write(f"[step {step}] {prompt!r} -> {answer!r}")
