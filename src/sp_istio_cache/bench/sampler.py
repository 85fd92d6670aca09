"""Resource sampling during the load, in a thread of the orchestrator (never in Locust).

Every ``interval_s`` the sampler takes Envoy's figures from its runtime
(:meth:`~sp_istio_cache.runtime.base.EnvoyRuntime.resources`: psutil for ``local``, the docker
stats API for ``docker``) and the backend's and upstream's from psutil, and notes when a process
is first seen dead. It does not call Envoy's admin API (``/stats`` is read before and after the
load, :mod:`sp_istio_cache.bench.envoystats`). A failed sample is recorded (source, time, error)
and the next one is taken: nothing is swallowed, nothing stops the cell.

Memory basis: ``rss_*`` is the process RSS for ``local`` and the container's working set (cgroup
usage minus inactive file cache) for ``docker``; ``memory_anon_max_bytes`` (anonymous memory) has
one meaning under both.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil

from .records import Finding, FindingKind, MemoryBasis, ResourceSummary

#: ``memory_basis`` per runtime name
MEMORY_BASIS: dict[str, MemoryBasis] = {"local": "process_rss", "docker": "container_working_set"}
#: the finding a watched service's death is, per service
_DIED: dict[str, FindingKind] = {"backend": "backend_died", "upstream": "upstream_died"}
DEFAULT_INTERVAL_S = 0.25


@dataclass
class _Watched:
    """A Python service process (backend or upstream) watched with psutil."""

    name: Literal["backend", "upstream"]
    service: Any
    proc: psutil.Process | None
    cpu0: float | None = None
    rss_max: float | None = None
    died_at_s: float | None = None
    exit_detail: str = ""


def _process(service: Any) -> psutil.Process | None:
    pid = service.proc.pid if service is not None and getattr(service, "proc", None) is not None else None
    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _num(value: Any) -> float | None:
    """A float from a resources() value; None for None, bools and non-numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _max(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


@dataclass
class ResourceSampler:
    """Context manager sampling ``stack`` every ``interval_s`` seconds during the load.

    After exit: :attr:`summary` (a :class:`ResourceSummary`) and :meth:`findings` (processes that
    died, samples that failed), with times in seconds from the start of the load.
    """

    stack: Any
    interval_s: float = DEFAULT_INTERVAL_S
    summary: ResourceSummary | None = field(default=None, init=False)
    errors: list[tuple[float, str, str]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)
        # every backend replica (their CPU is summed), then the upstream
        backends = list(getattr(self.stack, "backends", None) or [s for s in [self.stack.backend] if s is not None])
        upstreams = [self.stack.upstream] if self.stack.upstream is not None else []
        self._watched = [*(_Watched("backend", b, _process(b)) for b in backends),
                         *(_Watched("upstream", u, _process(u)) for u in upstreams)]
        self._envoy0: dict[str, Any] = {}
        self._t0 = 0.0
        self.envoy_died_at_s: float | None = None

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _envoy_sample(self) -> dict[str, Any]:
        envoy = self.stack.envoy
        if envoy is None:
            return {}
        try:
            sample = dict(envoy.resources())
        except Exception as exc:  # noqa: BLE001 - any runtime failure is one missing sample, recorded
            self.errors.append((round(self._now(), 3), "envoy.resources", f"{type(exc).__name__}: {exc}"))
            return {}
        if not sample.get("running", True) and self.envoy_died_at_s is None:
            self.envoy_died_at_s = round(self._now(), 3)
        return sample

    def _watch(self) -> None:
        for w in self._watched:
            if w.proc is None or w.died_at_s is not None:
                continue
            if not _alive(w.proc):
                w.died_at_s = round(self._now(), 3)
                popen = w.service.proc
                code = popen.poll() if popen is not None else None  # reaps it: the exit code
                w.exit_detail = f"{w.name} exited" + (f" with code {code}" if code is not None else "")
                continue
            try:
                with w.proc.oneshot():
                    rss = float(w.proc.memory_info().rss)
                w.rss_max = rss if w.rss_max is None else max(w.rss_max, rss)
            except psutil.Error as exc:
                self.errors.append((round(self._now(), 3), f"{w.name}.memory", str(exc)))

    def _cpu(self, w: _Watched) -> float | None:
        if w.proc is None:
            return None
        try:
            t = w.proc.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return None  # ended: its CPU after the last sample is lost, the death is a finding

    def __enter__(self) -> ResourceSampler:
        self._t0 = time.monotonic()
        self._envoy0 = self._envoy_sample()
        for w in self._watched:
            w.cpu0 = self._cpu(w)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.sample()  # one last look, at the end of the load
        self.summary = self._summarize()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        """Take one sample now (also called by the thread)."""
        self._rows.append(self._envoy_sample())
        self._watch()

    def _summarize(self) -> ResourceSummary:
        rows = [r for r in self._rows if r]
        end = rows[-1] if rows else {}
        start = self._envoy0
        running = [r for r in rows if r.get("running", True)]
        mem = [_num(r.get("memory_bytes")) for r in running]
        known = [m for m in mem if m is not None]

        def delta(key: str) -> float | None:
            a, b = _num(end.get(key)), _num(start.get(key))
            return a - b if a is not None and b is not None else None

        runtime = self.stack.spec.runtime
        docker = runtime == "docker"
        backends = [w for w in self._watched if w.name == "backend"]
        upstreams = [w for w in self._watched if w.name == "upstream"]

        def cpu_used(group: list[_Watched]) -> float | None:
            used = []
            for w in group:
                now = self._cpu(w) if w.cpu0 is not None else None
                if now is None or w.cpu0 is None:
                    return None
                used.append(now - w.cpu0)
            return sum(used) if used else None

        backend_rss = [w.rss_max for w in backends if w.rss_max is not None]

        return ResourceSummary(
            samples=len(rows), interval_s=self.interval_s,
            memory_basis=MEMORY_BASIS.get(runtime, "process_rss"),
            rss_mean_bytes=sum(known) / len(known) if known else None, rss_max_bytes=_max(mem),
            memory_anon_max_bytes=_max([_num(r.get("memory_anon_bytes")) for r in rows]),
            memory_peak_bytes=_num(end.get("memory_peak_bytes")),
            container_memory_max_bytes=_max([_num(r.get("memory_usage_bytes")) for r in rows]) if docker else None,
            memory_limit_bytes=_num(end.get("memory_limit_bytes", start.get("memory_limit_bytes"))) if docker else None,
            cpu_limit_cores=_num(end.get("cpu_limit_cores", start.get("cpu_limit_cores"))) if docker else None,
            cpu_seconds=delta("cpu_seconds"),
            cpu_throttled_seconds=delta("cpu_throttled_seconds") if docker else None,
            cpu_throttled_periods=delta("cpu_throttled_periods") if docker else None,
            cpu_periods=delta("cpu_periods") if docker else None,
            backend_cpu_seconds=cpu_used(backends), backend_rss_max_bytes=max(backend_rss) if backend_rss else None,
            upstream_cpu_seconds=cpu_used(upstreams),
            envoy_running_at_end=bool(end.get("running", True)),
        )

    def findings(self) -> list[Finding]:
        """Deaths seen during the load (backend, upstream) and failed samples (one finding per
        source, with the count and the first error)."""
        out = [Finding(kind=_DIED[w.name], component=w.name, phase="load", at_s=w.died_at_s,
                       detail=w.exit_detail, counts={}) for w in self._watched if w.died_at_s is not None]
        by_source: dict[str, list[tuple[float, str, str]]] = {}
        for err in self.errors:
            by_source.setdefault(err[1], []).append(err)
        for source, errs in by_source.items():
            out.append(Finding(kind="sampler_error", component="sampler", phase="load", at_s=errs[0][0],
                               detail=f"{source}: {errs[0][2]}", counts={"failed_samples": len(errs)}))
        return out
