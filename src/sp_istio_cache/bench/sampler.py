"""Resource sampling during a cell, in a thread of the orchestrator (never in the Locust process).

Every ``interval_s`` the sampler asks the Envoy runtime for its figures
(:meth:`~sp_istio_cache.runtime.base.EnvoyRuntime.resources`: the process via psutil for
``local``, the container's cgroup via the docker stats API for ``docker``; one code path here),
reads Envoy's admin ``/memory`` (``allocated``, ``heap_size``), the filter gauge
``sp_cache.buffered_body_bytes`` and, when the stack has a backend, its ``entries``/``bytes``.
Envoy's CPU time (and, in a container, its throttled time) is read at start and stop: the
difference is what the cell cost. The backend and the upstream are local Python processes under
either runtime; their CPU comes from psutil.

Memory basis: ``rss_*`` is the process RSS for ``local`` and the container's working set (cgroup
usage minus inactive file cache: what ``docker stats`` and the kubelet show) for ``docker``; the
``memory_basis`` field says which. ``memory_anon_max_bytes`` (anonymous memory: heap and buffers,
without the mapped binary) is the figure with one meaning under both runtimes.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import psutil

BUFFERED_GAUGE = "wasmcustom.sp_cache.buffered_body_bytes"
#: ``memory_basis`` per runtime name
MEMORY_BASIS = {"local": "process_rss", "docker": "container_working_set"}


@dataclass(frozen=True)
class ResourceSummary:
    """What one cell cost. Bytes, seconds; NaN where the source was not available.

    Attributes:
        samples: number of samples taken.
        rss_mean_bytes, rss_max_bytes: Envoy memory over the cell, on ``memory_basis``.
        memory_basis: ``process_rss`` (local) or ``container_working_set`` (docker).
        memory_anon_max_bytes: Envoy's anonymous memory maximum (local ``RssAnon``, the
            container's ``rss``/``anon``): comparable across runtimes.
        memory_peak_bytes: the runtime's own peak (local ``VmHWM``; docker: the cgroup's
            ``max_usage`` since the container started, page cache included).
        container_memory_max_bytes: docker: the highest raw cgroup usage (page cache included:
            the figure the memory limit is enforced on) sampled during the cell; NaN locally.
            (``memory_peak_bytes`` is the cgroup's own peak since the container started, which
            includes the page cache of reading the Envoy binary at start.)
        memory_limit_bytes, cpu_limit_cores: docker limits (NaN: none, or local).
        cpu_throttled_seconds: docker: time the CFS quota held Envoy back during the cell.
        cpu_throttled_periods, cpu_periods: docker: CFS periods throttled / elapsed in the cell.
        oom_killed: the kernel's OOM killer ended Envoy (docker's ``State.OOMKilled``).
        envoy_running_at_end: False when Envoy had ended by the end of the load.
        envoy_exit_code: its exit code then (137 after an OOM kill), else None.
        heap_allocated_max_bytes, heap_size_max_bytes: admin ``/memory`` maxima.
        buffered_body_bytes_max: the filter's buffered-body gauge maximum (NaN without filter).
        backend_entries, backend_bytes: backend store size at the end (NaN without backend).
        cpu_seconds: Envoy CPU time (user + system) spent during the cell.
        backend_cpu_seconds, upstream_cpu_seconds: the same for the Python services.
    """

    samples: int
    rss_mean_bytes: float
    rss_max_bytes: float
    heap_allocated_max_bytes: float
    heap_size_max_bytes: float
    buffered_body_bytes_max: float
    backend_entries: float
    backend_bytes: float
    cpu_seconds: float
    backend_cpu_seconds: float
    upstream_cpu_seconds: float
    memory_basis: str = "process_rss"
    memory_anon_max_bytes: float = math.nan
    memory_peak_bytes: float = math.nan
    container_memory_max_bytes: float = math.nan
    memory_limit_bytes: float = math.nan
    cpu_limit_cores: float = math.nan
    cpu_throttled_seconds: float = math.nan
    cpu_throttled_periods: float = math.nan
    cpu_periods: float = math.nan
    oom_killed: bool = False
    envoy_running_at_end: bool = True
    envoy_exit_code: int | None = None


def _proc(pid: int | None) -> psutil.Process | None:
    if not pid:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return math.nan
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return math.nan


def _num(value: Any) -> float:
    """A float from a resources() value; NaN for None, bools and anything not a number."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _max(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(max(values)) if values else math.nan


class ResourceSampler:
    """Context manager sampling ``stack`` every ``interval_s`` seconds; ``summary`` after exit."""

    def __init__(self, stack: Any, interval_s: float = 0.25) -> None:
        self.stack = stack
        self.interval_s = interval_s
        self.rows: list[dict[str, Any]] = []
        self.summary: ResourceSummary | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)
        self._backend = _proc(stack.backend.proc.pid if stack.backend and stack.backend.proc else None)
        self._upstream = _proc(stack.upstream.proc.pid if stack.upstream and stack.upstream.proc else None)
        self._envoy0: dict[str, Any] = {}
        self._cpu0: tuple[float, float] = (math.nan, math.nan)

    def _envoy_resources(self) -> dict[str, Any]:
        envoy = self.stack.envoy
        if envoy is None:
            return {}
        try:
            return dict(envoy.resources())
        except Exception:  # noqa: BLE001 - a failed look (engine hiccup) is a missing sample, not a failed cell
            return {}

    def __enter__(self) -> "ResourceSampler":
        self._envoy0 = self._envoy_resources()
        self._cpu0 = (_cpu(self._backend), _cpu(self._upstream))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        cpu1 = (_cpu(self._backend), _cpu(self._upstream))
        self.sample()  # one last look, at the end of the load
        end = self.rows[-1]["envoy"] if self.rows else {}
        rows = self.rows
        mem = [_num(r["envoy"].get("memory_bytes")) for r in rows if r["envoy"].get("running", True)]
        mem = [v for v in mem if not math.isnan(v)]
        last = rows[-1] if rows else {}

        def delta(key: str) -> float:
            return _num(end.get(key)) - _num(self._envoy0.get(key))

        runtime = getattr(self.stack.spec, "runtime", "local")
        docker = runtime == "docker"
        peak = _num(end.get("memory_peak_bytes"))
        usage_max = _max([_num(r["envoy"].get("memory_usage_bytes")) for r in rows])
        self.summary = ResourceSummary(
            samples=len(rows),
            rss_mean_bytes=float(sum(mem) / len(mem)) if mem else math.nan,
            rss_max_bytes=_max(mem),
            heap_allocated_max_bytes=_max([r["allocated"] for r in rows]),
            heap_size_max_bytes=_max([r["heap_size"] for r in rows]),
            buffered_body_bytes_max=_max([r["buffered"] for r in rows]),
            backend_entries=last.get("backend_entries", math.nan),
            backend_bytes=last.get("backend_bytes", math.nan),
            cpu_seconds=delta("cpu_seconds"),
            backend_cpu_seconds=cpu1[0] - self._cpu0[0],
            upstream_cpu_seconds=cpu1[1] - self._cpu0[1],
            memory_basis=MEMORY_BASIS.get(runtime, f"{runtime}_memory_bytes"),
            memory_anon_max_bytes=_max([_num(r["envoy"].get("memory_anon_bytes")) for r in rows]),
            memory_peak_bytes=peak,
            container_memory_max_bytes=usage_max if docker else math.nan,
            memory_limit_bytes=_num(end.get("memory_limit_bytes", self._envoy0.get("memory_limit_bytes"))),
            cpu_limit_cores=_num(end.get("cpu_limit_cores", self._envoy0.get("cpu_limit_cores"))),
            cpu_throttled_seconds=delta("cpu_throttled_seconds"),
            cpu_throttled_periods=delta("cpu_throttled_periods"),
            cpu_periods=delta("cpu_periods"),
            oom_killed=bool(end.get("oom_killed", False)),
            envoy_running_at_end=bool(end.get("running", True)),
            envoy_exit_code=end.get("exit_code"),
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        """Take one sample now (also called by the thread)."""
        row: dict[str, Any] = {"t": time.monotonic(), "envoy": self._envoy_resources(), "allocated": math.nan,
                               "heap_size": math.nan, "buffered": math.nan, "backend_entries": math.nan,
                               "backend_bytes": math.nan}
        envoy = self.stack.envoy
        if envoy is not None and envoy.admin_url and row["envoy"].get("running", True):
            try:
                mem = json.loads(envoy.admin_get("/memory", timeout_s=2))
                row["allocated"] = float(mem.get("allocated", math.nan))
                row["heap_size"] = float(mem.get("heap_size", math.nan))
            except (OSError, ValueError):
                pass
            if self.stack.uses_filter:
                try:
                    stats = json.loads(envoy.admin_get("/stats?format=json&filter=buffered_body_bytes",
                                                       timeout_s=2))
                    for s in stats.get("stats", []):
                        if s.get("name") == BUFFERED_GAUGE:
                            row["buffered"] = float(s["value"])
                except (OSError, ValueError):
                    pass
        if self.stack.backend is not None:
            try:
                b = self.stack.backend_stats()
                row["backend_entries"] = float(b.get("entries", math.nan))
                row["backend_bytes"] = float(b.get("bytes", math.nan))
            except (OSError, ValueError):
                pass
        self.rows.append(row)
