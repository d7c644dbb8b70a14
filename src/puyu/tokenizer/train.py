"""Byte-level BPE tokenizers, trained with Hugging Face `tokenizers` or built instantly without merges.

Both use the same pipeline, so that any text encodes (every byte is in the vocabulary) and decodes back
exactly: a Qwen2-style split of the text into words, numbers, punctuation and whitespace runs, then the
GPT-2 byte-to-character mapping, no normalizer. The special tokens of the chosen chat family come first
in the vocabulary, then the 256 bytes, then the merges. The family's built-in chat template (from
`puyu.chat`) goes into the tokenizer config, so transformers' `apply_chat_template` works on the folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from puyu.errors import PuyuError, one_line
from puyu.tokenizer.byte_level import bytes_to_unicode
from puyu.tokenizer.tokenizer import Tokenizer

# The pre-tokenizer pattern of Qwen2 (GPT-4 style, digits one by one).
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class _Family:
    specials: tuple[str, ...]  # in id order, starting at 0
    bos: str | None
    eos: str
    pad: str
    unk: str | None
    add_bos: bool
    chat_tokens: tuple[str, ...]


_FAMILIES: dict[str, _Family] = {
    # InternLM2 layout: <unk> <s> </s> at 0, 1, 2, BOS added, pad = </s>.
    "internlm2": _Family(
        specials=("<unk>", "<s>", "</s>"),
        bos="<s>",
        eos="</s>",
        pad="</s>",
        unk="<unk>",
        add_bos=True,
        chat_tokens=(
            "<|im_start|>",
            "<|im_end|>",
            "<|action_start|>",
            "<|action_end|>",
            "<|interpreter|>",
            "<|plugin|>",
        ),
    ),
    # Qwen2: no BOS, <|endoftext|> ends documents and pads.
    "qwen2": _Family(
        specials=("<|endoftext|>",),
        bos=None,
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        unk=None,
        add_bos=False,
        chat_tokens=("<|im_start|>", "<|im_end|>"),
    ),
    # Llama-3: <|begin_of_text|> added as BOS; padding with <|end_of_text|>.
    "llama3": _Family(
        specials=("<|begin_of_text|>", "<|end_of_text|>"),
        bos="<|begin_of_text|>",
        eos="<|end_of_text|>",
        pad="<|end_of_text|>",
        unk=None,
        add_bos=True,
        chat_tokens=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>"),
    ),
}

CHAT_FAMILIES = tuple(_FAMILIES)


def _family(name: str) -> _Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise PuyuError(
            f"chat_tokens={name!r}: unknown chat token family (choose from {', '.join(_FAMILIES)})"
        ) from None


def _all_specials(family: _Family, extra: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for token in (*family.specials, *family.chat_tokens, *(extra or ())):
        if not isinstance(token, str) or not token:
            raise PuyuError(f"special token {token!r}: must be a non-empty string")
        if token not in out:
            out.append(token)
    return out


def _split_pattern(max_digits: int, digit_space: bool = False, split_capitalized: bool = False) -> str:
    """The pre-tokenizer's split regex; runs of up to `max_digits` digits stay together (1: every digit alone),
    with `digit_space` a space before a number joins its first run, and with `split_capitalized` a capitalised
    word never takes the character before it."""
    space = " ?" if digit_space else ""
    digits = r"\p{N}" if max_digits == 1 else rf"\p{{N}}{{1,{max_digits}}}"
    pattern = _SPLIT_PATTERN.replace(r"|\p{N}|", f"|{space}{digits}|", 1)
    if split_capitalized:
        # Capitalised words first and bare; other words keep their one leading character (space, quote).
        pattern = pattern.replace(
            r"|[^\r\n\p{L}\p{N}]?\p{L}+|", r"|\p{Lu}\p{L}*|[^\r\n\p{L}\p{N}]?(?!\p{Lu})\p{L}+|", 1
        )
    return pattern


def _byte_level_pipeline(
    tok: Any, max_digits: int = 1, digit_space: bool = False, split_capitalized: bool = False
) -> None:
    from tokenizers import Regex, decoders, pre_tokenizers

    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(_split_pattern(max_digits, digit_space, split_capitalized)), behavior="isolated", invert=False
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()


def _wrap(tok: Any, chat_tokens: str, specials: Sequence[str]) -> Tokenizer:
    from tokenizers import processors

    # Imported here: puyu.chat pulls in Jinja, which plain tokenizing does not need.
    from puyu.chat.builtin import BUILTINS

    family = _family(chat_tokens)
    bos_id = tok.token_to_id(family.bos) if family.bos else None
    if family.add_bos and family.bos is not None and bos_id is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{family.bos}:0 $A:0",
            pair=f"{family.bos}:0 $A:0 {family.bos}:1 $B:1",
            special_tokens=[(family.bos, bos_id)],
        )
    else:
        tok.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    named = {family.bos, family.eos, family.pad, family.unk}
    return Tokenizer._from_hf(
        tok,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        unk_token=family.unk,
        additional_special_tokens=[t for t in specials if t not in named],
        add_bos=family.add_bos,
        add_eos=False,
        # Chat token families and built-in chat templates share their names.
        chat_template=BUILTINS[chat_tokens].source,
        config={"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False},
    )


def byte_level_tokenizer(chat_tokens: str = "internlm2") -> Tokenizer:
    """A byte-level BPE tokenizer with no merges, built in memory at once.

    Every byte is one token, so it is deterministic and encodes any text; meant for randomly
    initialised models and tests, not for training real models.

    Args:
        chat_tokens: Chat token family: "internlm2", "qwen2" or "llama3" (also picks the built-in chat
            template of that name).

    Returns:
        The tokenizer (special tokens first, then the 256 bytes in byte order).
    """
    from tokenizers import AddedToken as HFAddedToken
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models

    family = _family(chat_tokens)
    specials = _all_specials(family, None)
    vocab = {token: i for i, token in enumerate(specials)}
    for b, ch in sorted(bytes_to_unicode().items()):
        vocab[ch] = len(specials) + b
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=[]))
    _byte_level_pipeline(tok)
    tok.add_special_tokens([HFAddedToken(t, special=True, normalized=False) for t in specials])
    return _wrap(tok, chat_tokens, specials)


def _training_files(files: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files to train on; a folder stands for the (non-hidden) files under it."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths: list[Path] = []
    for f in files:
        path = Path(f)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise PuyuError(f"{path}: folder has no files to train on")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise PuyuError(f"{path}: no such file")
    if not paths:
        raise PuyuError("train_bpe: no training files given")
    if not any(map(_has_text, paths)):
        names = ", ".join(str(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        raise PuyuError(f"no text to train on: {names} {'is' if len(paths) == 1 else 'are'} empty or only whitespace")
    return paths


def _has_text(path: Path) -> bool:
    """Whether the file holds anything besides whitespace (read until the first such byte)."""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return True
    return False


def train_bpe(
    files: Sequence[str | os.PathLike[str]],
    vocab_size: int,
    out_dir: str | os.PathLike[str],
    *,
    special_tokens: Sequence[str] | None = None,
    min_frequency: int = 2,
    chat_tokens: str = "internlm2",
    max_digits: int = 1,
    digit_space: bool = False,
    split_capitalized: bool = False,
    show_progress: bool = True,
) -> Tokenizer:
    """Train a byte-level BPE tokenizer and save it.

    The result loads with `Tokenizer.from_pretrained(out_dir)` and with transformers'
    `AutoTokenizer.from_pretrained(out_dir)`, giving the same ids.

    Args:
        files: UTF-8 text files to train on; a folder stands for all (non-hidden) files under it.
        vocab_size: Target size including special tokens and the 256 bytes (a small corpus may stop
            short of it).
        out_dir: Folder to write `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json`.
        special_tokens: Extra special tokens, placed after the family's own.
        min_frequency: A pair must occur this often to be merged.
        chat_tokens: Chat token family: "internlm2", "qwen2" or "llama3" (sets BOS/EOS/pad, the chat
            tokens and the family's built-in chat template from `puyu.chat`).
        max_digits: Longest run of digits one pre-token may hold: 1 (the default) splits every digit, as Qwen2
            does; 3 keeps runs of up to three digits together, as Llama 3 does, so BPE can learn numbers up to
            999 as single tokens.
        digit_space: A space before a number joins its first digits (`" 8", "6", "9"`), as in GPT-2's
            pre-tokenizer, instead of standing alone (`" ", "8", "6", "9"`).
        split_capitalized: A capitalised word stands apart from the character before it (`" ", "Dime"`
            instead of `" Dime"`), so a name is the same tokens mid-sentence, at the start of a line or a chat
            turn, and after a quote: a small model copying a name from the question into its answer then
            repeats tokens it has seen instead of mapping each `" Dime"` to a different `"Dime"`.
        show_progress: Show the `tokenizers` progress bar.

    Returns:
        The trained tokenizer, as loaded back from `out_dir`.

    Raises:
        PuyuError: A file is missing, or the arguments are invalid.
    """
    from tokenizers import AddedToken as HFAddedToken
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    family = _family(chat_tokens)
    specials = _all_specials(family, special_tokens)
    paths = _training_files(files)
    floor = 256 + len(specials)
    if vocab_size < floor:
        raise PuyuError(
            f"vocab_size={vocab_size}: too small, needs at least {floor} (256 bytes + {len(specials)} special tokens)"
        )
    if min_frequency < 1:
        raise PuyuError(f"min_frequency={min_frequency}: must be at least 1")
    if max_digits < 1:
        raise PuyuError(f"max_digits={max_digits}: must be at least 1")

    tok = HFTokenizer(models.BPE())
    _byte_level_pipeline(tok, max_digits, digit_space, split_capitalized)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[HFAddedToken(t, special=True, normalized=False) for t in specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    try:
        tok.train([str(p) for p in paths], trainer)
    except Exception as e:  # tokenizers reports unreadable files (e.g. not UTF-8) as a plain Exception
        raise PuyuError(f"{', '.join(map(str, paths))}: training failed ({one_line(e)})") from None
    _wrap(tok, chat_tokens, specials).save_pretrained(out_dir)
    return Tokenizer.from_pretrained(out_dir)
