"""Argument groups several subcommands share."""

from __future__ import annotations

import argparse
import re
import sys
from typing import TextIO

from puyu.generation.sampling import SamplingParams

# Chat-format markers as templates write them: <|im_start|>, <|eot_id|>, <start_of_turn>...
_MARKER = re.compile(r"<\|[^<>|\s]+\|>|<(?:start|end)_of_turn>")


def add_sampling_arguments(parser: argparse.ArgumentParser, max_tokens: int = 256) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--max-tokens", type=int, default=max_tokens, help="most new tokens (default %(default)s)")
    group.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default %(default)s)")
    group.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    group.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    group.add_argument("--min-p", type=float, default=0.0, help="drop tokens below min-p × the top probability")
    group.add_argument("--repetition-penalty", type=float, default=1.0, help=">1 discourages repeats")
    group.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    group.add_argument("--seed", type=int, default=None, help="random seed for sampling")


def sampling_params(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        stop=list(args.stop),
        seed=args.seed,
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="HF model folder (config.json, *.safetensors, tokenizer files)")
    parser.add_argument("--dtype", default="auto", help="float32, bfloat16, float16 or auto (default)")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu or cuda")
    parser.add_argument(
        "--template",
        default=None,
        help="built-in chat template (internlm2, llama3, qwen2) or a Jinja template file, instead of the folder's",
    )
    parser.add_argument(
        "--adapter",
        default=None,
        metavar="DIR",
        help="a LoRA adapter folder (puyu finetune's RUN/adapter, or PEFT's) to apply to the model, without merging",
    )


def split_template_markers(generator) -> list[str]:
    """The chat template's markers that the tokenizer does not hold as single tokens (it will spell them out)."""
    sample = generator.template.render([{"role": "user", "content": "hi"}], add_generation_prompt=True).text
    markers = dict.fromkeys([*_MARKER.findall(sample), *generator.template.stop_strings])
    added = generator.tokenizer.added_tokens
    return [marker for marker in markers if marker not in added and generator.tokenizer.token_to_id(marker) is None]


def warn_split_markers(generator, template: str | None, stream: TextIO | None = None) -> None:
    """Warn (on stderr by default) when a template named with --template does not fit the folder's tokenizer."""
    if template is None:
        return
    stream = stream or sys.stderr
    split = split_template_markers(generator)
    if split:
        stream.write(
            f"puyu: warning: the {template} template's markers {', '.join(split)} are not single tokens of this "
            "model's tokenizer, so the model reads them as plain text and may not stop at the end of its turn; "
            "use the template the model was trained with (default: the folder's own)\n"
        )
