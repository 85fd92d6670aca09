"""Resource sampling during a cell, in a thread of the orchestrator (never in the Locust process).

Every ``interval_s`` the sampler reads Envoy's RSS (psutil on the Envoy pid), Envoy's admin
``/memory`` (``allocated``, ``heap_size``), the filter gauge ``sp_cache.buffered_body_bytes``
and, when the stack has a backend, its ``entries``/``bytes``. CPU time (user + system) of Envoy,
the backend and the upstream is read at start and stop; the difference is what the cell cost.
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


@dataclass(frozen=True)
class ResourceSummary:
    """What one cell cost. Bytes, seconds; NaN where the source was not available.

    Attributes:
        samples: number of samples taken.
        rss_mean_bytes, rss_max_bytes: Envoy resident set size over the cell.
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


def _max(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(max(values)) if values else math.nan


class ResourceSampler:
    """Context manager sampling ``stack`` every ``interval_s`` seconds; ``summary`` after exit."""

    def __init__(self, stack: Any, interval_s: float = 0.25) -> None:
        self.stack = stack
        self.interval_s = interval_s
        self.rows: list[dict[str, float]] = []
        self.summary: ResourceSummary | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)
        self._envoy = _proc(getattr(stack.envoy, "pid", None))
        self._backend = _proc(stack.backend.proc.pid if stack.backend and stack.backend.proc else None)
        self._upstream = _proc(stack.upstream.proc.pid if stack.upstream and stack.upstream.proc else None)
        self._cpu0: tuple[float, float, float] = (math.nan, math.nan, math.nan)

    def __enter__(self) -> "ResourceSampler":
        self._cpu0 = (_cpu(self._envoy), _cpu(self._backend), _cpu(self._upstream))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        cpu1 = (_cpu(self._envoy), _cpu(self._backend), _cpu(self._upstream))
        self.sample()  # one last look, at the end of the load
        rss = [r["rss"] for r in self.rows if not math.isnan(r["rss"])]
        last = self.rows[-1] if self.rows else {}
        self.summary = ResourceSummary(
            samples=len(self.rows),
            rss_mean_bytes=float(sum(rss) / len(rss)) if rss else math.nan,
            rss_max_bytes=_max(rss),
            heap_allocated_max_bytes=_max([r["allocated"] for r in self.rows]),
            heap_size_max_bytes=_max([r["heap_size"] for r in self.rows]),
            buffered_body_bytes_max=_max([r["buffered"] for r in self.rows]),
            backend_entries=last.get("backend_entries", math.nan),
            backend_bytes=last.get("backend_bytes", math.nan),
            cpu_seconds=cpu1[0] - self._cpu0[0],
            backend_cpu_seconds=cpu1[1] - self._cpu0[1],
            upstream_cpu_seconds=cpu1[2] - self._cpu0[2],
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        """Take one sample now (also called by the thread)."""
        row = {"t": time.monotonic(), "rss": math.nan, "allocated": math.nan, "heap_size": math.nan,
               "buffered": math.nan, "backend_entries": math.nan, "backend_bytes": math.nan}
        if self._envoy is not None:
            try:
                row["rss"] = float(self._envoy.memory_info().rss)
            except psutil.Error:
                pass
        envoy = self.stack.envoy
        if envoy is not None and envoy.admin_url:
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
