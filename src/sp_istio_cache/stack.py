"""The whole stack on loopback: upstream test app, cache backend, Envoy with the filter.

``Stack`` is a context manager: services start in dependency order (upstream, backend, Envoy)
and always stop in reverse, also when a start fails or on Ctrl-C. ``up``/``down`` in the CLI, the
smoke check, the tests and the benchmark all start the stack through this one class.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import envoyconf, procutil
from .paths import DIST_WASM, FILTER_DIR
from .runtime import EnvoyRuntime, get_runtime
from .services import ServiceProcess, backend_service, upstream_service


@dataclass
class StackSpec:
    """What to run.

    Attributes:
        variant: one of ``envoyconf.VARIANTS``.
        runtime: Envoy runtime name (``local``).
        wasm_path: the filter module; built on demand when it is the default and missing/stale.
        plugin_config: filter configuration (validated against filter/config.schema.json).
        storage: backend storage name (``sqlite`` or ``memory``).
        concurrency: Envoy worker threads (``--concurrency``).
        per_connection_buffer_limit_bytes: None keeps Envoy's default (1 MiB).
        component_log_level: Envoy ``--component-log-level`` (``wasm:debug`` shows every decision).
        runtime_options: extra keyword arguments of the runtime, e.g. for ``docker``:
            ``cpu_limit`` (cores), ``memory_limit`` (bytes or ``"128Mi"``), ``image``.
        backend_port: an externally started backend on loopback (tests: a faulty backend, a
            closed port); the Stack then starts no backend of its own and ``backend_stats()``
            is unavailable. None (default) starts the real backend.
    """

    variant: str = "filter"
    runtime: str = "local"
    wasm_path: Path = DIST_WASM
    plugin_config: dict[str, Any] = field(default_factory=dict)
    storage: str = "sqlite"
    default_ttl_s: int = 300
    concurrency: int = 2
    per_connection_buffer_limit_bytes: int | None = None
    component_log_level: str = "wasm:info"
    envoy_path: Path | None = None
    runtime_options: dict[str, Any] = field(default_factory=dict)
    backend_port: int | None = None


def wasm_is_stale(wasm: Path = DIST_WASM) -> bool:
    """True when ``wasm`` is missing or older than any source under ``filter/src``."""
    if not wasm.exists():
        return True
    built = wasm.stat().st_mtime
    return any(p.stat().st_mtime > built for p in (FILTER_DIR / "src").rglob("*.zig"))


def ensure_wasm(wasm: Path = DIST_WASM) -> Path:
    """Build the filter when the default module is missing or stale; return its path.

    Raises:
        build.BuildError: the Zig build failed (message has Zig's output).
        FileNotFoundError: a non-default ``wasm`` path does not exist.
    """
    if wasm == DIST_WASM:
        if wasm_is_stale(wasm):
            from .build import build_filter

            build_filter()
        return wasm
    if not wasm.exists():
        raise FileNotFoundError(f"filter module not found: {wasm}")
    return wasm


class Stack:
    """Upstream + backend + Envoy for one variant; see the module docstring."""

    def __init__(self, spec: StackSpec | None = None, workdir: Path | None = None) -> None:
        self.spec = spec or StackSpec()
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sp-istio-cache-")
            workdir = Path(self._tmp.name)
        self.workdir = Path(workdir)
        self.upstream: ServiceProcess | None = None
        self.backend: ServiceProcess | None = None
        self.envoy: EnvoyRuntime | None = None

    @property
    def uses_filter(self) -> bool:
        return self.spec.variant in ("filter", "filter-off")

    @property
    def listener_url(self) -> str:
        assert self.envoy and self.envoy.listener_url, "stack not started"
        return self.envoy.listener_url

    def start(self) -> "Stack":
        """Start every part; on any failure stop what started and re-raise."""
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            wasm = ensure_wasm(self.spec.wasm_path) if self.uses_filter else None
            self.upstream = upstream_service(self.workdir)
            self.upstream.start()
            if self.uses_filter and self.spec.backend_port is None:
                self.backend = backend_service(self.workdir, storage=self.spec.storage,
                                               default_ttl_s=self.spec.default_ttl_s)
                self.backend.start()
            config = envoyconf.render(envoyconf.EnvoyConfig(
                variant=self.spec.variant,
                upstream_port=self.upstream.port,
                backend_port=self.backend.port if self.backend else (self.spec.backend_port or 0),
                wasm_path=wasm,
                plugin_config=self.spec.plugin_config,
                per_connection_buffer_limit_bytes=self.spec.per_connection_buffer_limit_bytes,
            ))
            runtime_cls = get_runtime(self.spec.runtime)
            kwargs: dict[str, Any] = dict(concurrency=self.spec.concurrency,
                                          component_log_level=self.spec.component_log_level)
            if self.spec.envoy_path is not None:
                kwargs["envoy_path"] = self.spec.envoy_path
            kwargs.update(self.spec.runtime_options)
            self.envoy = runtime_cls(config, self.workdir, **kwargs)
            self.envoy.start()
            self.envoy.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Envoy, backend, upstream (reverse order); idempotent, never raises for a dead part."""
        for part in (self.envoy, self.backend, self.upstream):
            if part is not None:
                part.stop()

    def cleanup(self) -> None:
        """Stop and remove the temporary work directory (if the stack made one)."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- ground truth ------------------------------------------------------------------------
    def upstream_count(self, path: str) -> int:
        """Requests the upstream app has served for ``path`` (its own counter)."""
        assert self.upstream
        return int(self.upstream.get_json("/__stats")["by_path"].get(path, 0))

    def backend_stats(self) -> dict[str, Any]:
        """The backend's ``/stats`` JSON (entries, bytes, lookups, hits, misses, stores, rejected)."""
        assert self.backend, "no backend in this variant"
        return self.backend.get_json("/stats")

    def filter_stats(self) -> dict[str, float]:
        """The filter's metrics from Envoy, without the ``wasmcustom.`` prefix."""
        assert self.envoy
        return {k.removeprefix("wasmcustom."): v for k, v in self.envoy.stats().items()
                if k.startswith("wasmcustom.")}

    def wait_for_stores(self, count: int, timeout_s: float = 5.0) -> float:
        """Wait until the backend has accepted ``count`` stores; return the wait in ms.

        Raises:
            TimeoutError: fewer stores after ``timeout_s`` seconds.
        """
        t0 = time.monotonic()
        while True:
            stores = self.backend_stats()["stores"]
            if stores >= count:
                return (time.monotonic() - t0) * 1000
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"backend has {stores} stores, expected {count} within {timeout_s} s")
            time.sleep(0.02)

    def describe(self) -> dict[str, Any]:
        """Addresses and pids, as written to the ``up`` state file."""
        envoy_pid = getattr(self.envoy, "pid", None)
        return {
            "variant": self.spec.variant,
            "runtime": self.spec.runtime,
            "workdir": str(self.workdir),
            "listener": self.envoy.listener_url if self.envoy else None,
            "admin": self.envoy.admin_url if self.envoy else None,
            "backend": self.backend.url if self.backend else None,
            "upstream": self.upstream.url if self.upstream else None,
            "envoy_log": str(self.workdir / "envoy.log"),
            "pids": {
                "envoy": envoy_pid,
                "backend": self.backend.proc.pid if self.backend and self.backend.proc else None,
                "upstream": self.upstream.proc.pid if self.upstream and self.upstream.proc else None,
            },
            "spec": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.spec).items()},
        }


# -- detached stacks (`up` / `down`) -------------------------------------------------------------
class StateFileError(RuntimeError):
    """The ``up`` state file exists but is not a stack record (truncated, edited, foreign)."""


def write_state(state_file: Path, description: dict[str, Any]) -> None:
    """Record a detached stack so that ``down`` and ``logs`` find it (atomically: write + rename)."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_file.with_name(state_file.name + ".tmp")
    tmp.write_text(json.dumps(description, indent=2))
    os.replace(tmp, state_file)


def read_state(state_file: Path) -> dict[str, Any] | None:
    """The recorded stack, or None when there is none.

    Raises:
        StateFileError: the file is there but unreadable as a stack record.
    """
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateFileError(f"state file {state_file} is unreadable: {exc}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("pids"), dict):
        raise StateFileError(f"state file {state_file} is not a stack record")
    return state


def live_pids(state: dict[str, Any]) -> list[int]:
    """The recorded processes that still run (and are ours)."""
    return [pid for pid in state.get("pids", {}).values() if pid and _is_ours(pid)]


def stop_detached(state_file: Path) -> list[str]:
    """Stop every process of a recorded stack (Envoy first); return what was stopped.

    A process that is already gone is skipped; the state file is removed.
    """
    stopped: list[str] = []
    try:
        state = read_state(state_file)
    except StateFileError:
        state_file.unlink(missing_ok=True)  # nothing in it can be trusted: forget it
        return stopped
    if state is None:
        return stopped
    for name in ("envoy", "backend", "upstream"):
        pid = state.get("pids", {}).get(name)
        if pid and _is_ours(pid):
            procutil.terminate_group(pid)
            stopped.append(f"{name} (pid {pid})")
    state_file.unlink(missing_ok=True)
    return stopped


def _is_ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"envoy" in cmdline or b"sp_istio_cache" in cmdline
