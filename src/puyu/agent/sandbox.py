"""A sandboxed, stateful Python interpreter: one kernel process per session, confined as tightly as the machine allows.

The kernel (`kernel.py`) keeps variables between calls. A call that runs past its timeout kills the whole process
tree and starts a fresh kernel (state is lost, and the result says so); a kernel that dies is restarted on the next
call. See `isolation.py` for what each isolation level contains.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from puyu.agent.isolation import (
    DESCRIPTIONS,
    Limits,
    PidsCgroup,
    available_isolation,
    command_prefix,
    isolation_works,
    rlimit_setter,
    scrubbed_environment,
)
from puyu.errors import PuyuError

_KERNEL_SOURCE = (Path(__file__).parent / "kernel.py").read_text(encoding="utf-8")
# Kernels still running at interpreter exit are stopped then, so their pids cgroups can be removed too (a kernel
# would die with this process anyway, but its empty cgroup would stay behind).
_LIVE: weakref.WeakSet[Sandbox] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for sandbox in list(_LIVE):
        sandbox.close()


_MAX_REPLY_BYTES = 4 * 1024 * 1024
_MAX_SCANNED_FILES = 5000


@dataclass
class SandboxResult:
    """What one `Sandbox.run` call produced.

    `artifacts` are paths relative to the workspace of files the call created or changed (figures included).
    """

    stdout: str = ""
    result: str | None = None
    error: str | None = None
    artifacts: list[str] = field(default_factory=list)
    timed_out: bool = False
    restarted: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_text(self) -> str:
        """One text block for a model to read: output, the last expression's value, the error, the files made."""
        parts = [self.stdout.rstrip("\n")] if self.stdout.strip() else []
        if self.result is not None:
            parts.append(self.result)
        if self.error:
            parts.append(self.error)
        if self.artifacts:
            parts.append("files: " + ", ".join(self.artifacts))
        return "\n".join(parts) if parts else "(no output)"


class Sandbox:
    """A stateful Python kernel confined to a workspace folder.

    Args:
        workspace: the only folder the code may write (created if missing); files it makes are returned as artifacts.
        timeout: default wall-clock seconds per `run` call.
        limits: rlimits for the kernel (CPU seconds, memory, processes, file size).
        isolation: "auto" (the strongest available), "bwrap", "unshare" or "rlimits".
        max_output: characters of stdout kept per call; the rest is cut with a note.
    """

    def __init__(
        self,
        workspace: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        limits: Limits | None = None,
        isolation: str = "auto",
        max_output: int = 8192,
    ) -> None:
        self.workspace = Path(workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.limits = limits or Limits()
        if isolation == "auto":
            isolation = available_isolation()
        elif isolation not in DESCRIPTIONS:
            raise PuyuError(f"unknown sandbox isolation {isolation!r}; expected auto, bwrap, unshare or rlimits")
        elif not isolation_works(isolation):
            raise PuyuError(f"sandbox isolation {isolation!r} is not available here ({available_isolation()!r} is)")
        self.isolation = isolation
        self.max_output = max_output
        self._process: subprocess.Popen[bytes] | None = None
        self._cgroup: PidsCgroup | None = None
        self._buffer = b""
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        """What this sandbox contains and how, in one sentence (stated when it starts)."""
        return DESCRIPTIONS[self.isolation]

    @property
    def weaker(self) -> bool:
        return self.isolation != "bwrap" or not self.limits_processes

    @property
    def limits_processes(self) -> bool:
        """Whether the process-count limit is enforced (RLIMIT_NPROC for users; a pids cgroup for root)."""
        if os.getuid() != 0:
            return True
        cgroup = PidsCgroup.create(1)
        if cgroup is not None:
            cgroup.remove()
        return cgroup is not None

    # -- process management -------------------------------------------------------------------------------------

    def _start(self) -> None:
        prefix, _ = command_prefix(self.isolation, self.workspace)
        if os.getuid() == 0:
            self._cgroup = PidsCgroup.create(self.limits.max_processes)
        argv = [*prefix, sys.executable, "-I", "-c", _KERNEL_SOURCE]
        self._buffer = b""
        try:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=self.workspace,
                env=scrubbed_environment(),
                start_new_session=True,
                preexec_fn=rlimit_setter(self.limits, self._cgroup),
            )
        except OSError as exc:
            raise PuyuError(f"cannot start the sandbox kernel: {exc}") from exc
        _LIVE.add(self)
        ready = self._read_reply(time.monotonic() + 60)
        if ready is None or not ready.get("ready"):
            self._kill()
            raise PuyuError(f"the sandbox kernel did not start ({self.isolation} isolation)")

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # The kernel runs in its own session (and, under bwrap, its own PID namespace, which dies with its init).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()

    def restart(self) -> None:
        """Kill the kernel and start a fresh one (all variables are lost)."""
        with self._lock:
            self._kill()
            self._start()

    def close(self) -> None:
        with self._lock:
            self._kill()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._kill()

    # -- one call -----------------------------------------------------------------------------------------------

    def _read_reply(self, deadline: float) -> dict | None:
        """One JSON line from the kernel, or None on timeout, death or a malformed reply."""
        process = self._process
        assert process is not None and process.stdout is not None
        fd = process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk or len(self._buffer) > _MAX_REPLY_BYTES:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            return None
        return reply if isinstance(reply, dict) else None

    def _snapshot(self) -> dict[str, tuple[float, int]]:
        files: dict[str, tuple[float, int]] = {}
        for root, _, names in os.walk(self.workspace):
            for name in names:
                path = Path(root, name)
                try:
                    stat = path.lstat()
                except OSError:
                    continue
                files[str(path.relative_to(self.workspace))] = (stat.st_mtime, stat.st_size)
                if len(files) >= _MAX_SCANNED_FILES:
                    return files
        return files

    def _truncate(self, text: str) -> str:
        if len(text) <= self.max_output:
            return text
        return text[: self.max_output] + f"\n… [output truncated: {len(text) - self.max_output} more characters]"

    def run(self, code: str, timeout: float | None = None) -> SandboxResult:
        """Run `code` in the kernel and return its output, last value, error and new files.

        Args:
            code: Python source; the value of a final expression is returned as `result` (its repr).
            timeout: wall-clock seconds for this call (default: the sandbox's). On expiry the kernel is killed and
                restarted; the result has `timed_out` and `restarted` set.
        """
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            restarted = False
            if self._process is None or self._process.poll() is not None:
                restarted = self._process is not None
                self._kill()
                self._start()
            before = self._snapshot()
            started = time.monotonic()
            request = json.dumps({"code": code}) + "\n"
            try:
                assert self._process is not None and self._process.stdin is not None
                self._process.stdin.write(request.encode("utf-8"))
                self._process.stdin.flush()
                reply = self._read_reply(started + timeout)
            except (BrokenPipeError, OSError):
                reply = None
            seconds = time.monotonic() - started
            if reply is None:
                exited = self._process is not None and self._process.poll() is not None
                self._kill()
                if exited:
                    error = "the interpreter crashed (its state is lost; a fresh one starts on the next call)"
                    result = SandboxResult(error=error, restarted=True, seconds=seconds)
                else:
                    error = f"timed out after {timeout:g} s; the interpreter was restarted and its state is lost"
                    result = SandboxResult(error=error, timed_out=True, restarted=True, seconds=seconds)
                result.artifacts = self._changed(before)
                return result
            figures = [str(name) for name in reply.get("figures") or []]
            artifacts = self._changed(before)
            for name in figures:
                if name not in artifacts:
                    artifacts.append(name)
            return SandboxResult(
                stdout=self._truncate(str(reply.get("stdout") or "")),
                result=None if reply.get("result") is None else self._truncate(str(reply["result"])),
                error=None if reply.get("error") is None else self._truncate(str(reply["error"])),
                artifacts=artifacts,
                restarted=restarted,
                seconds=seconds,
            )

    def _changed(self, before: dict[str, tuple[float, int]]) -> list[str]:
        after = self._snapshot()
        return sorted(name for name, stamp in after.items() if before.get(name) != stamp)
