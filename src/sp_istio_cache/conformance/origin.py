"""The suite's origin server (``test-engine/server/server.mjs``) as a child process on loopback.

The server reads its settings from npm's environment variables (``npm_config_protocol``,
``npm_config_port``, ``npm_config_pidfile``; the suite's RUNNING.md) and calls ``listen(port)``
with no host, which would bind every interface. We preload ``loopback.mjs`` with
``node --import`` so that it binds 127.0.0.1 only, ask for port 0 (the kernel picks a free one,
so parallel runs never race for a port), and read the bound port back from the process's
listening socket. The server serves files from its working directory for any path it does not
route, so it runs in an empty directory of its own.
"""

from __future__ import annotations

import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from .. import procutil
from .suite import Suite, npm_env

PRELOAD = Path(__file__).with_name("loopback.mjs")
LOOPBACK = "127.0.0.1"


class OriginStartError(RuntimeError):
    """The origin server exited or did not answer in time; the message carries its log tail."""


class OriginGone(RuntimeError):
    """The origin server ended while a run still needed it; the message carries its log tail."""


def listening_ports(pid: int) -> list[tuple[str, int]]:
    """The (address, port) pairs on which process ``pid`` listens (TCP), via psutil."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return []
    return [(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]


class OriginServer(procutil.ChildServer):
    """The origin on ``127.0.0.1:<port>``; a context manager that always stops its process group.

    Attributes (once started): ``port``, ``url`` (``http://127.0.0.1:<port>``), ``proc``.
    """

    log_name = "origin.log"

    def __init__(self, suite: Suite, workdir: Path) -> None:
        super().__init__(workdir)
        self.suite = suite

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> OriginServer:
        """Start the server and wait until it answers HTTP on loopback.

        Raises:
            OriginStartError: it exited, bound something other than 127.0.0.1, or did not answer
                within ``timeout_s`` seconds.
        """
        root = self.workdir / "origin-root"  # empty: nothing for its file handler to serve
        root.mkdir(parents=True, exist_ok=True)
        env = npm_env(protocol="http", port="0", pidfile=str(self.workdir / "origin.pid"))
        argv = [str(self.suite.node), "--import", PRELOAD.as_uri(), str(self.suite.server_script)]
        self.proc = procutil.spawn(argv, self.log_path, env=env, cwd=root)
        try:
            self._wait_ready(self.proc, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise OriginStartError(f"origin server exited with code {proc.returncode}:\n"
                                       f"{procutil.tail(self.log_path)}")
            bound = listening_ports(proc.pid)
            if bound:
                foreign = [a for a, _ in bound if a != LOOPBACK]
                if foreign:
                    raise OriginStartError(f"origin server bound {foreign}, not only {LOOPBACK}")
                self.port = bound[0][1]
                if self._answers():
                    return
            time.sleep(0.05)
        raise OriginStartError(f"origin server not answering after {timeout_s:.0f} s:\n"
                               f"{procutil.tail(self.log_path)}")

    def _answers(self) -> bool:
        """True when a GET for an unknown test state gets the server's 404 (a real HTTP exchange)."""
        probe = f"{self.url}/state/readiness-{secrets.token_hex(4)}"
        try:
            with urllib.request.urlopen(probe, timeout=1):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 404
        except (urllib.error.URLError, OSError):
            return False

    def check_alive(self) -> None:
        """Raise unless the server still runs.

        Raises:
            OriginGone: it has exited (the message has its exit code and log tail).
        """
        code = self.proc.poll() if self.proc is not None else "never started"
        if code is not None:
            raise OriginGone(f"origin server ended (exit code {code}) during the run:\n{procutil.tail(self.log_path)}")
