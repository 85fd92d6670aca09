"""The Envoy runtime interface: one contract, ``local`` and ``docker`` implementations.

A runtime owns one Envoy: ``start()`` launches it with a rendered bootstrap, ``wait_ready()``
polls the admin API until ``/ready`` answers LIVE and the listener is bound, ``stats()`` reads
``/stats?format=json``, ``logs()`` returns what Envoy printed, ``stop()`` ends it. Used as a
context manager it always stops, also on exceptions and Ctrl-C.
"""

from __future__ import annotations

import abc
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class EnvoyStartError(RuntimeError):
    """Envoy exited or never became ready; the message carries the end of its log."""


class EnvoyRuntime(abc.ABC):
    """One Envoy process (or container) serving a rendered bootstrap.

    Attributes set once ready: ``admin_url`` (``http://host:port``), ``listener_url``.
    """

    name: str = "abstract"

    def __init__(self, config_yaml: str, workdir: Path, *, concurrency: int = 2,
                 log_level: str = "info", component_log_level: str = "wasm:info") -> None:
        self.config_yaml = config_yaml
        self.workdir = Path(workdir)
        self.concurrency = concurrency
        self.log_level = log_level
        self.component_log_level = component_log_level
        self.admin_url: str | None = None
        self.listener_url: str | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    def start(self) -> None:
        """Launch Envoy. Raises EnvoyStartError (or FileNotFoundError for a missing binary)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """End Envoy; idempotent."""

    @abc.abstractmethod
    def logs(self) -> str:
        """Everything Envoy has printed so far."""

    @abc.abstractmethod
    def exited(self) -> int | None:
        """Envoy's exit code if it has ended, else None."""

    @abc.abstractmethod
    def resources(self) -> dict[str, Any]:
        """A sample of what Envoy uses now, for the benchmark's resource columns.

        Keys every runtime fills, with one meaning: ``memory_bytes`` (resident memory: the
        process RSS locally, the cgroup working set in a container), ``cpu_seconds`` (user +
        system CPU time used so far), ``running`` (bool). ``memory_peak_bytes`` and
        ``memory_anon_bytes`` (anonymous memory: heap and buffers, without the mapped binary)
        where the runtime can tell. Runtime-specific keys carry their own names (the docker runtime adds
        ``memory_limit_bytes``, ``cpu_throttled_seconds``, ``oom_killed``...). Once Envoy has
        ended, the figures are those of the last sample taken, with ``running`` False.
        """

    @abc.abstractmethod
    def _discover_admin(self) -> str | None:
        """The admin base URL once Envoy has bound it, else None."""

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until ``/ready`` says LIVE and the listener's port is known.

        Raises:
            EnvoyStartError: Envoy exited (bad config, wasm load failure...) or ``timeout_s``
                passed; the message ends with Envoy's last log lines.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.exited()
            if code is not None:
                raise EnvoyStartError(
                    f"Envoy ({self.name}) exited with code {code} before becoming ready.\n"
                    f"--- last Envoy log lines ---\n{self._log_tail()}"
                )
            if self.admin_url is None:
                self.admin_url = self._discover_admin()
            if self.admin_url is not None:
                try:
                    with urllib.request.urlopen(self.admin_url + "/ready", timeout=1) as r:
                        if r.status == 200 and r.read().strip() == b"LIVE":
                            self.listener_url = self._listener_url()
                            return
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.05)
        raise EnvoyStartError(
            f"Envoy ({self.name}) not ready after {timeout_s:.0f} s.\n"
            f"--- last Envoy log lines ---\n{self._log_tail()}"
        )

    # -- admin API ---------------------------------------------------------------------------
    def admin_get(self, path: str, timeout_s: float = 5.0) -> bytes:
        """GET an admin endpoint (e.g. ``/stats?format=json``) and return the body bytes."""
        if self.admin_url is None:
            raise RuntimeError("Envoy is not ready: call wait_ready() first")
        with urllib.request.urlopen(self.admin_url + path, timeout=timeout_s) as r:
            return r.read()

    def stats(self) -> dict[str, int | float]:
        """Every counter and gauge from ``/stats?format=json`` as {name: value}.

        Filter metrics appear as ``wasmcustom.sp_cache.*`` (Envoy prefixes custom metrics).
        """
        data = json.loads(self.admin_get("/stats?format=json"))
        return {s["name"]: s["value"] for s in data.get("stats", []) if "value" in s}

    @staticmethod
    def _admin_url_from_file(path: Path) -> str | None:
        """The admin URL from an ``--admin-address-path`` file, or None until Envoy has written it."""
        try:
            address = path.read_text().strip()
        except FileNotFoundError:
            return None
        return f"http://{address}" if address else None

    def _listener_url(self) -> str:
        data: dict[str, Any] = json.loads(self.admin_get("/listeners?format=json"))
        for status in data.get("listener_statuses", []):
            sock = status.get("local_address", {}).get("socket_address", {})
            if sock.get("port_value"):
                return f"http://{self._listener_host(sock['address'])}:{sock['port_value']}"
        raise EnvoyStartError(f"Envoy reported no bound listener: {data}")

    def _listener_host(self, bound: str) -> str:
        return bound

    def _log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])

    def __enter__(self) -> EnvoyRuntime:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
