"""The sandbox contains hostile code: each attack ends with a clear result and the host unharmed.

Attacks that only namespaces stop (network, host files, other processes, fork bombs) run where bubblewrap works and
skip elsewhere; the rlimits-only level is checked for what it does promise (limits, scrubbed environment, timeouts).
"""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from puyu.agent.isolation import Limits, available_isolation, isolation_works
from puyu.agent.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
needs_namespaces = pytest.mark.skipif(available_isolation() != "bwrap", reason="bubblewrap namespaces unavailable")
SMALL = Limits(cpu_seconds=20, memory_mb=512, max_processes=32, max_file_mb=8)


@pytest.fixture
def sandbox(tmp_path):
    box = Sandbox(tmp_path / "ws", timeout=10, limits=SMALL)
    yield box
    box.close()


def test_state_persists_and_values_come_back(sandbox):
    assert sandbox.run("x = 20\ny = x + 1").ok
    result = sandbox.run("print('hello')\nx * 2 + y")
    assert result.stdout == "hello\n"
    assert result.result == "61"


def test_errors_show_only_the_users_frames(sandbox):
    result = sandbox.run("def f():\n    return 1 / 0\nf()")
    assert "ZeroDivisionError" in result.error
    assert "kernel.py" not in result.error


def test_infinite_loop_times_out_and_the_kernel_restarts(sandbox):
    sandbox.run("kept = 1")
    result = sandbox.run("while True:\n    pass", timeout=1)
    assert result.timed_out and result.restarted
    assert "timed out" in result.error
    after = sandbox.run("'kept' in globals()")
    assert after.result == "False"  # state is lost on restart, and the result said so


def test_memory_bomb_fails_inside_the_kernel(sandbox):
    result = sandbox.run("blob = bytearray(4 * 1024 ** 3)")
    assert "MemoryError" in (result.error or "") or result.restarted
    assert sandbox.run("1 + 1").result == "2"


def test_crashed_kernel_restarts_on_the_next_call(sandbox):
    sandbox.run("import os")
    crashed = sandbox.run("os._exit(3)")
    assert "crashed" in crashed.error
    assert sandbox.run("2 + 3").result == "5"


def test_parent_environment_secrets_do_not_pass(sandbox, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    sandbox.restart()
    result = sandbox.run("import os\nsorted(os.environ.items())")
    assert "secret" not in result.result
    assert "OPENAI_API_KEY" not in result.result and "HF_TOKEN" not in result.result


def test_output_is_truncated(tmp_path):
    with Sandbox(tmp_path, timeout=10, limits=SMALL, max_output=100) as box:
        result = box.run("for i in range(100000):\n    print('line', i)")
    assert len(result.stdout) < 200
    assert "truncated" in result.stdout


def test_files_written_in_the_workspace_are_artifacts(sandbox):
    result = sandbox.run("open('table.csv', 'w').write('a,b\\n1,2\\n')")
    assert result.artifacts == ["table.csv"]
    assert (sandbox.workspace / "table.csv").read_text() == "a,b\n1,2\n"


def test_matplotlib_figures_are_saved_as_png(sandbox):
    pytest.importorskip("matplotlib")
    result = sandbox.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nNone")
    assert result.ok, result.error
    assert result.artifacts == ["figure-1.png"]
    assert (sandbox.workspace / "figure-1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_file_size_limit(tmp_path):
    with Sandbox(tmp_path, timeout=10, limits=Limits(max_file_mb=1)) as box:
        result = box.run("open('big', 'wb').write(b'0' * (4 * 1024 * 1024))")
    assert result.error and ("File too large" in result.error or "crashed" in result.error)
    assert (tmp_path / "big").stat().st_size <= 1024 * 1024


@needs_namespaces
def test_writing_outside_the_workspace_fails(sandbox, tmp_path):
    target = tmp_path / "outside.txt"
    result = sandbox.run(f"open({str(target)!r}, 'w').write('x')")
    assert result.error
    assert not target.exists()
    result = sandbox.run("open('/etc/passwd-puyu', 'w').write('x')")
    assert result.error
    assert not Path("/etc/passwd-puyu").exists()


@needs_namespaces
def test_the_repository_is_not_visible(sandbox):
    checks = [str(REPO / "pyproject.toml"), str(REPO / "src"), __file__]
    result = sandbox.run(f"import os\n[os.path.exists(p) for p in {checks!r}]")
    assert result.result == "[False, False, False]"


@needs_namespaces
def test_no_network_to_a_live_local_listener(sandbox):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []
    server.settimeout(3)
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True)
    thread.start()
    # The listener is reachable from the host: prove the test can fail.
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    thread.join(5)
    assert accepted == [True]
    code = f"""
import socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=2)
    outcome = 'connected'
except OSError as e:
    outcome = 'refused: ' + type(e).__name__
outcome"""
    result = sandbox.run(code)
    server.close()
    assert result.result.startswith("'refused")


def _accept(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
        connection.close()
        return True
    except OSError:
        return False


@needs_namespaces
def test_killing_the_parent_is_impossible(sandbox):
    code = f"""
import os, signal
errors = []
for pid in (os.getppid(), {os.getpid()}):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as e:
        errors.append(type(e).__name__)
errors"""
    result = sandbox.run(code)
    assert os.getpid() > 0  # still alive
    assert "ProcessLookupError" in (result.result or "")
    assert sandbox.run("1").result == "1"


@needs_namespaces
def test_fork_bomb_is_contained(tmp_path):
    limits = Limits(cpu_seconds=20, memory_mb=512, max_processes=16, max_file_mb=8)
    with Sandbox(tmp_path, timeout=5, limits=limits) as box:
        if not box.limits_processes:
            pytest.skip("running as root without a writable pids cgroup: the process limit is not enforced")
        code = """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as e:
    print('stopped after', n, type(e).__name__)"""
        result = box.run(code)
        assert "stopped after" in result.stdout
        assert int(result.stdout.split()[2]) <= 16
        assert box.run("2 * 21").result == "42"


def test_twenty_concurrent_sessions_stay_isolated(tmp_path):
    boxes = [Sandbox(tmp_path / f"s{i}", timeout=20, limits=SMALL) for i in range(20)]

    def session(index: int) -> tuple[str | None, list[str]]:
        box = boxes[index]
        box.run(f"secret = {index}\nopen('mine.txt', 'w').write(str(secret))")
        value = box.run("secret").result
        return value, sorted(os.listdir(box.workspace))

    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(session, range(20)))
    finally:
        for box in boxes:
            box.close()
    assert [value for value, _ in results] == [str(i) for i in range(20)]
    assert all(files == ["mine.txt"] for _, files in results)
    assert [(tmp_path / f"s{i}" / "mine.txt").read_text() for i in range(20)] == [str(i) for i in range(20)]


def test_rlimits_only_level_states_it_is_weaker(tmp_path):
    with Sandbox(tmp_path, isolation="rlimits", timeout=5, limits=SMALL) as box:
        assert box.weaker and "weaker" in box.description
        assert box.run("import os\n'PATH' in os.environ, len(os.environ) < 10").result == "(True, True)"
        assert box.run("while True: pass", timeout=1).timed_out


@pytest.mark.skipif(not isolation_works("unshare"), reason="unshare namespaces unavailable")
def test_unshare_level_has_no_network_and_its_own_pid_space(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    code = f"""
import os, socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=2)
    outcome = 'connected'
except OSError:
    outcome = 'refused'
outcome, os.getpid() < 10"""
    try:
        with Sandbox(tmp_path, isolation="unshare", timeout=10, limits=SMALL) as box:
            assert box.weaker and "weaker" in box.description
            assert box.run(code).result == "('refused', True)"
            assert box.run("while True: pass", timeout=1).timed_out
            assert box.run("1 + 1").result == "2"
    finally:
        server.close()
