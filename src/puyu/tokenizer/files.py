"""The files of a tokenizer folder, as transformers lays them out: finding the backend file, reading the
side files (tokenizer_config.json, special_tokens_map.json, added_tokens.json, chat_template.jinja) and
writing them back."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from puyu.errors import PuyuError, one_line
from puyu.io import atomic_write_bytes, atomic_write_text
from puyu.tokenizer.special_tokens import AddedToken

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_MODEL = "tokenizer.model"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
ADDED_TOKENS = "added_tokens.json"
CHAT_TEMPLATE = "chat_template.jinja"

NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")
# Keys of tokenizer_config.json that `Tokenizer` writes itself; everything else is carried over as is.
MANAGED_KEYS = {
    "add_bos_token",
    "add_eos_token",
    "added_tokens_decoder",
    "additional_special_tokens",
    "chat_template",
    *NAMED_TOKENS,
}


# ---------------------------------------------------------------------- reading


@dataclass(frozen=True)
class FolderFiles:
    """What a tokenizer folder holds, read and checked.

    Attributes:
        folder: The folder.
        tokenizer_file: The backend file to load: tokenizer.json or tokenizer.model.
        config: tokenizer_config.json ({} when absent).
        special_tokens_map: special_tokens_map.json ({} when absent).
        added_tokens: The added tokens declared by tokenizer_config.json and added_tokens.json.
    """

    folder: Path
    tokenizer_file: Path
    config: dict[str, Any]
    special_tokens_map: dict[str, Any]
    added_tokens: list[AddedToken]


def read_folder(path: str | os.PathLike[str]) -> FolderFiles:
    """Find the backend file of a model folder (or take the one named) and read the JSON side files.

    `tokenizer.json` wins when the folder has both tokenizer files.

    Raises:
        PuyuError: The folder is missing, has no tokenizer file, or a side file is malformed.
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
    return FolderFiles(folder, forced, config, special_map, _config_added_tokens(folder, config, added_json))


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PuyuError(f"{path}: cannot read ({one_line(e)})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise PuyuError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def _read_json_object(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise PuyuError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


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
    specials = set(additional_tokens(config))
    for content, token_id in added_json.items():
        if not isinstance(token_id, int):
            raise PuyuError(f"{folder / ADDED_TOKENS}: id of {content!r} is not an integer")
        if token_id not in tokens:
            tokens[token_id] = AddedToken(content=content, id=token_id, special=content in specials)
    return list(tokens.values())


def token_content(value: Any) -> str | None:
    """A special token as written in a config: a string, an AddedToken dict, or null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def additional_tokens(config: Mapping[str, Any]) -> list[str]:
    """The further special tokens a config names ("additional_special_tokens" or "extra_special_tokens")."""
    for key in ("additional_special_tokens", "extra_special_tokens"):
        value = config.get(key)
        if isinstance(value, Mapping):
            value = list(value.values())
        if isinstance(value, list):
            contents = [token_content(v) for v in value]
            return [c for c in contents if c]
    return []


def read_chat_template(folder: Path, config: Mapping[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
    """The chat template: tokenizer_config.json "chat_template" (str, or named list), else chat_template.jinja.

    Returns:
        `(template, named_list)`: the default template (or None) and, when the config has a list of named
        templates, that list (written back by `chat_template_value`).
    """
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
            raise PuyuError(f"{jinja}: cannot read ({one_line(e)})") from None
    return None, None


# ---------------------------------------------------------------------- writing


def chat_template_value(template: str | None, named: list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
    """The "chat_template" entry of tokenizer_config.json for what `read_chat_template` returned (None: no entry)."""
    if template is None:
        return named
    if named is None:
        return template
    others = [t for t in named if t.get("name") != "default"]
    return [{"name": "default", "template": template}, *others]


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def copy_remote_code(source: Path, config: Mapping[str, Any], folder: Path) -> None:
    """Copy the Python files the config's `auto_map` names for AutoTokenizer from `source` to `folder`.

    Entries that point into another repository ("repo--module.Class") and files already in `folder`
    are left alone.
    """
    auto_map = config.get("auto_map")
    entries = auto_map.get("AutoTokenizer") if isinstance(auto_map, Mapping) else None
    if isinstance(entries, str):
        entries = [entries]
    for entry in entries or []:
        if not isinstance(entry, str) or "." not in entry or "--" in entry:
            continue
        name = entry.rsplit(".", 1)[0] + ".py"
        src, dst = source / name, folder / name
        if src.is_file() and not dst.exists():
            atomic_write_bytes(dst, src.read_bytes())
