"""Argument groups several subcommands share."""

from __future__ import annotations

import argparse

from puyu.generation.sampling import SamplingParams


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
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--template", default=None, help="built-in chat template (internlm2, llama3, qwen2) instead of the folder's"
    )
