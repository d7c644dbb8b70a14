"""transformers remote code for the InternLM2 layout, copied beside the weights of every InternLM2 folder.

The files import only torch and transformers, so a folder opens with
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` on a machine without puyu.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from puyu.io import atomic_path

REMOTE_CODE_FILES = ("configuration_internlm2.py", "modeling_internlm2.py")


def write_remote_code(folder: str | Path) -> None:
    """Copy the InternLM2 configuration and modeling files into `folder` (replacing older copies)."""
    here = Path(__file__).parent
    for name in REMOTE_CODE_FILES:
        with atomic_path(Path(folder) / name) as tmp:
            shutil.copyfile(here / name, tmp)
