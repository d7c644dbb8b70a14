"""`generation_config.json`: the end tokens a model folder announces to every loader.

A chat model ends its turn with a token of its own (InternLM2's `<|im_end|>`, Llama-3's `<|eot_id|>`);
released chat folders list it beside `</s>` in `generation_config.json` (internlm2-chat: `[2, 92542]`),
which is where transformers, vLLM and LMDeploy look. puyu writes the same list into every folder it
writes and reads it back when it loads one, so plain completions stop at the end of a turn too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from puyu.errors import PuyuError
from puyu.io import atomic_write_text
from puyu.model.config import ModelConfig

GENERATION_CONFIG = "generation_config.json"


def turn_end_ids(tokenizer, family: str) -> list[int]:
    """Ids of the chat template's end-of-turn markers that are single added tokens of `tokenizer`.

    Args:
        tokenizer: a `puyu.tokenizer.Tokenizer`.
        family: the model family (picks the built-in template when the tokenizer has none).
    """
    from puyu.chat import ChatTemplate

    try:
        template = ChatTemplate.for_model(tokenizer, family)
    except PuyuError:  # a folder whose template does not parse still gets its EOS
        return []
    added = tokenizer.added_tokens
    return [added[stop] for stop in template.stop_strings if stop in added]


def write_generation_config(folder: str | os.PathLike[str], config: ModelConfig | None = None) -> Path:
    """(Re)write `folder/generation_config.json` from its config and, where present, its tokenizer.

    Args:
        folder: a model folder with config.json.
        config: the model's config (default: read from the folder).
    """
    folder = Path(folder)
    config = config or ModelConfig.from_pretrained(folder)
    end_ids = list(config.eos_token_ids)
    if (folder / "tokenizer.json").is_file() or (folder / "tokenizer.model").is_file():
        from puyu.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_pretrained(folder)
        end_ids += [i for i in turn_end_ids(tokenizer, config.family) if i < config.vocab_size]
    end_ids = list(dict.fromkeys(end_ids))
    generation: dict[str, object] = {"bos_token_id": config.bos_token_id}
    generation["eos_token_id"] = end_ids[0] if len(end_ids) == 1 else end_ids or None
    if config.pad_token_id is not None:
        generation["pad_token_id"] = config.pad_token_id
    atomic_write_text(folder / GENERATION_CONFIG, json.dumps(generation, indent=2) + "\n")
    return folder / GENERATION_CONFIG


def read_end_ids(folder: str | os.PathLike[str]) -> list[int]:
    """The `eos_token_id` entries of a folder's generation_config.json ([] when it has none).

    Raises:
        PuyuError: the file exists but is not valid JSON or lists something other than token ids.
    """
    file = Path(folder) / GENERATION_CONFIG
    if not file.is_file():
        return []
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as bad:
        raise PuyuError(f"{file}: not valid JSON ({bad})") from None
    value = raw.get("eos_token_id") if isinstance(raw, dict) else None
    ids = value if isinstance(value, list) else [] if value is None else [value]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise PuyuError(f"{file}: eos_token_id must be a token id or a list of them, got {value!r}")
    return ids
