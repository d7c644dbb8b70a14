"""How a sandboxed process is confined: which mechanism this machine allows, the command prefix and the rlimits.

Three levels, strongest first, chosen once per process:

- ``bwrap``: bubblewrap with every namespace unshared (user, PID, network, IPC, UTS, cgroup). The root is an empty
  tmpfs with only the system folders (/usr, /lib, /etc…) and the Python installation mounted read-only; home folders,
  /work, /var, /srv and the source checkout are absent; /tmp is private and the workspace (at /workspace) is the only
  writable host folder.
- ``unshare``: util-linux `unshare` with user, PID and network namespaces: no network and a private PID space, but
  the filesystem is the host's (read access as the user; writes limited only by file permissions).
- ``rlimits``: resource limits and a scrubbed environment only. Network, filesystem and other processes are reachable;
  this level is stated as weaker whenever it is used.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

WORKSPACE_MOUNT = "/workspace"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

DESCRIPTIONS = {
    "bwrap": "namespaces via bubblewrap: no network, own PID space, only system folders and the Python installation "
    "visible (read-only), home folders and source checkouts absent, only the workspace writable; rlimits on CPU, "
    "memory, processes and file size",
    "unshare": "namespaces via unshare: no network and own PID space, but the host filesystem is visible "
    "(weaker: files the user can read or write outside the workspace are reachable); rlimits on CPU, memory, "
    "processes and file size",
    "rlimits": "rlimits only (weaker: no namespaces on this machine, so network, host files and other processes "
    "are reachable); limits on CPU, memory, processes and file size, scrubbed environment, timeout kills the group",
}


@dataclass(frozen=True)
class Limits:
    """Resource limits for one kernel process.

    Args:
        cpu_seconds: CPU time for the kernel's whole life (a wall-clock timeout per call is separate).
        memory_mb: address-space limit.
        max_processes: processes the kernel may add beyond those the user already runs.
        max_file_mb: largest file the kernel may write.
    """

    cpu_seconds: int = 300
    memory_mb: int = 1024
    max_processes: int = 64
    max_file_mb: int = 64


def _probe(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_PROBES = {
    "bwrap": ["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "true"],
    "unshare": ["--user", "--map-root-user", "--net", "--pid", "--fork", "--mount-proc", "true"],
}


@functools.cache
def isolation_works(level: str) -> bool:
    """Whether `level` ("bwrap", "unshare", "rlimits") can be used on this machine (probed once per process)."""
    if level == "rlimits":
        return True
    if sys.platform != "linux" or level not in _PROBES:
        return False
    program = shutil.which(level)
    return program is not None and _probe([program, *_PROBES[level]])


def available_isolation() -> str:
    """The strongest isolation level that works on this machine."""
    return next(level for level in ("bwrap", "unshare", "rlimits") if isolation_works(level))


def _processes_of_current_user() -> int:
    uid = str(os.getuid())
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("Uid:"):
                    count += line.split()[1] == uid
                    break
        except OSError:
            continue
    return count


class PidsCgroup:
    """A cgroup with `pids.max`, for root: RLIMIT_NPROC never applies to uid 0, so a fork bomb needs this instead.

    Created under the v1 `pids` hierarchy or the v2 unified one where this process may write; `None` from `create`
    where neither works (then the limit on processes is not enforced for root, and the sandbox says so).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, max_processes: int) -> PidsCgroup | None:
        for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
            path = base / f"puyu-sandbox-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / "pids.max").write_text(str(max_processes))
                return cls(path)
            except OSError:
                path.rmdir()
        return None

    def join(self) -> None:
        """Move the calling process (and so all it will start) into the cgroup."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)  # the killed processes are still being reaped


def rlimit_setter(limits: Limits, cgroup: PidsCgroup | None = None):
    """A `preexec_fn` that applies `limits` in the child before it executes anything.

    RLIMIT_NPROC counts every process of the user, so its cap is the current count plus `max_processes`; for root,
    which RLIMIT_NPROC does not bind, the child joins `cgroup` instead.
    """
    nproc = _processes_of_current_user() + limits.max_processes if sys.platform == "linux" else None

    def apply() -> None:
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        file_size = limits.max_file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if cgroup is not None:
            cgroup.join()

    return apply


def scrubbed_environment() -> dict[str, str]:
    """The only environment a sandboxed process sees: nothing from the parent (no keys, tokens or proxies).

    HOME points at /tmp so that library caches (fontconfig, matplotlib) do not land in the workspace as artifacts.
    """
    return {
        "PATH": SAFE_PATH,
        "HOME": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }


# System folders the interpreter and its libraries need; everything else (home folders, /work, /srv, /mnt, /var, the
# source checkout) is simply absent from the sandbox's root, which bubblewrap builds on an empty tmpfs.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


def _python_dirs() -> list[Path]:
    """Folders the interpreter needs (its prefix, a virtual environment), exposed read-only."""
    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(sys.executable).resolve().parent}
    return sorted({d.resolve() for d in dirs if d.exists()}, key=lambda p: len(p.parts))


def _bwrap_root() -> list[str]:
    argv: list[str] = []
    for folder in SYSTEM_DIRS:
        if os.path.islink(folder):
            argv += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            argv += ["--ro-bind", folder, folder]
    # /tmp first: a Python installation under /tmp (a virtual environment there) is bound on top of it.
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for path in _python_dirs():
        if not any(path.is_relative_to(folder) for folder in SYSTEM_DIRS):
            argv += ["--ro-bind", str(path), str(path)]
    return argv


def command_prefix(level: str, workspace: Path) -> tuple[list[str], str]:
    """The argv prefix that confines a command at `level`, and the path of the workspace as the command sees it."""
    if level == "bwrap":
        argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
        argv += _bwrap_root()
        for secret in ("/etc/shadow", "/etc/gshadow"):
            if os.path.exists(secret):
                argv += ["--ro-bind", "/dev/null", secret]
        argv += ["--bind", str(workspace), WORKSPACE_MOUNT, "--chdir", WORKSPACE_MOUNT, "--"]
        return argv, WORKSPACE_MOUNT
    if level == "unshare":
        unshare = shutil.which("unshare") or "unshare"
        return [unshare, "--user", "--map-root-user", "--net", "--pid", "--fork", "--mount-proc", "--kill-child"], str(
            workspace
        )
    return [], str(workspace)
