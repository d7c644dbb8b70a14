"""Atomic output: readers see the old file or the new one, never a half-written one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from puyu.io import atomic_path, atomic_write_text


def test_replaces_with_umask_permissions(tmp_path: Path):
    target = tmp_path / "out.json"
    old = os.umask(0o022)
    try:
        atomic_write_text(target, "one")
        atomic_write_text(target, "two")
    finally:
        os.umask(old)
    assert target.read_text() == "two"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path):
    target = tmp_path / "weights.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]
