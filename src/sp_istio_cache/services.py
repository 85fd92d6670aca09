"""The workbench's Python services (cache backend, upstream test app) as child processes.

Each service binds port 0 and writes the port it got to a file once it listens
(``--port-file``), so concurrent runs never race for a port.
"""

from __future__ import annotations

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

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

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

        with urllib.request.urlopen(self.url + path, timeout=timeout_s) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        """Stop the service's process group; idempotent."""
        if self.proc is not None:
            procutil.stop(self.proc)


def backend_service(workdir: Path, *, storage: str = "sqlite", db_path: Path | None = None,
                    default_ttl_s: int = 300) -> ServiceProcess:
    """The cache backend (``sp_istio_cache.backend``), SQLite at ``workdir/cache.sqlite3`` by default."""
    args = ["--storage", storage, "--default-ttl", str(default_ttl_s)]
    if storage == "sqlite":
        args += ["--db", str(db_path or workdir / "cache.sqlite3")]
    return ServiceProcess("backend", "sp_istio_cache.backend", args, workdir)


def upstream_service(workdir: Path) -> ServiceProcess:
    """The upstream test app (``sp_istio_cache.upstream``)."""
    return ServiceProcess("upstream", "sp_istio_cache.upstream", [], workdir)
