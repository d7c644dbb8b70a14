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

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from puyu.errors import PuyuError
from puyu.tokenizer.special_tokens import ADDED, LITERAL, AddedToken, AddedTokenSplitter

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_MODEL = "tokenizer.model"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
ADDED_TOKENS = "added_tokens.json"
CHAT_TEMPLATE = "chat_template.jinja"

_NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")
# Keys of tokenizer_config.json that this class writes itself; everything else is carried over as is.
_MANAGED_KEYS = {
    "add_bos_token",
    "add_eos_token",
    "added_tokens_decoder",
    "additional_special_tokens",
    "chat_template",
    *_NAMED_TOKENS,
}

Offsets = list[tuple[int, int]]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _token_content(value: Any) -> str | None:
    """A special token as written in a config: a string, an AddedToken dict, or null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PuyuError(f"{path}: cannot read ({_one_line(e)})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise PuyuError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def _read_json_object(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise PuyuError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file next to `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; model folders are usually shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _byte_to_char_maps(text: str) -> tuple[list[int], list[int]] | None:
    """Maps from UTF-8 byte offsets in `text` to character offsets (rounding down, rounding up).

    Returns None when the text is ASCII (byte offsets are character offsets).
    """
    n_bytes = len(text.encode("utf-8"))
    if n_bytes == len(text):
        return None
    floor = [0] * (n_bytes + 1)
    ceil = [0] * (n_bytes + 1)
    b = 0
    for c, ch in enumerate(text):
        cp = ord(ch)
        width = 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
        floor[b] = ceil[b] = c
        for k in range(1, width):
            floor[b + k] = c
            ceil[b + k] = c + 1
        b += width
    floor[n_bytes] = ceil[n_bytes] = len(text)
    return floor, ceil


class _SentencePieceBackend:
    """A SentencePiece model plus the added tokens that are split out of the text before it runs."""

    file_name = TOKENIZER_MODEL

    def __init__(self, model_proto: bytes, source: str) -> None:
        import sentencepiece as spm

        set_level = getattr(spm, "set_min_log_level", None)
        if set_level is not None:
            set_level(2)  # InternLM2's model makes SentencePiece warn about a "\0" piece on every load
        try:
            sp = spm.SentencePieceProcessor()
            sp.LoadFromSerializedProto(model_proto)
        except Exception as e:
            raise PuyuError(f"{source}: not a valid SentencePiece model ({_one_line(e)})") from None
        finally:
            if set_level is not None:
                set_level(0)
        self._sp = sp
        self._proto = model_proto
        self._pieces = sp.get_piece_size()
        byte_ids = [sp.piece_to_id(f"<0x{b:02X}>") for b in range(256)]
        self._byte_ids: list[int] | None = byte_ids if all(sp.is_byte(i) for i in byte_ids) else None
        # Protected literals are spelled as byte pieces, cutting the text around them. That needs byte
        # fallback, and no dummy prefix (which SentencePiece would insert again after every cut).
        first = sp.encode("a", out_type=str)
        self._can_escape = self._byte_ids is not None and not (first and first[0].startswith("\u2581"))
        # With whitespace escaping a literal "▁" in the text decodes as a space; spelled as bytes it
        # round-trips exactly.
        self._escape_meta = self._can_escape and sp.decode(sp.encode("\u2581")) != "\u2581"
        self._added: dict[int, AddedToken] = {}
        self._by_content: dict[str, AddedToken] = {}
        self._size = self._pieces
        self._rebuild()

    def _rebuild(self) -> None:
        literals: set[str] = set()
        if self._can_escape:
            if self._escape_meta:
                literals.add("\u2581")
            for tok in self._by_content.values():
                if self._is_shadowed(tok):
                    # e.g. InternLM2's "[UNUSED_TOKEN_146]" piece sits under <|im_start|>: typed as
                    # plain text it must not come out as the chat token.
                    literals.add(self._sp.id_to_piece(tok.id).replace("\u2581", " "))
        self._splitter = AddedTokenSplitter(self._by_content.values(), literals)
        self._size = max([self._pieces, *(i + 1 for i in self._added)])

    def _is_shadowed(self, tok: AddedToken) -> bool:
        sp, i = self._sp, tok.id
        if not 0 <= i < self._pieces:
            return False
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i):
            return False
        return sp.id_to_piece(i) != tok.content

    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def added(self) -> dict[int, AddedToken]:
        return self._added

    def add_token(self, token: AddedToken) -> int:
        self._by_content[token.content] = token
        self._added[token.id] = token
        self._rebuild()
        return token.id

    def add_tokens(self, tokens: Iterable[AddedToken]) -> None:
        for token in tokens:
            self._by_content[token.content] = token
            self._added[token.id] = token
        self._rebuild()

    def piece_id(self, piece: str) -> int | None:
        """The id of a raw SentencePiece piece (not of an added token)."""
        i = self._sp.piece_to_id(piece)
        return i if 0 <= i < self._pieces and self._sp.id_to_piece(i) == piece else None

    def default_token(self, which: str) -> str | None:
        """The model's own piece for `which` ("bos_token", "eos_token", "unk_token" or "pad_token")."""
        sp = self._sp
        getters = {"bos_token": sp.bos_id, "eos_token": sp.eos_id, "unk_token": sp.unk_id, "pad_token": sp.pad_id}
        i = getters[which]()
        return sp.id_to_piece(i) if 0 <= i < self._pieces else None

    def has_added(self, content: str) -> bool:
        return content in self._by_content

    def _literal_ids(self, literal: str) -> list[int]:
        assert self._byte_ids is not None
        return [self._byte_ids[b] for b in literal.encode("utf-8")]

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for seg in self._splitter.split(text):
            if seg.kind == ADDED:
                assert seg.token_id is not None
                ids.append(seg.token_id)
            elif seg.kind == LITERAL:
                ids.extend(self._literal_ids(text[seg.start : seg.end]))
            else:
                ids.extend(self._sp.encode(text[seg.start : seg.end]))
        return ids

    def _encode_proto(self, text: str) -> Any:
        immutable = getattr(self._sp, "encode_as_immutable_proto", None)
        if immutable is not None:
            return immutable(text)
        try:
            return self._sp.encode(text, out_type="proto")
        except ImportError:
            raise PuyuError(
                "SentencePiece offsets need the protobuf package with this sentencepiece version (pip install protobuf)"
            ) from None

    def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]:
        ids: list[int] = []
        offsets: Offsets = []
        for seg in self._splitter.split(text):
            if seg.kind == ADDED:
                assert seg.token_id is not None
                ids.append(seg.token_id)
                offsets.append((seg.start, seg.end))
            elif seg.kind == LITERAL:
                # Byte pieces follow SentencePiece's convention: the last byte of a character carries
                # the character's span, the bytes before it an empty span at its start.
                for c, ch in enumerate(text[seg.start : seg.end], start=seg.start):
                    byte_ids = self._literal_ids(ch)
                    ids.extend(byte_ids)
                    offsets.extend([(c, c)] * (len(byte_ids) - 1) + [(c, c + 1)])
            else:
                part = text[seg.start : seg.end]
                maps = _byte_to_char_maps(part)
                for piece in self._encode_proto(part).pieces:
                    begin, end = piece.begin, piece.end
                    if maps is not None:
                        begin, end = maps[0][begin], maps[1][end]
                    ids.append(piece.id)
                    offsets.append((seg.start + begin, seg.start + end))
        return ids, offsets

    def decode(self, ids: list[int], skip_ids: AbstractSet[int] | None) -> str:
        parts: list[str] = []
        run: list[int] = []
        added = self._added
        for i in ids:
            tok = added.get(i)
            if tok is not None:
                # Added tokens decode to their content, never to the piece under them; the pieces on
                # either side are decoded as separate runs, exactly as they were encoded.
                if run:
                    parts.append(self._sp.decode(run))
                    run = []
                if skip_ids is None or i not in skip_ids:
                    parts.append(tok.content)
            elif 0 <= i < self._pieces and (skip_ids is None or i not in skip_ids):
                run.append(i)
            # Anything else is outside the vocabulary (e.g. padded embedding rows): nothing to show.
        if run:
            parts.append(self._sp.decode(run))
        return "".join(parts)

    def token_to_id(self, token: str) -> int | None:
        tok = self._by_content.get(token)
        return tok.id if tok is not None else self.piece_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        tok = self._added.get(token_id)
        if tok is not None:
            return tok.content
        return self._sp.id_to_piece(token_id) if 0 <= token_id < self._pieces else None

    def serialize(self) -> bytes:
        return self._proto


class _HFBackend:
    """A Hugging Face `tokenizers.Tokenizer`; it splits its own added tokens."""

    file_name = TOKENIZER_JSON

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        # The model's own vocabulary never changes; only added tokens do.
        model_vocab = tokenizer.get_vocab(with_added_tokens=False)
        self._model_size = max(model_vocab.values(), default=-1) + 1
        self._refresh()

    def _refresh(self) -> None:
        self._added = {
            i: AddedToken(
                content=t.content,
                id=i,
                special=t.special,
                lstrip=t.lstrip,
                rstrip=t.rstrip,
                single_word=t.single_word,
                normalized=t.normalized,
            )
            for i, t in self._tok.get_added_tokens_decoder().items()
        }
        self._size = max([self._model_size, *(i + 1 for i in self._added)])

    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def added(self) -> dict[int, AddedToken]:
        return self._added

    def add_token(self, token: AddedToken) -> int:
        from tokenizers import AddedToken as HFAddedToken

        existing = self._tok.token_to_id(token.content)
        if existing is not None and existing in self._added:
            return existing
        hf_token = HFAddedToken(
            token.content,
            single_word=token.single_word,
            lstrip=token.lstrip,
            rstrip=token.rstrip,
            normalized=token.normalized,
            special=token.special,
        )
        if token.special:
            self._tok.add_special_tokens([hf_token])
        else:
            self._tok.add_tokens([hf_token])
        self._refresh()
        new_id = self._tok.token_to_id(token.content)
        assert new_id is not None
        return new_id

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]:
        enc = self._tok.encode(text, add_special_tokens=False)
        return enc.ids, [(int(s), int(e)) for s, e in enc.offsets]

    def decode(self, ids: list[int], skip_ids: AbstractSet[int] | None) -> str:
        size = self._size
        if skip_ids is None:
            keep = [i for i in ids if 0 <= i < size]
        else:
            keep = [i for i in ids if 0 <= i < size and i not in skip_ids]
        return self._tok.decode(keep, skip_special_tokens=skip_ids is not None)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        if not 0 <= token_id < self._size:
            return None
        return self._tok.id_to_token(token_id)

    def post_processor_extras(self) -> tuple[list[int], list[int]]:
        """The ids the tokenizer.json post-processor puts before and after a single sequence."""
        plain = self._tok.encode("a", add_special_tokens=False).ids
        full = self._tok.encode("a", add_special_tokens=True).ids
        for k in range(len(full) - len(plain) + 1):
            if full[k : k + len(plain)] == plain:
                return full[:k], full[k + len(plain) :]
        return [], []

    def serialize(self, add_bos: bool, bos_id: int | None, add_eos: bool, eos_id: int | None) -> bytes:
        """tokenizer.json whose post-processor adds BOS/EOS exactly as this tokenizer does.

        transformers follows the post-processor unless the config sets add_bos_token/add_eos_token, so
        the two are kept in agreement; a post-processor that already agrees is kept as it is.
        """
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import processors

        bos = self._tok.id_to_token(bos_id) if add_bos and bos_id is not None else None
        eos = self._tok.id_to_token(eos_id) if add_eos and eos_id is not None else None
        want = ([bos_id] if bos else [], [eos_id] if eos else [])
        if self.post_processor_extras() == want:
            return self._tok.to_str(pretty=True).encode("utf-8")
        tok = HFTokenizer.from_str(self._tok.to_str())
        # The same template transformers builds from add_bos_token / add_eos_token.
        single = " ".join([*([f"{bos}:0"] if bos else []), "$A:0", *([f"{eos}:0"] if eos else [])])
        second = " ".join([*([f"{bos}:1"] if bos else []), "$B:1", *([f"{eos}:1"] if eos else [])])
        specials = [(t, i) for t, i in ((bos, bos_id), (eos, eos_id)) if t is not None]
        tok.post_processor = processors.TemplateProcessing(
            single=single, pair=f"{single} {second}", special_tokens=specials
        )
        return tok.to_str(pretty=True).encode("utf-8")


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
        backend: _SentencePieceBackend | _HFBackend,
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
        self._config = {k: v for k, v in (config or {}).items() if k not in _MANAGED_KEYS}
        self._chat_template_list: list[dict[str, Any]] | None = None
        self._source = source
        self._special_cache: tuple[tuple[Any, ...], frozenset[int]] | None = None
        # Like transformers: a named special token that is not an added token yet becomes one, so that
        # it is matched in text and skipped by skip_special_tokens.
        for content in self._named_contents():
            self._ensure_added(content)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load the tokenizer of a model folder.

        Args:
            path: A folder with `tokenizer.json` (Hugging Face tokenizers) or `tokenizer.model`
                (SentencePiece), plus optional `tokenizer_config.json`, `special_tokens_map.json`,
                `added_tokens.json` and `chat_template.jinja`. `tokenizer.json` wins when both exist.
                A path to one of the two tokenizer files also works.

        Returns:
            The tokenizer.

        Raises:
            PuyuError: The folder is missing, has no tokenizer file, or a file is malformed.
        """
        folder = Path(path)
        forced: Path | None = None
        if folder.is_file() and folder.name in (TOKENIZER_JSON, TOKENIZER_MODEL):
            forced, folder = folder, folder.parent
        if not folder.exists():
            raise PuyuError(f"{folder}: no such folder")
        if not folder.is_dir():
            raise PuyuError(f"{folder}: not a folder (expected a model folder with a tokenizer)")
        json_file, model_file = folder / TOKENIZER_JSON, folder / TOKENIZER_MODEL
        if forced is None:
            forced = json_file if json_file.is_file() else model_file if model_file.is_file() else None
        if forced is None:
            raise PuyuError(f"{folder}: no tokenizer found (expected {TOKENIZER_JSON} or {TOKENIZER_MODEL})")

        config = _read_json_object(folder / TOKENIZER_CONFIG) if (folder / TOKENIZER_CONFIG).is_file() else {}
        special_map: dict[str, Any] = {}
        if (folder / SPECIAL_TOKENS_MAP).is_file():
            special_map = _read_json_object(folder / SPECIAL_TOKENS_MAP)
        added_json: dict[str, Any] = {}
        if (folder / ADDED_TOKENS).is_file():
            added_json = _read_json_object(folder / ADDED_TOKENS)
        config_tokens = _config_added_tokens(folder, config, added_json)

        backend: _SentencePieceBackend | _HFBackend
        if forced.name == TOKENIZER_JSON:
            backend = _load_hf(forced)
            for tok in sorted(config_tokens, key=lambda t: t.id):
                backend.add_token(tok)
        else:
            try:
                data = forced.read_bytes()
            except OSError as e:
                raise PuyuError(f"{forced}: cannot read ({_one_line(e)})") from None
            backend = _SentencePieceBackend(data, str(forced))
            backend.add_tokens(config_tokens)

        named: dict[str, str | None] = {}
        for key in _NAMED_TOKENS:
            if key in config:
                named[key] = _token_content(config[key])
            elif key in special_map:
                named[key] = _token_content(special_map[key])
            elif isinstance(backend, _SentencePieceBackend):
                named[key] = backend.default_token(key)
            else:
                named[key] = None
        additional = _additional_tokens(config) or _additional_tokens(special_map)

        # BOS/EOS: the config decides where it says; SentencePiece otherwise follows LlamaTokenizer
        # (BOS yes, EOS no); tokenizer.json otherwise follows its post-processor.
        add_bos = config.get("add_bos_token")
        add_eos = config.get("add_eos_token")
        if isinstance(backend, _HFBackend):
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

        template, template_list = _chat_template(folder, config)
        tokenizer = cls(
            backend,
            bos_token=named["bos_token"],
            eos_token=named["eos_token"],
            pad_token=named["pad_token"],
            unk_token=named["unk_token"],
            additional_special_tokens=additional,
            add_bos=bool(add_bos),
            add_eos=bool(add_eos),
            chat_template=template,
            config=config,
            source=folder,
        )
        tokenizer._chat_template_list = template_list
        return tokenizer

    @classmethod
    def _from_hf(cls, hf_tokenizer: Any, **kwargs: Any) -> Tokenizer:
        """Wrap an in-memory `tokenizers.Tokenizer` (used by training and the byte-level helper)."""
        return cls(_HFBackend(hf_tokenizer), **kwargs)

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
            raise PuyuError(f"{folder}: cannot create folder ({_one_line(e)})") from None
        backend = self._backend
        if isinstance(backend, _HFBackend):
            data = backend.serialize(self.add_bos, self.bos_id, self.add_eos, self.eos_id)
        else:
            data = backend.serialize()
            stale = folder / TOKENIZER_JSON
            if stale.is_file():
                stale.unlink()
        _atomic_write(folder / backend.file_name, data)
        _atomic_write(folder / TOKENIZER_CONFIG, _json_bytes(self._config_dict()))
        _atomic_write(folder / SPECIAL_TOKENS_MAP, _json_bytes(self._special_tokens_map()))
        jinja = folder / CHAT_TEMPLATE
        if jinja.is_file() and self.chat_template is not None:
            # Keep an existing chat_template.jinja in step with the config (transformers reads either).
            _atomic_write(jinja, self.chat_template.encode("utf-8"))
        self._copy_remote_code(folder)

    def _config_dict(self) -> dict[str, Any]:
        config = dict(self._config)
        config.setdefault(
            "tokenizer_class",
            "PreTrainedTokenizerFast" if isinstance(self._backend, _HFBackend) else "LlamaTokenizer",
        )
        config.setdefault("clean_up_tokenization_spaces", False)
        config["add_bos_token"] = self.add_bos
        config["add_eos_token"] = self.add_eos
        config["added_tokens_decoder"] = {str(i): tok.to_config() for i, tok in sorted(self._backend.added.items())}
        config["additional_special_tokens"] = list(self.additional_special_tokens)
        for key in _NAMED_TOKENS:
            config[key] = getattr(self, key)
        if self.chat_template is None and self._chat_template_list is not None:
            config["chat_template"] = self._chat_template_list
        elif self.chat_template is not None:
            if self._chat_template_list is not None:
                templates = [t for t in self._chat_template_list if t.get("name") != "default"]
                config["chat_template"] = [{"name": "default", "template": self.chat_template}, *templates]
            else:
                config["chat_template"] = self.chat_template
        return dict(sorted(config.items()))

    def _special_tokens_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: getattr(self, key) for key in _NAMED_TOKENS if getattr(self, key)}
        if self.additional_special_tokens:
            out["additional_special_tokens"] = list(self.additional_special_tokens)
        return out

    def _copy_remote_code(self, folder: Path) -> None:
        if self._source is None:
            return
        auto_map = self._config.get("auto_map")
        entries = auto_map.get("AutoTokenizer") if isinstance(auto_map, Mapping) else None
        if isinstance(entries, str):
            entries = [entries]
        for entry in entries or []:
            if not isinstance(entry, str) or "." not in entry or "--" in entry:
                continue
            name = entry.rsplit(".", 1)[0] + ".py"
            src, dst = self._source / name, folder / name
            if src.is_file() and not dst.exists():
                shutil.copyfile(src, dst)

    # ------------------------------------------------------------------ vocabulary

    def _named_contents(self) -> list[str]:
        named = [self.bos_token, self.eos_token, self.unk_token, self.pad_token, *self.additional_special_tokens]
        return [t for t in named if t]

    def _ensure_added(self, content: str) -> None:
        backend = self._backend
        if isinstance(backend, _SentencePieceBackend):
            if backend.has_added(content):
                return
            piece = backend.piece_id(content)
            token_id = piece if piece is not None else backend.vocab_size
            backend.add_token(AddedToken(content=content, id=token_id, special=True))
        else:
            backend.add_token(AddedToken(content=content, id=-1, special=True))

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
        return "tokenizers" if isinstance(self._backend, _HFBackend) else "sentencepiece"

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


def _load_hf(path: Path) -> _HFBackend:
    from tokenizers import Tokenizer as HFTokenizer

    try:
        tok = HFTokenizer.from_file(str(path))
    except Exception as e:
        raise PuyuError(f"{path}: not a valid tokenizer.json ({_one_line(e)})") from None
    return _HFBackend(tok)


def _config_added_tokens(folder: Path, config: Mapping[str, Any], added_json: Mapping[str, Any]) -> list[AddedToken]:
    """Added tokens declared by tokenizer_config.json and added_tokens.json."""
    tokens: dict[int, AddedToken] = {}
    decoder = config.get("added_tokens_decoder") or {}
    if not isinstance(decoder, Mapping):
        raise PuyuError(f"{folder / TOKENIZER_CONFIG}: added_tokens_decoder must be an object")
    for key, entry in decoder.items():
        try:
            token_id = int(key)
            tokens[token_id] = AddedToken.from_config(token_id, entry)
        except (ValueError, KeyError, TypeError):
            raise PuyuError(f"{folder / TOKENIZER_CONFIG}: bad added_tokens_decoder entry {key!r}: {entry!r}") from None
    specials = set(_additional_tokens(config))
    for content, token_id in added_json.items():
        if not isinstance(token_id, int):
            raise PuyuError(f"{folder / ADDED_TOKENS}: id of {content!r} is not an integer")
        if token_id not in tokens:
            tokens[token_id] = AddedToken(content=content, id=token_id, special=content in specials)
    return list(tokens.values())


def _additional_tokens(config: Mapping[str, Any]) -> list[str]:
    for key in ("additional_special_tokens", "extra_special_tokens"):
        value = config.get(key)
        if isinstance(value, Mapping):
            value = list(value.values())
        if isinstance(value, list):
            contents = [_token_content(v) for v in value]
            return [c for c in contents if c]
    return []


def _chat_template(folder: Path, config: Mapping[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
    """The chat template: tokenizer_config.json "chat_template" (str, or named list), else chat_template.jinja."""
    value = config.get("chat_template")
    if isinstance(value, str):
        return value, None
    if isinstance(value, list):
        named = [t for t in value if isinstance(t, Mapping)]
        for entry in named:
            if entry.get("name") == "default" and isinstance(entry.get("template"), str):
                return entry["template"], [dict(t) for t in named]
        return None, [dict(t) for t in named]
    jinja = folder / CHAT_TEMPLATE
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8"), None
        except (OSError, UnicodeDecodeError) as e:
            raise PuyuError(f"{jinja}: cannot read ({_one_line(e)})") from None
    return None, None
