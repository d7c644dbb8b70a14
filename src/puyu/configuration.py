"""Typed dataclasses are the one source of configuration; YAML files and `key=value` flags map onto them.

Loading is strict: an unknown key, a wrong type or a missing required field is a one-line `PuyuError`
naming the file and the dotted key, before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from puyu.errors import PuyuError

T = TypeVar("T")


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass `cls` from plain data, checking keys and types recursively.

    Args:
        cls: a dataclass type.
        data: a mapping (from YAML/JSON).
        where: name for error messages (file and dotted path).
    """
    return _convert(cls, data, where)


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_config(cls: type[T], path: str | os.PathLike[str] | None, overrides: list[str] | None = None) -> T:
    """Read a YAML (or JSON) file into `cls`, then apply `key.sub=value` overrides.

    Args:
        cls: the dataclass to build.
        path: the file, or None to start from `cls`'s defaults.
        overrides: "dotted.key=value" strings; values parse as YAML ("3", "true", "[a, b]", "null").
    """
    import yaml

    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        file = Path(path)
        where = str(file)
        if not file.is_file():
            raise PuyuError(f"{file}: no such config file")
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as bad:
            raise PuyuError(f"{file}: not valid YAML ({' '.join(str(bad).split())})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise PuyuError(f"{file}: expected a mapping of settings at the top level")
        data = loaded or {}
    file_data = copy.deepcopy(data)
    for override in overrides or []:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise PuyuError(f"override {override!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(data, key.strip(), value)
    try:
        return from_dict(cls, data, where)
    except PuyuError as bad:
        if not overrides or path is None:
            raise
        try:  # a mistake the file makes on its own is the file's; anything else came with the overrides
            from_dict(cls, file_data, where)
        except PuyuError:
            raise bad from None
        raise PuyuError(f"override {' '.join(overrides)}: {str(bad).removeprefix(where + ': ')}") from None


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except PuyuError as error:
                errors.append(str(error))
        raise PuyuError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, where)
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise PuyuError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise PuyuError(f"{where}: expected a list, got {_describe(value)}")
        args = get_args(tp)
        item = args[0] if args else Any
        items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list or tp is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise PuyuError(f"{where}: expected a mapping, got {_describe(value)}")
        key_type, value_type = get_args(tp) or (Any, Any)
        return {
            _convert(key_type, k, f"{where}.{k}"): _convert(value_type, v, f"{where}.{k}") for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise PuyuError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PuyuError(f"{where}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        # YAML 1.1 reads `1e-3` (no dot) as a string; accept any string Python reads as a number.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise PuyuError(f"{where}: expected a number, got {_describe(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PuyuError(f"{where}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise PuyuError(f"{where}: expected a string, got {_describe(value)}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise PuyuError(f"{where}: expected a path, got {_describe(value)}")
        return Path(value)
    return value


def _convert_dataclass(cls: Any, value: Any, where: str) -> Any:
    if isinstance(value, cls):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise PuyuError(f"{where}: expected a mapping of settings, got {_describe(value)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in value:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(fields)})"
            raise PuyuError(f"{where}: unknown key {key!r}{hint}")
    kwargs = {}
    for name, field in fields.items():
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise PuyuError(f"{where}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as bad:
        raise PuyuError(f"{where}: {bad}") from None


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return f"{type(value).__name__} {text[:40]}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
