"""YAML and key=value overrides onto typed dataclasses, strictly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from puyu.configuration import from_dict, load_config, to_dict
from puyu.errors import PuyuError


@dataclass
class Inner:
    threshold: float = 0.5
    enabled: bool = True
    words: list[str] = field(default_factory=list)


@dataclass
class Outer:
    output: str
    workers: int = 1
    mode: Literal["fast", "exact"] = "fast"
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)
    weights: dict[str, float] = field(default_factory=dict)


def test_yaml_and_overrides(tmp_path: Path):
    file = tmp_path / "c.yaml"
    file.write_text("output: out\nworkers: 2\ninner:\n  threshold: 1\n  words: [a, b]\nweights: {web: 2}\n")
    config = load_config(Outer, file, ["inner.enabled=false", "limit=7", "mode=exact"])
    assert config == Outer(
        output="out", workers=2, mode="exact", limit=7, inner=Inner(1.0, False, ["a", "b"]), weights={"web": 2.0}
    )
    assert isinstance(config.inner.threshold, float)
    assert from_dict(Outer, to_dict(config)) == config


def test_exponent_without_a_dot_is_a_number():
    # YAML 1.1 reads 1e-3 as a string; a float setting takes it, a bad string still fails.
    assert load_config(Outer, None, ["output=x", "inner.threshold=1e-3"]).inner.threshold == 1e-3
    with pytest.raises(PuyuError, match=r"inner\.threshold: expected a number, got str"):
        load_config(Outer, None, ["output=x", "inner.threshold=high"])


def test_defaults_without_a_file():
    assert load_config(Outer, None, ["output=x"]) == Outer(output="x")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"output": "o", "wrkers": 2}, r"c\.yaml: unknown key 'wrkers' \(did you mean 'workers'\?\)"),
        ({"output": "o", "workers": "two"}, r"c\.yaml\.workers: expected an integer, got str"),
        ({"output": "o", "workers": True}, r"c\.yaml\.workers: expected an integer"),
        ({"output": "o", "inner": {"enabled": "yes"}}, r"c\.yaml\.inner\.enabled: expected true or false"),
        ({"output": "o", "inner": {"words": "a"}}, r"c\.yaml\.inner\.words: expected a list"),
        ({"output": "o", "mode": "slow"}, r"c\.yaml\.mode: 'slow' is not one of 'fast', 'exact'"),
        ({"workers": 2}, r"c\.yaml: missing required key 'output'"),
        ({"output": "o", "inner": 3}, r"c\.yaml\.inner: expected a mapping of settings"),
    ],
)
def test_errors_name_the_key(data: dict, message: str):
    with pytest.raises(PuyuError, match=message):
        from_dict(Outer, data, "c.yaml")


def test_file_errors(tmp_path: Path):
    with pytest.raises(PuyuError, match="no such config file"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("output: [unclosed\n")
    with pytest.raises(PuyuError, match=r"bad\.yaml: not valid YAML"):
        load_config(Outer, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(PuyuError, match="mapping of settings at the top level"):
        load_config(Outer, listy)
    with pytest.raises(PuyuError, match="expected key=value"):
        load_config(Outer, None, ["output"])
