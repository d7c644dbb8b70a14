"""Which files a list of inputs (files, folders, globs) names, and which reader each file needs."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from ...errors import PuyuError
from ..document import Tally

SUPPORTED_SUFFIXES: tuple[str, ...] = (
    ".txt",
    ".md",
    ".jsonl",
    ".json",
    ".jsonl.gz",
    ".json.gz",
    ".jsonl.zst",
    ".json.zst",
    ".parquet",
    ".csv",
    ".html",
    ".htm",
    ".pdf",
)
# Longest first, so "x.jsonl.gz" is ".jsonl.gz" and not ".gz".
_BY_LENGTH = sorted(SUPPORTED_SUFFIXES, key=len, reverse=True)
_GLOB_CHARACTERS = frozenset("*?[")


def suffix_of(path: Path) -> str | None:
    """The supported suffix the file name ends with (case-insensitive), or None."""
    name = path.name.lower()
    return next((suffix for suffix in _BY_LENGTH if name.endswith(suffix) and len(name) > len(suffix)), None)


def _files_in_folder(folder: Path, tally: Tally) -> list[Path]:
    """The supported files under `folder`. Symbolic links to files are read; links to folders are not
    followed (a link loop would never end) and, like broken links, are counted as problems."""
    found = []
    for root, folders, files in os.walk(folder):
        here = Path(root)
        # Hidden files and folders (.git, .DS_Store, editor swap files) are not corpus content.
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in folders:
            if (here / name).is_symlink():
                tally.problem(str(here / name), None, "symbolic link to a folder, not followed")
        for name in sorted(files):
            path = here / name
            if name.startswith("."):
                continue
            if not path.is_file():
                kind = "broken or looping symbolic link" if path.is_symlink() else "not a regular file"
                tally.problem(str(path), None, kind)
            elif suffix_of(path) is None:
                tally.problem(str(path), None, f"unknown extension: {path.name}")
            else:
                found.append(path)
    return sorted(found)


def _files_of(entry: str, tally: Tally) -> list[Path]:
    path = Path(entry)
    if path.is_file():
        if suffix_of(path) is None:
            raise PuyuError(f"{entry}: unsupported file type (supported: {', '.join(SUPPORTED_SUFFIXES)})")
        return [path]
    if path.is_dir():
        return _files_in_folder(path, tally)
    if _GLOB_CHARACTERS.isdisjoint(entry):
        raise PuyuError(f"{entry}: no such file or folder")
    found: list[Path] = []
    for match in sorted(glob.glob(entry, recursive=True)):
        matched = Path(match)
        if matched.is_dir():
            found.extend(_files_in_folder(matched, tally))
        elif suffix_of(matched) is None:
            tally.problem(match, None, f"unknown extension: {matched.name}")
        else:
            found.append(matched)
    return found


def expand_inputs(inputs: Sequence[str | os.PathLike[str]], tally: Tally | None = None) -> list[Path]:
    """The input files named by files, folders (searched recursively) and glob patterns.

    Files in folders and glob matches whose extension no reader handles are counted as problems
    ("unknown extension: <name>"); hidden files and folders are skipped. A file with such an extension named
    directly is an error, since the user asked for it.

    Args:
        inputs: paths of files or folders, or glob patterns ("data/**/*.jsonl.gz").
        tally: where unknown extensions are counted (a throwaway tally when None).

    Returns:
        The files, sorted by path and without duplicates (the same file reached twice counts once).

    Raises:
        PuyuError: an input that names no readable file, or no inputs at all.
    """
    tally = tally if tally is not None else Tally()
    if not inputs:
        raise PuyuError("no inputs given: name files, folders or glob patterns to read")
    by_real_path: dict[str, Path] = {}
    for entry in inputs:
        entry = os.fspath(entry)
        files = _files_of(entry, tally)
        if not files:
            raise PuyuError(f"{entry}: no readable files (supported: {', '.join(SUPPORTED_SUFFIXES)})")
        for file in files:
            by_real_path.setdefault(os.path.realpath(file), file)
    return sorted(by_real_path.values(), key=str)
