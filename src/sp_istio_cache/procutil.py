"""Child processes that always end: start in their own session, stop the whole group.

Used by the Envoy local runtime and the Python services, so no Envoy or server outlives the
workbench, a failed test or Ctrl-C. A Ctrl-C can land while ``subprocess.Popen`` is still
returning, before any caller holds the handle; so at exit every child of this process that leads
its own group (what :func:`spawn` starts) is stopped too, unless :func:`keep_children_on_exit` said
otherwise (``up`` leaves its stack running on purpose).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import psutil

_keep_children = False
_exit_hooks: list[Callable[[], object]] = []


def keep_children_on_exit() -> None:
    """Leave every child running when this process exits (a detached ``up`` stack)."""
    global _keep_children
    _keep_children = True


def on_exit(hook: Callable[[], object]) -> None:
    """Run ``hook`` at exit, before the children are stopped, unless :func:`keep_children_on_exit`
    was called (e.g. removing this process's containers). A hook that raises is ignored."""
    _exit_hooks.append(hook)


@atexit.register
def _stop_children_at_exit() -> None:
    if _keep_children:
        return
    for hook in _exit_hooks:
        with contextlib.suppress(Exception):
            hook()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children():
            with contextlib.suppress(OSError):
                if os.getpgid(child.pid) == child.pid:  # started by spawn(): its own session
                    terminate_group(child.pid, grace_s=2.0)


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start ``argv`` in a new session (its own process group), stdout+stderr appended to ``log_path``,
    in directory ``cwd`` (None: ours).

    Raises:
        FileNotFoundError: the executable does not exist.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )


def terminate_group(pid: int, grace_s: float = 5.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL after ``grace_s`` seconds.

    A group that is already gone is not an error.
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass  # not our child (e.g. started by an earlier `up`): fall back to a signal probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc: subprocess.Popen, grace_s: float = 5.0) -> int | None:
    """Stop ``proc`` and its group; return its exit code (None if it could not be reaped)."""
    if proc.poll() is None:
        terminate_group(proc.pid, grace_s)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        return None


def tail(path: Path, max_bytes: int = 4000) -> str:
    """The last ``max_bytes`` of a log file as text ('' when the file does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for servers that cannot bind port 0 and report it,
    such as redis-server; the caller retries when another process takes it first)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ChildServer:
    """A server run as a child process group: subclasses :meth:`start` it; :meth:`stop` ends its
    whole group (idempotent), and the context manager always does.

    Attributes:
        workdir: where the log (``log_name``) is written.
        proc: the process (None before the start).
        port: the port it listens on (None before the start).
    """

    #: the log file's name in ``workdir``
    log_name = "server.log"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / self.log_name

    def start(self, timeout_s: float = 10.0) -> Self:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server's process group; idempotent."""
        if self.proc is not None:
            stop(self.proc)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
