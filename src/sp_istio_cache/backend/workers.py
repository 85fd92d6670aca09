"""Pre-forked worker processes sharing one listening socket.

The parent binds the socket, forks ``n`` workers that each run their own event loop and their
own storage connection on it (the kernel hands each new connection to one of them), writes the
port file, and supervises: SIGTERM/SIGINT is passed on to every worker; a worker that dies while
the others serve stops the whole set with exit code 1, so a supervisor (Kubernetes, the
workbench) sees the failure instead of a silently smaller backend.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from sp_istio_cache.serving import write_port_file

log = logging.getLogger("sp_istio_cache.backend.workers")


def run_workers(n: int, sock: socket.socket, worker: Callable[[socket.socket], int],
                port_file: Path | None = None, grace_s: float = 10.0) -> int:
    """Fork ``n`` processes running ``worker(sock)``; return the exit code of the set.

    0 when every worker ended cleanly after a signal; 1 when one died on its own (the others
    are stopped); a worker's own non-zero code when it failed during shutdown.
    """
    port = sock.getsockname()[1]
    children: dict[int, int] = {}
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    for index in range(n):
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = worker(sock)
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index
    sock.close()  # the parent never accepts
    if port_file is not None:
        write_port_file(port_file, port)
    code = 0
    deadline: float | None = None
    try:
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if stopping and deadline is None:
                    deadline = time.monotonic() + grace_s
                if deadline is not None and time.monotonic() > deadline:
                    for late in children:
                        log.error("worker %d (pid %d) ignored SIGTERM for %.0f s; killing it",
                                  children[late], late, grace_s)
                        _kill(late, signal.SIGKILL)
                    deadline = float("inf")
                time.sleep(0.1)
                continue
            index = children.pop(pid)
            exit_code = os.waitstatus_to_exitcode(status)
            if not stopping:
                log.error("worker %d (pid %d) exited with %d; stopping the other workers", index, pid, exit_code)
                code = 1
                on_signal(signal.SIGTERM, None)
            elif exit_code != 0 and code == 0:
                code = exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
