"""Tokenizers ↔ GGUF vocabulary metadata (llama.cpp's `tokenizer.ggml.*` keys).

A GGUF file carries no tokenizer file; it lists the tokens, their types (normal, control, user-defined,
byte, ...), the BPE merges or SentencePiece scores, the special ids and a pre-tokenizer name. Import
rebuilds a `tokenizer.json` (byte-level BPE, `tokenizer.ggml.model = "gpt2"`) or a `tokenizer.model`
(SentencePiece, `"llama"`) from them; export writes them from a tokenizer folder, plus the full
`tokenizer.huggingface.json` (a key of the GGUF spec) so that puyu reads back exactly what it wrote.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from puyu.errors import PuyuError, one_line
from puyu.tokenizer.hf_backend import HFBackend
from puyu.tokenizer.sentencepiece_backend import SentencePieceBackend
from puyu.tokenizer.special_tokens import AddedToken
from puyu.tokenizer.tokenizer import Tokenizer

# llama.cpp's token types; SentencePiece's piece types use the same numbers.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# llama.cpp pre-tokenizer names → the split regex of the published tokenizer.json (None: GPT-2's ByteLevel rule).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPLITS: dict[str, str | None] = {
    "default": None,
    "gpt2": None,
    "smollm": None,  # plus each digit on its own, below
    "llama-bpe": _LLAMA3_SPLIT,
    "llama3": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
}
_DIGITS_ALONE = ("smollm",)
_IGNORE_MERGES = ("llama-bpe", "llama3")


@dataclass
class GGUFVocab:
    """The tokenizer part of a GGUF file's metadata."""

    model: str
    tokens: list[str]
    token_types: list[int]
    pre: str | None = None
    merges: list[str] | None = None
    scores: list[float] | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None
    chat_template: str | None = None
    hf_json: str | None = None

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], source: str) -> GGUFVocab:
        tokens = meta.get("tokenizer.ggml.tokens")
        model = meta.get("tokenizer.ggml.model")
        if not isinstance(tokens, list) or not isinstance(model, str):
            raise PuyuError(f"{source}: no tokenizer in the metadata (tokenizer.ggml.model / tokenizer.ggml.tokens)")
        types = meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
        if len(types) != len(tokens):
            raise PuyuError(f"{source}: {len(types)} token types for {len(tokens)} tokens")
        return cls(
            model=model,
            tokens=[str(t) for t in tokens],
            token_types=[int(t) for t in types],
            pre=meta.get("tokenizer.ggml.pre"),
            merges=meta.get("tokenizer.ggml.merges"),
            scores=meta.get("tokenizer.ggml.scores"),
            bos_id=meta.get("tokenizer.ggml.bos_token_id"),
            eos_id=meta.get("tokenizer.ggml.eos_token_id"),
            unk_id=meta.get("tokenizer.ggml.unknown_token_id"),
            pad_id=meta.get("tokenizer.ggml.padding_token_id"),
            add_bos=meta.get("tokenizer.ggml.add_bos_token"),
            add_eos=meta.get("tokenizer.ggml.add_eos_token"),
            add_space_prefix=meta.get("tokenizer.ggml.add_space_prefix"),
            chat_template=meta.get("tokenizer.chat_template"),
            hf_json=meta.get("tokenizer.huggingface.json"),
        )

    def _token(self, token_id: int | None) -> str | None:
        if token_id is None or not 0 <= int(token_id) < len(self.tokens):
            return None
        return self.tokens[int(token_id)]

    # ---- import ---------------------------------------------------------------------------------

    def to_tokenizer(self, source: str) -> Tokenizer:
        """The tokenizer these keys describe (save it with `save_pretrained`)."""
        backend: HFBackend | SentencePieceBackend
        if self.hf_json is not None:
            backend = _hf_backend_from_json(self.hf_json, source)
        elif self.model == "gpt2":
            backend = HFBackend(self._byte_level_bpe(source))
        elif self.model == "llama":
            backend = SentencePieceBackend(self._sentencepiece_proto(), source)
        else:
            raise PuyuError(f"{source}: tokenizer model {self.model!r} is not supported (supported: gpt2, llama)")
        added = [
            AddedToken(content=token, id=i, special=kind == CONTROL)
            for i, (token, kind) in enumerate(zip(self.tokens, self.token_types, strict=True))
            if kind in (CONTROL, USER_DEFINED)
        ]
        backend.add_tokens(added)
        named = {i: self._token(i) for i in (self.bos_id, self.eos_id, self.unk_id, self.pad_id)}
        special_contents = set(named.values())
        return Tokenizer(
            backend,
            bos_token=named[self.bos_id],
            eos_token=named[self.eos_id],
            unk_token=named[self.unk_id],
            pad_token=named[self.pad_id],
            additional_special_tokens=[t.content for t in added if t.special and t.content not in special_contents],
            # llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise.
            add_bos=bool(self.add_bos if self.add_bos is not None else self.model == "llama"),
            add_eos=bool(self.add_eos),
            chat_template=self.chat_template,
        )

    def _byte_level_bpe(self, source: str) -> Any:
        from tokenizers import Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer

        pre = self.pre or "default"
        if pre not in SPLITS:
            raise PuyuError(
                f"{source}: pre-tokenizer {pre!r} is not supported (supported: {', '.join(sorted(SPLITS))})"
            )
        merges = [tuple(m.split(" ", 1)) for m in self.merges or []]
        if any(len(pair) != 2 for pair in merges):
            raise PuyuError(f"{source}: a merge in tokenizer.ggml.merges is not two tokens")
        vocab = {token: i for i, token in enumerate(self.tokens)}
        model = models.BPE(vocab, merges, ignore_merges=pre in _IGNORE_MERGES)
        tok = HFTokenizer(model)
        split = SPLITS[pre]
        steps: list[Any] = []
        if pre in _DIGITS_ALONE:
            steps.append(pre_tokenizers.Digits(individual_digits=True))
        if split is None:
            steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=True))
        else:
            steps.append(pre_tokenizers.Split(Regex(split), behavior="isolated"))
            steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False))
        tok.pre_tokenizer = steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)
        tok.decoder = decoders.ByteLevel()
        return tok

    def _sentencepiece_proto(self) -> bytes:
        from sentencepiece import sentencepiece_model_pb2 as spm_pb

        proto = spm_pb.ModelProto()
        proto.trainer_spec.model_type = spm_pb.TrainerSpec.BPE
        proto.trainer_spec.byte_fallback = BYTE in self.token_types
        proto.trainer_spec.vocab_size = len(self.tokens)
        proto.trainer_spec.unk_id = self.unk_id if self.unk_id is not None else 0
        proto.trainer_spec.bos_id = self.bos_id if self.bos_id is not None else -1
        proto.trainer_spec.eos_id = self.eos_id if self.eos_id is not None else -1
        proto.trainer_spec.pad_id = -1
        proto.normalizer_spec.name = "identity"
        proto.normalizer_spec.add_dummy_prefix = self.add_space_prefix is not False
        proto.normalizer_spec.remove_extra_whitespaces = False
        proto.normalizer_spec.escape_whitespaces = True
        scores = self.scores or [0.0] * len(self.tokens)
        for i, (token, kind, score) in enumerate(zip(self.tokens, self.token_types, scores, strict=True)):
            piece = proto.pieces.add()
            piece.piece = token
            piece.score = float(score)
            # Chat tokens are matched by puyu's added-token splitter; for SentencePiece they are control pieces.
            piece.type = (
                CONTROL
                if kind == USER_DEFINED
                else kind
                if kind in (NORMAL, UNKNOWN, CONTROL, UNUSED, BYTE)
                else NORMAL
            )
            if i == proto.trainer_spec.unk_id:
                piece.type = UNKNOWN
        return proto.SerializeToString()

    # ---- export ---------------------------------------------------------------------------------

    def write(self, writer: Any) -> None:
        """Add these keys to a `gguf.GGUFWriter`."""
        writer.add_tokenizer_model(self.model)
        if self.pre is not None:
            writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.token_types)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        if self.merges is not None:
            writer.add_token_merges(self.merges)
        for token_id, add in (
            (self.bos_id, writer.add_bos_token_id),
            (self.eos_id, writer.add_eos_token_id),
            (self.unk_id, writer.add_unk_token_id),
            (self.pad_id, writer.add_pad_token_id),
        ):
            if token_id is not None:
                add(token_id)
        if self.add_bos is not None:
            writer.add_add_bos_token(self.add_bos)
        if self.add_eos is not None:
            writer.add_add_eos_token(self.add_eos)
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(self.add_space_prefix)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)
        if self.hf_json is not None:
            writer.add_string("tokenizer.huggingface.json", self.hf_json)


def _hf_backend_from_json(text: str, source: str) -> HFBackend:
    from tokenizers import Tokenizer as HFTokenizer

    try:
        return HFBackend(HFTokenizer.from_str(text))
    except Exception as bad:
        raise PuyuError(f"{source}: tokenizer.huggingface.json is not a valid tokenizer ({one_line(bad)})") from None


def _pre_name(pre_tokenizer: dict[str, Any] | None) -> str | None:
    """The llama.cpp pre-tokenizer name of a tokenizer.json pre-tokenizer, or None when llama.cpp has none."""
    if not pre_tokenizer:
        return None
    steps = pre_tokenizer.get("pretokenizers") if pre_tokenizer.get("type") == "Sequence" else [pre_tokenizer]
    kinds = [step.get("type") for step in steps or []]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"]:
        pattern = (steps[0].get("pattern") or {}).get("Regex")
        for name in ("llama-bpe", "qwen2"):
            if pattern == SPLITS[name]:
                return name
    return None


def vocab_from_tokenizer(tokenizer_dir: Path, vocab_size: int) -> tuple[GGUFVocab, list[str]]:
    """The GGUF vocabulary of a tokenizer folder, padded to the model's `vocab_size`.

    Returns:
        The vocabulary and notes on what llama.cpp will not reproduce exactly.
    """
    tokenizer = Tokenizer.from_pretrained(tokenizer_dir)
    notes: list[str] = []
    if tokenizer.vocab_size > vocab_size:
        raise PuyuError(f"{tokenizer_dir}: the tokenizer has {tokenizer.vocab_size} ids, the model only {vocab_size}")
    added = tokenizer.added_tokens
    special_ids = tokenizer.special_ids
    if tokenizer.backend_kind == "tokenizers":
        raw = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
        model = raw.get("model") or {}
        decoder = raw.get("decoder") or {}
        if model.get("type") != "BPE" or decoder.get("type") != "ByteLevel":
            raise PuyuError(f"{tokenizer_dir}/tokenizer.json: GGUF export handles byte-level BPE tokenizers only")
        tokens: list[str | None] = [None] * vocab_size
        for token, i in model["vocab"].items():
            tokens[i] = token
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        pre = _pre_name(raw.get("pre_tokenizer"))
        if pre is None:
            notes.append(
                "llama.cpp has no pre-tokenizer with this tokenizer's split rule: it splits with its default "
                "(GPT-2) rule, so its token ids can differ from puyu's on some text; puyu reads the exact "
                "tokenizer back from tokenizer.huggingface.json"
            )
        vocab = GGUFVocab(model="gpt2", tokens=[], token_types=[], pre=pre or "default", merges=merges)
        vocab.hf_json = (tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8")
    else:
        from sentencepiece import sentencepiece_model_pb2 as spm_pb

        proto = spm_pb.ModelProto()
        proto.ParseFromString((tokenizer_dir / "tokenizer.model").read_bytes())
        tokens = [None] * vocab_size
        types = [NORMAL] * vocab_size
        scores = [0.0] * vocab_size
        for i, piece in enumerate(proto.pieces):
            tokens[i], types[i], scores[i] = piece.piece, piece.type, piece.score
        vocab = GGUFVocab(model="llama", tokens=[], token_types=[], pre="default", scores=scores)
        vocab.add_space_prefix = proto.normalizer_spec.add_dummy_prefix
    types_out: list[int] = []
    for i in range(vocab_size):
        kind = NORMAL if vocab.model == "gpt2" else types[i]
        if i in added.values():
            kind = CONTROL if i in special_ids else USER_DEFINED
        types_out.append(kind)
    for content, i in added.items():
        tokens[i] = content
    for i, token in enumerate(tokens):
        if token is None:  # embedding rows past the tokenizer: llama.cpp needs a (unique) name for every id
            tokens[i], types_out[i] = f"[PAD{i}]", UNUSED
    vocab.tokens = [t for t in tokens if t is not None]
    vocab.token_types = types_out
    vocab.bos_id, vocab.eos_id = tokenizer.bos_id, tokenizer.eos_id
    vocab.unk_id, vocab.pad_id = tokenizer.unk_id, tokenizer.pad_id
    vocab.add_bos, vocab.add_eos = tokenizer.add_bos, tokenizer.add_eos
    vocab.chat_template = tokenizer.chat_template
    return vocab, notes


def tokenizer_from_gguf(path: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer a .gguf file's metadata describes."""
    from puyu.model.gguf.reader import GGUFFile

    file = GGUFFile(path)
    return GGUFVocab.from_metadata(file.metadata, str(file.path)).to_tokenizer(str(file.path))
