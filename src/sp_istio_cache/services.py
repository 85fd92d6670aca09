"""The workbench's Python services (cache backend, upstream test app) as child processes.

Each service binds port 0 and writes the port it got to a file once it listens
(``--port-file``), so concurrent runs never race for a port.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import procutil


class ServiceStartError(RuntimeError):
    """A service exited or did not listen in time; the message carries its log tail."""


@dataclass
class ServiceProcess:
    """One ``python -m <module>`` service on loopback.

    Attributes:
        name: short label (``backend``, ``upstream``) used for the log and port file names.
        module: the module run with ``python -m``.
        args: extra command-line arguments.
        workdir: where ``<name>.log`` and ``<name>.port`` are written.
    """

    name: str
    module: str
    args: list[str]
    workdir: Path
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = field(default=None, init=False)
    port: int | None = field(default=None, init=False)
    #: headers sent by :meth:`get_json` (the backend's key)
    headers: dict[str, str] = field(default_factory=dict, init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def bound_port(self) -> int:
        """The port the service listens on.

        Raises:
            ServiceStartError: the service has not started.
        """
        if self.port is None:
            raise ServiceStartError(f"{self.name} has not started: it has no port yet")
        return self.port

    def start(self, timeout_s: float = 20.0) -> None:
        """Start and wait until the port file appears and ``/healthz`` (or ``/__stats``) answers.

        Raises:
            ServiceStartError: exited early or not listening within ``timeout_s`` seconds.
        """
        port_file = self.workdir / f"{self.name}.port"
        port_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", self.module, "--host", self.host, "--port", "0",
                "--port-file", str(port_file), *self.args]
        self.proc = procutil.spawn(argv, self.log_path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceStartError(
                    f"{self.name} exited with code {self.proc.returncode}:\n{procutil.tail(self.log_path)}")
            text = port_file.read_text().strip() if port_file.exists() else ""
            if text.isdigit():
                self.port = int(text)
                return
            time.sleep(0.05)
        self.stop()
        raise ServiceStartError(f"{self.name} not listening after {timeout_s:.0f} s:\n{procutil.tail(self.log_path)}")

    def get_json(self, path: str, timeout_s: float = 5.0):
        """GET ``path`` on the service and decode the JSON answer."""
        import json

        request = urllib.request.Request(self.url + path, headers=self.headers)
        with urllib.request.urlopen(request, timeout=timeout_s) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        """Stop the service's process group; idempotent."""
        if self.proc is not None:
            procutil.stop(self.proc)


def new_secret() -> str:
    """A fresh random secret for one stack: 43 URL-safe characters (32 random bytes), fit for
    the backend key (16..256 visible ASCII) and the filter's signing key (>= 32 bytes)."""
    return secrets.token_urlsafe(32)


def backend_service(workdir: Path, *, storage: str = "sqlite", db_path: Path | None = None,
                    redis_url: str | None = None, key_file: Path | None = None,
                    name: str = "backend", extra_args: list[str] | None = None) -> ServiceProcess:
    """The cache backend (``sp_istio_cache.backend``): SQLite at ``workdir/cache.sqlite3`` by
    default, ``redis_url`` for ``storage="redis"``. With ``key_file`` the backend requires that
    key (read from the file, never on the command line) and :meth:`ServiceProcess.get_json`
    sends it; without, the backend runs with ``--allow-anonymous``."""
    args = ["--storage", storage]
    if storage == "sqlite":
        args += ["--db", str(db_path or workdir / "cache.sqlite3")]
    if storage == "redis":
        if not redis_url:
            raise ValueError("storage redis needs a redis_url")
        args += ["--redis-url", redis_url]
    headers = {}
    if key_file is None:
        args.append("--allow-anonymous")
    else:
        args += ["--key-file", str(key_file)]
        headers["x-public-key"] = Path(key_file).read_text().strip()
    service = ServiceProcess(name, "sp_istio_cache.backend", args + list(extra_args or []), workdir)
    service.headers = headers
    return service


def upstream_service(workdir: Path) -> ServiceProcess:
    """The upstream test app (``sp_istio_cache.upstream``)."""
    return ServiceProcess("upstream", "sp_istio_cache.upstream", [], workdir)


class RedisServer(procutil.ChildServer):
    """A throwaway ``redis-server`` (or ``valkey-server``) on a free loopback port.

    No persistence (``--save ''``, ``--appendonly no``), ``maxmemory-policy volatile-lru`` as the
    backend's storage wants it (docs/backend.md). Stopped by :meth:`stop` (its whole process group).

    Args:
        workdir: where ``redis.log`` is written (the server's working directory too).
        binary: the server executable (default: ``redis-server``, else ``valkey-server``, on PATH).
        maxmemory: the server's ``maxmemory`` in bytes (0: unbounded).
    """

    log_name = "redis.log"

    def __init__(self, workdir: Path, binary: str | None = None, maxmemory: int = 0) -> None:
        super().__init__(workdir)
        self.binary = binary or shutil.which("redis-server") or shutil.which("valkey-server") or "redis-server"
        self.maxmemory = maxmemory

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start on a free port (retrying when another process takes it first) and wait for PING.

        Raises:
            ServiceStartError: the binary is missing, or the server did not answer in time.
        """
        if shutil.which(self.binary) is None and not Path(self.binary).exists():
            raise ServiceStartError(f"{self.binary} not found: install Debian's redis-server "
                                    "(apt-get install redis-server) or valkey-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            self.port = procutil.free_port()
            argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", str(self.workdir), "--maxmemory", str(self.maxmemory),
                    "--maxmemory-policy", "volatile-lru", "--protected-mode", "yes"]
            self.proc = procutil.spawn(argv, self.log_path)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._ping():
                    return self
                time.sleep(0.05)
            self.stop()
        raise ServiceStartError(f"{self.binary} did not start:\n{procutil.tail(self.log_path)}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

