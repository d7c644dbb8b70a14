"""Checkpoint folders on disk: published atomically with a manifest, verified, listed and pruned.

A folder is built under a hidden temporary name beside its final one (`.tmp-<what>@<host>.<pid>`), its files
and itself fsynced, then renamed: a kill -9 at any moment leaves either no `step-*` folder or a complete one.
The manifest (`checkpoint.json`) records the size of every file, so a folder damaged afterwards (a partial
copy, a truncated file) is recognised too. What goes into a folder is `puyu.train.checkpoint`'s business.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from puyu.errors import PuyuError, one_line

CHECKPOINTS = "checkpoints"
MANIFEST = "checkpoint.json"
FORMAT = "puyu-train-checkpoint"

_STEP_RE = re.compile(r"^step-(\d+)$")
_TEMP_PREFIX = ".tmp-"  # hidden: `step-*` globs never see temporary folders
_TEMP_RE = re.compile(r"^\.tmp-.*@(?P<host>.+)\.(?P<pid>\d+)$")


def step_folder(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def step_folders(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every `step-*` folder under `root`, oldest first (complete or not)."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_RE.match(p.name)) and p.is_dir()]
    return sorted(found)


def _temp_name(what: str) -> str:
    return f"{_TEMP_PREFIX}{what}@{socket.gethostname()}.{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(root: Path, *, any_host: bool) -> None:
    """Delete temporary folders left by a crashed save: those of dead processes on this machine, and with
    `any_host` (the run's writer is saving, so no one else may be) those of other machines too."""
    if not root.is_dir():
        return
    host = socket.gethostname()
    for entry in root.iterdir():
        match = _TEMP_RE.match(entry.name)
        if not match or not entry.is_dir():
            continue
        pid = int(match["pid"])
        ours = match["host"] == host
        if (ours and pid != os.getpid() and not _alive(pid)) or (not ours and any_host):
            shutil.rmtree(entry, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    # Directories are opened read-only for fsync; files must have reached the disk before the rename.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_folder(final: Path, manifest: dict[str, Any]) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; on success it gets the manifest and becomes `final`.

    An existing `final` (the same step saved again) is moved aside first and deleted after, never before.
    On error the temporary folder is removed and `final` is left as it was.

    Args:
        final: the folder to publish.
        manifest: fields recorded in `checkpoint.json` besides `format`, `version` and the file sizes.
    """
    root = final.parent
    temp = root / _temp_name(final.name)
    temp.mkdir()
    replaced: Path | None = None
    try:
        yield temp
        files = {p.name: p.stat().st_size for p in sorted(temp.iterdir())}
        for name in files:  # safetensors creates 0600 files; run folders are shared like model folders
            (temp / name).chmod(0o666 & ~_umask())
        record = {"format": FORMAT, "version": 1, **manifest, "files": files}
        (temp / MANIFEST).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        for name in [*files, MANIFEST]:
            _fsync(temp / name)
        _fsync(temp)
        if final.exists():
            replaced = root / _temp_name(f"replaced-{final.name}")
            os.replace(final, replaced)
        os.replace(temp, final)
        _fsync(root)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


def prune(root: Path, keep: int, just_written: Path) -> None:
    """Delete all but the newest `keep` step folders, `just_written` always among those kept (0 keeps all)."""
    if keep <= 0:
        return
    others = [path for _, path in step_folders(root) if path != just_written]
    for old in others[: max(len(others) - (keep - 1), 0)]:
        # Renamed before deletion: a crash mid-delete must not leave a partial folder named step-*.
        doomed = root / _temp_name(f"pruned-{old.name}")
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def verify_checkpoint(folder: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The manifest of a complete checkpoint folder, after checking every file it lists is there in full.

    Args:
        folder: a `step-*` checkpoint folder.
        required: files the manifest must list.

    Raises:
        PuyuError: the folder, its manifest or a file is missing, or a file has the wrong size.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PuyuError(f"{folder}: no such checkpoint folder")
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise PuyuError(f"{folder}: not a complete training checkpoint (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as bad:
        raise PuyuError(f"{manifest_file}: not a valid checkpoint manifest ({one_line(bad)})") from None
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            raise PuyuError(f"{path}: missing from the checkpoint")
        if path.stat().st_size != size:
            raise PuyuError(f"{path}: corrupt ({path.stat().st_size} bytes, {MANIFEST} says {size})")
    for name in required:
        if name not in files:
            raise PuyuError(f"{manifest_file}: lists no {name}")
    return manifest
