"""The whole stack on loopback: upstream test app, cache backend, Envoy with the filter.

``Stack`` is a context manager: services start in dependency order (upstream, backend, Envoy)
and always stop in reverse, also when a start fails or on Ctrl-C. ``up``/``down`` in the CLI, the
smoke check, the tests and the benchmark all start the stack through this one class.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import envoyconf, pluginconfig, procutil
from .paths import DIST_WASM, FILTER_DIR
from .runtime import EnvoyRuntime, get_runtime
from .services import RedisServer, ServiceProcess, backend_service, new_secret, upstream_service

#: the per-process request counters of a backend's /stats (the other fields describe the storage)
COUNTERS = ("lookups", "hits", "misses", "stores", "stored_bytes", "invalidations", "invalidated_entries",
            "rejected", "auth_failures")


@dataclass
class StackSpec:
    """What to run.

    Attributes:
        variant: one of ``envoyconf.VARIANTS``.
        runtime: Envoy runtime name (``local``).
        wasm_path: the filter module; built on demand when it is the default and missing/stale.
        plugin_config: filter configuration (validated against filter/config.schema.json).
        storage: backend storage name (``sqlite``, ``memory`` or ``redis``).
        redis_url: the Redis/Valkey server of ``storage="redis"``; None starts a throwaway
            ``redis-server`` on loopback for the stack.
        backend_replicas: backend processes sharing the storage; Envoy's backend cluster gets one
            endpoint per replica (``memory`` is private to a process: 1 only).
        concurrency: Envoy worker threads (``--concurrency``).
        per_connection_buffer_limit_bytes: None keeps Envoy's default (1 MiB).
        component_log_level: Envoy ``--component-log-level`` (``wasm:debug`` shows every decision).
        runtime_options: extra keyword arguments of the runtime, e.g. for ``docker``:
            ``cpu_limit`` (cores), ``memory_limit`` (bytes or ``"128Mi"``), ``image``.
        backend_port: an externally started backend on loopback (tests: a faulty backend, a
            closed port); the Stack then starts no backend of its own and ``backend_stats()``
            is unavailable. None (default) starts the real backend.
        fail_strategy: ``open`` | ``closed`` | ``reload``: Envoy's Wasm ``failure_policy`` when the
            filter's VM fails (``envoyconf.FAIL_STRATEGIES``, docs/deploy.md).
        upstream_url: an HTTP service to put behind Envoy instead of the test upstream
            (``http(s)://host[:port]``); the Stack then starts no upstream (``upstream`` is None).
        direct_response_bytes: variant ``floor``: the size of Envoy's direct response (no
            upstream is started).
        listen_address: the address Envoy's listener binds (None: loopback, like everything
            else); the admin API always stays on loopback.
        allow_on_headers_stop_iteration: the Wasm filter's Envoy field; False is what Istio's
            WasmPlugin gives (a StopIteration from a headers callback then stops the body too).
        upstream_port: an externally started origin on loopback (the conformance suite's origin
            server); the Stack then starts no upstream test app and ``upstream_count()`` is
            unavailable. None (default) starts the upstream test app.
    """

    variant: str = "filter"
    runtime: str = "local"
    wasm_path: Path = DIST_WASM
    plugin_config: dict[str, Any] = field(default_factory=dict)
    storage: str = "sqlite"
    redis_url: str | None = None
    backend_replicas: int = 1
    concurrency: int = 2
    per_connection_buffer_limit_bytes: int | None = None
    component_log_level: str = "wasm:info"
    envoy_path: Path | None = None
    runtime_options: dict[str, Any] = field(default_factory=dict)
    backend_port: int | None = None
    fail_strategy: str = "open"
    upstream_url: str | None = None
    direct_response_bytes: int = 0
    listen_address: str | None = None
    allow_on_headers_stop_iteration: bool = True
    upstream_port: int | None = None


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
        self.backends: list[ServiceProcess] = []
        self.redis: RedisServer | None = None
        self.envoy: EnvoyRuntime | None = None
        #: fresh per stack: the backend's key (also the filter's ``backend_key``) and the filter's
        #: entry ``signing_key`` (>= 32 bytes), unless the plugin config sets its own
        self.backend_key = str(self.spec.plugin_config.get("backend_key") or new_secret())
        self.signing_key = str(self.spec.plugin_config.get("signing_key") or new_secret())

    @property
    def backend(self) -> ServiceProcess | None:
        """The first backend replica (None when the stack runs none)."""
        return self.backends[0] if self.backends else None

    @property
    def uses_filter(self) -> bool:
        return self.spec.variant in ("filter", "filter-off")

    @property
    def running_envoy(self) -> EnvoyRuntime:
        """The started Envoy runtime.

        Raises:
            RuntimeError: the stack has not started.
        """
        if self.envoy is None:
            raise RuntimeError("stack not started")
        return self.envoy

    @property
    def listener_url(self) -> str:
        assert self.envoy and self.envoy.listener_url, "stack not started"
        return self.envoy.listener_url

    def start(self) -> Stack:
        """Start every part; on any failure stop what started and re-raise."""
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            wasm = ensure_wasm(self.spec.wasm_path) if self.uses_filter else None
            target = _upstream_target(self.spec.upstream_url)
            if self.spec.upstream_port is not None:
                target["upstream_port"] = self.spec.upstream_port  # an origin started by the caller
            elif self.spec.variant != "floor" and self.spec.upstream_url is None:
                self.upstream = upstream_service(self.workdir)
                self.upstream.start()
                target["upstream_port"] = self.upstream.port
            if self.uses_filter and self.spec.backend_port is None:
                self._start_backends()
            ports = tuple(b.bound_port for b in self.backends) or (self.spec.backend_port or 0,)
            config = envoyconf.render(envoyconf.EnvoyConfig(
                variant=self.spec.variant,
                **target,
                backend_port=ports[0] if ports else (self.spec.backend_port or 0),
                backend_ports=ports,
                wasm_path=wasm,
                plugin_config={"backend_key": self.backend_key, "signing_key": self.signing_key,
                               **self.spec.plugin_config},
                per_connection_buffer_limit_bytes=self.spec.per_connection_buffer_limit_bytes,
                fail_strategy=self.spec.fail_strategy,
                direct_response_bytes=self.spec.direct_response_bytes,
                listener_address=self.spec.listen_address,
                allow_on_headers_stop_iteration=self.spec.allow_on_headers_stop_iteration,
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

    def _start_backends(self) -> None:
        """Start Redis (when the stack brings its own) and every backend replica."""
        if self.spec.backend_replicas < 1:
            raise ValueError(f"backend_replicas must be >= 1, got {self.spec.backend_replicas}")
        redis_url = self.spec.redis_url
        if self.spec.storage == "redis" and redis_url is None:
            self.redis = RedisServer(self.workdir / "redis").start()
            redis_url = self.redis.url
        key_file = self.workdir / "backend.key"
        key_file.touch(mode=0o600)
        key_file.write_text(self.backend_key + "\n")
        # the backend keeps as many variants per key as the filter does (docs/backend.md)
        max_variants = self.spec.plugin_config.get("max_variants", pluginconfig.defaults()["max_variants"])
        for index in range(self.spec.backend_replicas):
            backend = backend_service(self.workdir, storage=self.spec.storage, redis_url=redis_url,
                                      key_file=key_file, name="backend" if index == 0 else f"backend-{index + 1}",
                                      extra_args=["--max-variants", str(max_variants)])
            self.backends.append(backend)
            backend.start()

    def stop(self) -> None:
        """Stop Envoy, backends, Redis, upstream (reverse order); idempotent, never raises for a dead part."""
        for part in (self.envoy, *self.backends, self.redis, self.upstream):
            if part is not None:
                part.stop()

    def cleanup(self) -> None:
        """Stop and remove the temporary work directory (if the stack made one)."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- ground truth ------------------------------------------------------------------------
    def upstream_count(self, path: str) -> int:
        """Requests the upstream app has served for ``path`` (its own counter)."""
        assert self.upstream, "no upstream test app in this stack (external origin)"
        return int(self.upstream.get_json("/__stats")["by_path"].get(path, 0))

    def backend_stats(self) -> dict[str, Any]:
        """The backend's ``/stats`` JSON (entries, bytes, lookups, hits, misses, stores, rejected,
        ...; docs/backend.md): storage figures from the first replica (the storage is shared),
        request counters summed over every replica."""
        assert self.backends, "no backend in this variant"
        stats = [b.get_json("/stats") for b in self.backends]
        total = dict(stats[0])
        for other in stats[1:]:
            for name in COUNTERS:
                total[name] += other[name]
        return total

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
            "backends": [b.url for b in self.backends],
            "backend_key_file": str(self.workdir / "backend.key") if self.backends else None,
            "redis": self.redis.url if self.redis else self.spec.redis_url,
            "upstream": self.upstream.url if self.upstream else (
                f"http://127.0.0.1:{self.spec.upstream_port}" if self.spec.upstream_port else None),
            "envoy_log": str(self.workdir / "envoy.log"),
            # in stop order: Envoy first, the upstream last
            "pids": {
                "envoy": envoy_pid,
                **{b.name: b.proc.pid if b.proc else None for b in self.backends},
                "redis": self.redis.proc.pid if self.redis and self.redis.proc else None,
                "upstream": self.upstream.proc.pid if self.upstream and self.upstream.proc else None,
            },
            "spec": _redacted({k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.spec).items()}),
        }


def _redacted(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the plugin config's secrets replaced: the state file is no place for keys."""
    config = {k: ("<redacted>" if k in ("backend_key", "signing_key") else v)
              for k, v in spec.get("plugin_config", {}).items()}
    return {**spec, "plugin_config": config}
def _upstream_target(url: str | None) -> dict[str, Any]:
    """EnvoyConfig's upstream fields for an external ``url`` (None: the test upstream on loopback,
    port filled in once it listens)."""
    if url is None:
        return {"upstream_port": 0}
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        dns = False
    except ValueError:
        dns = True
    return {"upstream_host": host, "upstream_port": parts.port or (443 if parts.scheme == "https" else 80),
            "upstream_tls": parts.scheme == "https", "upstream_dns": dns, "upstream_authority": parts.netloc}


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
    for name, pid in state.get("pids", {}).items():  # recorded in stop order
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
    return b"envoy" in cmdline or b"sp_istio_cache" in cmdline or b"redis-server" in cmdline
