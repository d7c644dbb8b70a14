"""One tokenizer class over two backends: Hugging Face `tokenizers` (tokenizer.json) and SentencePiece
(tokenizer.model), configured by the usual transformers side files.

What the class adds on top of the raw backends:

* Added tokens from `tokenizer_config.json` (`added_tokens_decoder`), `added_tokens.json` and the named
  special tokens. For SentencePiece they are split out of the text before the backend runs and decode
  to their content: InternLM2's chat tokens are *not* pieces of its `tokenizer.model` (ids 92538-92543
  are `[UNUSED_TOKEN_*]` placeholders there).
* BOS/EOS handling from `add_bos_token` / `add_eos_token`, or from the tokenizer.json post-processor
  when the config is silent (Llama-3 style), applied by this class so they are never added twice.
* Character offsets for every id, for turning character spans (assistant turns) into label masks.
* Exact round trips: `decode(encode(text, add_special_tokens=False)) == text` for SentencePiece models
  with byte fallback and an identity normalizer (InternLM2), and for byte-level BPE.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from puyu.errors import PuyuError, one_line
from puyu.io import atomic_write_bytes, atomic_write_text
from puyu.tokenizer import files
from puyu.tokenizer.backend import Backend, Offsets
from puyu.tokenizer.byte_level import piece_bytes
from puyu.tokenizer.hf_backend import HFBackend
from puyu.tokenizer.sentencepiece_backend import SentencePieceBackend


class Tokenizer:
    """A tokenizer for open LLMs: SentencePiece (`tokenizer.model`) or Hugging Face (`tokenizer.json`).

    Build one with `Tokenizer.from_pretrained(folder)`, `train_bpe(...)` or `byte_level_tokenizer()`.

    Attributes:
        bos_token, eos_token, pad_token, unk_token: The named special tokens (content strings) or None.
        add_bos, add_eos: Whether `encode(..., add_special_tokens=True)` adds BOS / EOS.
        chat_template: The Jinja chat template, or None.
        additional_special_tokens: Further special tokens named by the config (chat tokens).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        unk_token: str | None = None,
        additional_special_tokens: Sequence[str] = (),
        add_bos: bool = False,
        add_eos: bool = False,
        chat_template: str | None = None,
        config: Mapping[str, Any] | None = None,
        source: Path | None = None,
    ) -> None:
        self._backend = backend
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.pad_token = pad_token
        self.unk_token = unk_token
        self.additional_special_tokens = list(additional_special_tokens)
        self.add_bos = add_bos
        self.add_eos = add_eos
        self.chat_template = chat_template
        # Config keys this class does not interpret (tokenizer_class, auto_map, model_max_length...),
        # written back unchanged by save_pretrained.
        self._config = {k: v for k, v in (config or {}).items() if k not in files.MANAGED_KEYS}
        self._chat_template_list: list[dict[str, Any]] | None = None
        self._source = source
        self._special_cache: tuple[tuple[Any, ...], frozenset[int]] | None = None
        # Like transformers: a named special token that is not an added token yet becomes one, so that
        # it is matched in text and skipped by skip_special_tokens.
        for content in self._named_contents():
            self._backend.add_special(content)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load the tokenizer of a model folder.

        Args:
            path: A folder with `tokenizer.json` (Hugging Face tokenizers) or `tokenizer.model`
                (SentencePiece), plus optional `tokenizer_config.json`, `special_tokens_map.json`,
                `added_tokens.json` and `chat_template.jinja`. `tokenizer.json` wins when both exist.
                A path to one of the two tokenizer files also works, and so does a .gguf file (the
                tokenizer is rebuilt from its metadata).

        Returns:
            The tokenizer.

        Raises:
            PuyuError: The folder is missing, has no tokenizer file, or a file is malformed.
        """
        if Path(path).is_file() and Path(path).suffix.lower() == ".gguf":
            from puyu.tokenizer.gguf_vocab import tokenizer_from_gguf

            return tokenizer_from_gguf(path)
        found = files.read_folder(path)
        backend: Backend
        if found.tokenizer_file.name == files.TOKENIZER_JSON:
            backend = HFBackend.from_file(found.tokenizer_file)
        else:
            backend = SentencePieceBackend.from_file(found.tokenizer_file)
        backend.add_tokens(found.added_tokens)
        specials = _special_tokens(backend, found.config, found.special_tokens_map)
        template, template_list = files.read_chat_template(found.folder, found.config)
        tokenizer = cls(
            backend,
            bos_token=specials.named["bos_token"],
            eos_token=specials.named["eos_token"],
            pad_token=specials.named["pad_token"],
            unk_token=specials.named["unk_token"],
            additional_special_tokens=specials.additional,
            add_bos=specials.add_bos,
            add_eos=specials.add_eos,
            chat_template=template,
            config=found.config,
            source=found.folder,
        )
        tokenizer._chat_template_list = template_list
        return tokenizer

    @classmethod
    def _from_hf(cls, hf_tokenizer: Any, **kwargs: Any) -> Tokenizer:
        """Wrap an in-memory `tokenizers.Tokenizer` (used by training and the byte-level helper)."""
        return cls(HFBackend(hf_tokenizer), **kwargs)

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Save the tokenizer so that both `Tokenizer.from_pretrained` and transformers' AutoTokenizer load it.

        Writes the backend file (`tokenizer.json` or `tokenizer.model`), `tokenizer_config.json` and
        `special_tokens_map.json`, each through a temporary file and a rename. Python files named by the
        config's `auto_map` are copied from the source folder when present there. A stale
        `tokenizer.json` is removed when saving a SentencePiece tokenizer, since it would take precedence.

        Args:
            path: The folder to write (created if missing).
        """
        folder = Path(path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PuyuError(f"{folder}: cannot create folder ({one_line(e)})") from None
        backend = self._backend
        if backend.file_name == files.TOKENIZER_MODEL:
            stale = folder / files.TOKENIZER_JSON
            if stale.is_file():
                stale.unlink()
        atomic_write_bytes(
            folder / backend.file_name, backend.serialize(self.add_bos, self.bos_id, self.add_eos, self.eos_id)
        )
        files.write_json(folder / files.TOKENIZER_CONFIG, self._config_dict())
        files.write_json(folder / files.SPECIAL_TOKENS_MAP, self._special_tokens_map())
        jinja = folder / files.CHAT_TEMPLATE
        if jinja.is_file() and self.chat_template is not None:
            # Keep an existing chat_template.jinja in step with the config (transformers reads either).
            atomic_write_text(jinja, self.chat_template)
        if self._source is not None:
            files.copy_remote_code(self._source, self._config, folder)

    def _config_dict(self) -> dict[str, Any]:
        config = dict(self._config)
        config.setdefault("tokenizer_class", self._backend.tokenizer_class)
        config.setdefault("clean_up_tokenization_spaces", False)
        config["add_bos_token"] = self.add_bos
        config["add_eos_token"] = self.add_eos
        config["added_tokens_decoder"] = {str(i): tok.to_config() for i, tok in sorted(self._backend.added.items())}
        config["additional_special_tokens"] = list(self.additional_special_tokens)
        for key in files.NAMED_TOKENS:
            config[key] = getattr(self, key)
        template = files.chat_template_value(self.chat_template, self._chat_template_list)
        if template is not None:
            config["chat_template"] = template
        return dict(sorted(config.items()))

    def _special_tokens_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: getattr(self, key) for key in files.NAMED_TOKENS if getattr(self, key)}
        if self.additional_special_tokens:
            out["additional_special_tokens"] = list(self.additional_special_tokens)
        return out

    # ------------------------------------------------------------------ vocabulary

    def _named_contents(self) -> list[str]:
        named = [self.bos_token, self.eos_token, self.unk_token, self.pad_token, *self.additional_special_tokens]
        return [t for t in named if t]

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (largest id + 1)."""
        return self._backend.vocab_size

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def bos_id(self) -> int | None:
        return self.token_to_id(self.bos_token) if self.bos_token else None

    @property
    def eos_id(self) -> int | None:
        return self.token_to_id(self.eos_token) if self.eos_token else None

    @property
    def pad_id(self) -> int | None:
        return self.token_to_id(self.pad_token) if self.pad_token else None

    @property
    def unk_id(self) -> int | None:
        return self.token_to_id(self.unk_token) if self.unk_token else None

    def add_special_tokens(self, contents: Sequence[str]) -> list[int]:
        """Add special tokens (kept whole when encoding, listed as additional special tokens); returns their ids.

        Args:
            contents: the tokens' strings; ones already present keep their ids.
        """
        ids = []
        for content in contents:
            self._backend.add_special(content)
            if content not in self.additional_special_tokens:
                self.additional_special_tokens.append(content)
            token_id = self.token_to_id(content)
            assert token_id is not None
            ids.append(token_id)
        self._special_cache = None
        return ids

    @property
    def added_tokens(self) -> dict[str, int]:
        """All added tokens (special or not): content -> id."""
        return {tok.content: i for i, tok in sorted(self._backend.added.items())}

    @property
    def special_ids(self) -> set[int]:
        """Ids dropped by `decode(..., skip_special_tokens=True)`."""
        return set(self._special_ids())

    def _special_ids(self) -> frozenset[int]:
        # Cached: decode(skip_special_tokens=True) runs twice per token when streaming.
        key = (tuple(self._named_contents()), len(self._backend.added), self._backend.vocab_size)
        if self._special_cache is None or self._special_cache[0] != key:
            ids = {i for i, tok in self._backend.added.items() if tok.special}
            for content in self._named_contents():
                i = self.token_to_id(content)
                if i is not None:
                    ids.add(i)
            self._special_cache = (key, frozenset(ids))
        return self._special_cache[1]

    @property
    def backend_kind(self) -> str:
        """ "sentencepiece" or "tokenizers"."""
        return self._backend.kind

    def token_to_id(self, token: str) -> int | None:
        """The id of a token (an added token's content or a raw vocabulary entry), or None."""
        return self._backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """The token for an id (an added token's content or the raw vocabulary entry), or None."""
        return self._backend.id_to_token(int(token_id))

    # ------------------------------------------------------------------ encode / decode

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`.

        Args:
            text: The text; added tokens written in it (e.g. `<|im_start|>`) become their ids.
            add_special_tokens: Add BOS / EOS as `add_bos` / `add_eos` say. A BOS (EOS) already at the
                start (end) of the text is not added twice.

        Returns:
            The ids.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() expects a str, got {type(text).__name__}")
        ids = self._backend.encode(text)
        if add_special_tokens:
            before, after = self._bos_eos(ids)
            if before or after:
                ids = before + ids + after
        return ids

    def encode_text(self, text: str) -> list[int]:
        """Token ids of `text` as plain text: added tokens written in it (`<|im_end|>`, ...) stay text.

        This is how untrusted text (a chat message's content) is tokenized, so that it can never
        produce a control token.

        Raises:
            PuyuError: the tokenizer cannot spell the text without an added token (a SentencePiece
                model without byte fallback whose own pieces carry a control token's surface).
        """
        if not isinstance(text, str):
            raise TypeError(f"encode_text() expects a str, got {type(text).__name__}")
        ids = self._backend.encode_plain(text)
        added = self._backend.added
        if any(i in added for i in ids):
            raise PuyuError("this tokenizer cannot encode the text without producing a control token")
        return ids

    def encode_with_offsets(self, text: str, add_special_tokens: bool = False) -> tuple[list[int], Offsets]:
        """Token ids of `text` with the character span `(start, end)` in `text` of each.

        Useful to turn character spans (e.g. assistant turns of a rendered chat) into token label masks.
        Byte pieces that together spell one character share it: SentencePiece gives the last of them the
        character's span and the others an empty span at its start; byte-level BPE gives each the whole
        character.

        Args:
            text: The text.
            add_special_tokens: As in `encode`; an added BOS gets `(0, 0)`, an added EOS `(len, len)`.

        Returns:
            `(ids, offsets)` of equal length.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode_with_offsets() expects a str, got {type(text).__name__}")
        ids, offsets = self._backend.encode_with_offsets(text)
        if add_special_tokens:
            before, after = self._bos_eos(ids)
            if before or after:
                ids = before + ids + after
                offsets = [(0, 0)] * len(before) + offsets + [(len(text), len(text))] * len(after)
        return ids, offsets

    def _bos_eos(self, ids: list[int]) -> tuple[list[int], list[int]]:
        before: list[int] = []
        after: list[int] = []
        if self.add_bos:
            bos = self.bos_id
            if bos is not None and not (ids and ids[0] == bos):
                before.append(bos)
        if self.add_eos:
            eos = self.eos_id
            if eos is not None and not (ids and ids[-1] == eos):
                after.append(eos)
        return before, after

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for (OpenAI's logprob `bytes`): its text's UTF-8 when it decodes to
        whole characters alone, else the raw bytes of its byte piece (part of a multi-byte character)."""
        text = self.decode([token_id])
        if "\ufffd" not in text:
            return text.encode("utf-8")
        raw = piece_bytes(self.id_to_token(token_id) or "")
        return raw if raw is not None else text.encode("utf-8")

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of token ids.

        Args:
            ids: Token ids (a list, tuple, numpy array or 1-D tensor). Ids outside the vocabulary (e.g.
                padded embedding rows) decode to nothing.
            skip_special_tokens: Drop the ids in `special_ids`.

        Returns:
            The text; an incomplete or invalid UTF-8 byte sequence shows as U+FFFD.
        """
        tolist = getattr(ids, "tolist", None)
        id_list = [int(i) for i in (tolist() if tolist is not None else ids)]
        return self._backend.decode(id_list, self._special_ids() if skip_special_tokens else None)

    def __repr__(self) -> str:
        return (
            f"Tokenizer({self.backend_kind}, vocab_size={self.vocab_size}, bos={self.bos_token!r}, "
            f"eos={self.eos_token!r}, added_tokens={len(self._backend.added)})"
        )


class _SpecialTokens(NamedTuple):
    named: dict[str, str | None]  # files.NAMED_TOKENS -> content or None
    additional: list[str]
    add_bos: bool
    add_eos: bool


def _special_tokens(backend: Backend, config: Mapping[str, Any], special_map: Mapping[str, Any]) -> _SpecialTokens:
    """The named special tokens and BOS/EOS handling of a loaded folder.

    A token comes from tokenizer_config.json, else special_tokens_map.json, else the backend's own. For
    BOS/EOS the config decides where it says; SentencePiece otherwise follows LlamaTokenizer (BOS yes,
    EOS no); tokenizer.json otherwise follows its post-processor.
    """
    named: dict[str, str | None] = {}
    for key in files.NAMED_TOKENS:
        if key in config:
            named[key] = files.token_content(config[key])
        elif key in special_map:
            named[key] = files.token_content(special_map[key])
        else:
            named[key] = backend.default_token(key)
    additional = files.additional_tokens(config) or files.additional_tokens(special_map)

    add_bos = config.get("add_bos_token")
    add_eos = config.get("add_eos_token")
    if isinstance(backend, HFBackend):
        before, after = backend.post_processor_extras()
        if add_bos is None:
            add_bos = len(before) == 1 and (
                named["bos_token"] is None or backend.token_to_id(named["bos_token"]) == before[0]
            )
            if add_bos and named["bos_token"] is None:
                named["bos_token"] = backend.id_to_token(before[0])
        if add_eos is None:
            add_eos = len(after) == 1 and (
                named["eos_token"] is None or backend.token_to_id(named["eos_token"]) == after[0]
            )
            if add_eos and named["eos_token"] is None:
                named["eos_token"] = backend.id_to_token(after[0])
    else:
        add_bos = named["bos_token"] is not None if add_bos is None else add_bos
        add_eos = False if add_eos is None else add_eos
    return _SpecialTokens(named, additional, bool(add_bos), bool(add_eos))
