"""The SentencePiece backend (`tokenizer.model`), with added tokens split out of the text before it runs.

InternLM2's chat tokens are *not* pieces of its `tokenizer.model` (ids 92538-92543 are `[UNUSED_TOKEN_*]`
placeholders there), so they are matched in the text first and decode to their content. With byte
fallback and an identity normalizer, `decode(encode(text)) == text` exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from puyu.errors import PuyuError, one_line
from puyu.tokenizer.backend import Offsets
from puyu.tokenizer.files import TOKENIZER_MODEL
from puyu.tokenizer.special_tokens import ADDED, LITERAL, AddedToken, AddedTokenSplitter


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


class SentencePieceBackend:
    """A SentencePiece model plus the added tokens that are split out of the text before it runs."""

    kind = "sentencepiece"
    file_name = TOKENIZER_MODEL
    tokenizer_class = "LlamaTokenizer"

    def __init__(self, model_proto: bytes, source: str) -> None:
        import sentencepiece as spm

        set_level = getattr(spm, "set_min_log_level", None)
        if set_level is not None:
            set_level(2)  # InternLM2's model makes SentencePiece warn about a "\0" piece on every load
        try:
            sp = spm.SentencePieceProcessor()
            sp.LoadFromSerializedProto(model_proto)
        except Exception as e:
            raise PuyuError(f"{source}: not a valid SentencePiece model ({one_line(e)})") from None
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
        self.added: dict[int, AddedToken] = {}
        self._by_content: dict[str, AddedToken] = {}
        self.vocab_size = self._pieces
        self._rebuild()

    @classmethod
    def from_file(cls, path: Path) -> SentencePieceBackend:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise PuyuError(f"{path}: cannot read ({one_line(e)})") from None
        return cls(data, str(path))

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
        # Plain text: added tokens are not matched; one whose surface is also a raw piece (which SentencePiece
        # itself would produce from the text) is spelled as byte pieces instead.
        own_pieces = {
            content
            for content in self._by_content
            if (i := self.piece_id(content)) is not None and not self._sp.is_control(i)
        }
        self._plain_splitter = AddedTokenSplitter((), literals | own_pieces) if self._can_escape else None
        self.vocab_size = max([self._pieces, *(i + 1 for i in self.added)])

    def _is_shadowed(self, tok: AddedToken) -> bool:
        sp, i = self._sp, tok.id
        if not 0 <= i < self._pieces:
            return False
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i):
            return False
        return sp.id_to_piece(i) != tok.content

    def add_tokens(self, tokens: Iterable[AddedToken]) -> None:
        for token in tokens:
            self._by_content[token.content] = token
            self.added[token.id] = token
        self._rebuild()

    def add_special(self, content: str) -> None:
        if content in self._by_content:
            return
        # A raw piece with that exact surface keeps its id; anything else gets the next free one.
        piece = self.piece_id(content)
        token_id = piece if piece is not None else self.vocab_size
        self.add_tokens([AddedToken(content=content, id=token_id, special=True)])

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

    def encode_plain(self, text: str) -> list[int]:
        """Ids of `text` read as plain text: added tokens written in it are not matched."""
        if self._plain_splitter is None:
            return list(self._sp.encode(text))  # no byte pieces to spell them with; the caller checks
        ids: list[int] = []
        for seg in self._plain_splitter.split(text):
            if seg.kind == LITERAL:
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
        added = self.added
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
        tok = self.added.get(token_id)
        if tok is not None:
            return tok.content
        return self._sp.id_to_piece(token_id) if 0 <= token_id < self._pieces else None

    def serialize(self, add_bos: bool, bos_id: int | None, add_eos: bool, eos_id: int | None) -> bytes:
        # BOS/EOS go in tokenizer_config.json: the model file has no say in them.
        return self._proto
