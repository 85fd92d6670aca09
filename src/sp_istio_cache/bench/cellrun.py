"""One repetition of one cell, into its directory, ending with ``cell.json`` whatever happens.

In order:

1. start a fresh :class:`~sp_istio_cache.stack.Stack` for the cell (free loopback ports): the
   test upstream (not for the floor nor an external upstream), the backend (filter variants),
   Envoy in the cell's runtime;
2. warm-up: synthetic traffic with a hit ratio > 0 requests every hot key once and waits until
   the cache holds them (backend ``stores`` for ``filter``, a HIT on every key for
   ``envoy-cache``); profile traffic sends every distinct request once; the floor none;
3. read the test upstream's counter, the backend's ``/stats`` and Envoy's counters, start the
   :class:`ResourceSampler`, run Locust, stop the sampler, read them all again
   (:mod:`sp_istio_cache.bench.envoystats`);
4. stop the stack and write ``cell.json`` (:class:`~sp_istio_cache.bench.records.CellRecord`).

Nothing that goes wrong in the stack ends the run: Envoy, backend or upstream dying, failed
requests to a cluster, a failed warm-up or Locust run become **findings** in the record
(``status`` ``failed`` when no load could be measured) and the next cell runs.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..httpclient import request
from ..paths import DIST_WASM
from ..stack import Stack, StackSpec
from . import envoystats
from .keys import hot_key, request_path
from .locustrun import (
    CPU_WARNING_TEXT,
    PAYLOAD_SEED,
    Distribution,
    LocustOverrun,
    local_worker_argv,
    locust_argv,
    run_locust,
)
from .profile import TrafficProfile, profile_requests
from .records import (
    CELL_FILE,
    CELL_SCHEMA,
    CellRecord,
    Component,
    EnvoyFate,
    EnvoyStatsRecord,
    Finding,
    FindingKind,
    LocustRecord,
    Phase,
    RecordStatus,
    RuntimeRecord,
    UpstreamRecord,
    WarmupRecord,
    write_model,
)
from .sampler import ResourceSampler
from .scenario import FLOOR, Cell

#: hook run in a thread while Locust loads the stack: ``during(stack, cell)`` (tests: kill a part)
DuringHook = Callable[[Stack, Cell], None]
#: the cluster counters that make an ``upstream_faults`` / ``backend_faults`` finding
FAULT_COUNTERS = ("upstream_rq_5xx", "upstream_cx_connect_fail", "upstream_rq_timeout", "upstream_rq_rx_reset",
                  "upstream_rq_tx_reset", "upstream_cx_destroy_remote_with_active_rq")


class WarmupError(RuntimeError):
    """The warm-up could not seed the cache; the message says which request or wait failed."""


@dataclass
class CellContext:
    """What every cell of a run shares: the module, the profile, the load's distribution, hooks."""

    wasm_path: Path = DIST_WASM
    profile: TrafficProfile | None = None
    dist: Distribution = field(default_factory=Distribution)
    during: DuringHook | None = None
    on_tick: Callable[[float], None] | None = None


def cell_spec(cell: Cell, wasm_path: Path = DIST_WASM) -> StackSpec:
    """The stack of one cell: variant, runtime and options, Envoy binary, upstream."""
    return StackSpec(variant=cell.variant, runtime=cell.runtime, storage=cell.storage,
                     redis_url=cell.redis_url or None, backend_replicas=cell.backend_replicas,
                     fail_strategy=cell.fail_strategy,
                     plugin_config=cell.effective_plugin_config() or {}, wasm_path=wasm_path,
                     concurrency=cell.envoy_concurrency, envoy_path=Path(cell.envoy_path) if cell.envoy_path else None,
                     runtime_options=cell.runtime_options.given(), upstream_url=cell.upstream_url,
                     listen_address=None if cell.listen_address == "127.0.0.1" else cell.listen_address,
                     direct_response_bytes=cell.payload_bytes or 0 if cell.variant == FLOOR else 0)


def _upstream_record(cell: Cell) -> UpstreamRecord:
    if cell.variant == FLOOR:
        return UpstreamRecord(kind="none", url=None)
    if cell.upstream_url:
        return UpstreamRecord(kind="external", url=cell.upstream_url)
    return UpstreamRecord(kind="test-app", url=None)


def _envoy_fate(stack: Stack, phase: Phase) -> EnvoyFate:
    """Whether Envoy has ended, and why (an unreachable engine leaves it 'alive')."""
    envoy = stack.envoy
    code, oom, restarts = None, False, 0
    if envoy is not None:
        try:
            code = envoy.exited()
            oom = bool(envoy.oom_killed()) if hasattr(envoy, "oom_killed") else False
            restarts = int(envoy.restart_count()) if hasattr(envoy, "restart_count") else 0
        except Exception:  # noqa: BLE001 - the engine's own failure must not hide the cell's result
            pass
    died = code is not None or oom
    return EnvoyFate(died=died, oom_killed=oom, exit_code=code, restart_count=restarts,
                     phase=phase if died else None)


def _death_finding(fate: EnvoyFate, at_s: float | None) -> Finding:
    why = "OOM-killed" if fate.oom_killed else f"exited with code {fate.exit_code}"
    return Finding(kind="envoy_died", component="envoy", phase=fate.phase or "load", at_s=at_s,
                   detail=f"Envoy {why}", counts={})


class _Cell:
    """The state of one repetition while it runs (see :func:`run_cell`)."""

    def __init__(self, cell: Cell, repetition: int, rep_dir: Path, ctx: CellContext) -> None:
        self.cell, self.repetition, self.dir, self.ctx = cell, repetition, Path(rep_dir), ctx
        self.stack = Stack(cell_spec(cell, ctx.wasm_path), self.dir / "stack")
        self.findings: list[Finding] = []
        self.started = time.time()
        self.requests: list[dict[str, Any]] | None = None
        if ctx.profile is not None:
            self.requests = profile_requests(ctx.profile, external=bool(cell.upstream_url),
                                             cache_control=cell.cache_control, delay_ms=cell.upstream_delay_ms)

    def find(self, kind: FindingKind, component: Component, phase: Phase, detail: str,
             counts: dict[str, int] | None = None, at_s: float | None = None) -> None:
        self.findings.append(Finding(kind=kind, component=component, phase=phase, at_s=at_s,
                                     detail=detail[:500], counts=counts or {}))

    # -- reads that may fail -------------------------------------------------------------------
    def upstream_total(self, phase: Phase) -> int | None:
        if self.stack.upstream is None:
            return None
        try:
            return int(self.stack.upstream.get_json("/__stats")["total"])
        except Exception as exc:  # noqa: BLE001 - a dead upstream is a finding
            proc = self.stack.upstream.proc
            died = proc is not None and proc.poll() is not None
            if proc is not None and died and not any(f.kind == "upstream_died" for f in self.findings):
                self.find("upstream_died", "upstream", phase, f"upstream exited with code {proc.returncode}")
            elif not died:
                self.find("stats_unavailable", "upstream", phase, f"upstream /__stats: {exc}")
            return None

    def backend_stats(self, phase: Phase) -> dict[str, float] | None:
        if self.stack.backend is None:
            return None
        try:
            return {k: float(v) for k, v in self.stack.backend_stats().items() if isinstance(v, (int, float))}
        except Exception as exc:  # noqa: BLE001 - a dead backend is a finding
            proc = self.stack.backend.proc
            if proc is not None and proc.poll() is not None:
                if not any(f.kind == "backend_died" for f in self.findings):
                    self.find("backend_died", "backend", phase, f"backend exited with code {proc.returncode}")
            else:
                self.find("stats_unavailable", "backend", phase, f"backend /stats: {exc}")
            return None

    # -- warm-up -------------------------------------------------------------------------------
    def warm_up(self, timeout_s: float = 30.0) -> WarmupRecord:
        cell = self.cell
        if cell.variant == FLOOR:
            return WarmupRecord(requests=0, store_wait_ms=None)
        if self.requests is not None:
            return self._warm_profile(timeout_s)
        if not cell.target_hit_ratio:
            return WarmupRecord(requests=0, store_wait_ms=None)
        body = b"x" * cell.request_body_bytes if cell.request_body_bytes else None
        method = "POST" if body else "GET"
        stores_before = self._stores() if cell.variant == "filter" else 0
        paths = [request_path(cell.payload_bytes or 0, hot_key(i), seed=PAYLOAD_SEED, cache_control=cell.cache_control,
                              delay_ms=cell.upstream_delay_ms) for i in range(cell.hot_keys or 0)]
        for path in paths:
            reply = self._send(method, path, body)
            if reply.status != 200:
                raise WarmupError(f"warm-up {method} {path} answered {reply.status}")
        t0 = time.monotonic()
        if cell.variant == "filter":
            try:
                self.stack.wait_for_stores(stores_before + len(paths), timeout_s=timeout_s)
            except Exception as exc:  # noqa: BLE001 - timeout or a dead backend
                raise WarmupError(f"warm-up stores did not land: {exc}") from None
        elif cell.variant == "envoy-cache" and not cell.request_body_bytes:
            pending = list(paths)
            while pending:
                pending = [p for p in pending if self._send("GET", p, None).header("age") is None]
                if pending and time.monotonic() - t0 > timeout_s:
                    raise WarmupError(f"{len(pending)} hot keys still miss in Envoy's cache after {timeout_s:.0f} s")
                if pending:
                    time.sleep(0.05)
        else:
            return WarmupRecord(requests=len(paths), store_wait_ms=None)
        return WarmupRecord(requests=len(paths), store_wait_ms=(time.monotonic() - t0) * 1000)

    def _stores(self) -> int:
        try:
            return int(self.stack.backend_stats()["stores"])
        except Exception as exc:  # noqa: BLE001
            raise WarmupError(f"backend /stats: {exc}") from None

    def _send(self, method: str, path: str, body: bytes | None) -> Any:
        try:
            return request(self.stack.listener_url + path, method=method, body=body, timeout_s=10)
        except OSError as exc:
            raise WarmupError(f"warm-up {method} {path} failed: {exc!r}") from None

    def _warm_profile(self, timeout_s: float) -> WarmupRecord:
        """Every distinct request once; for ``filter``, then until the backend's stores settle."""
        assert self.requests is not None
        for req in self.requests:
            self._send(req["method"], req["path"], b"x" * req["body_bytes"] if req["body_bytes"] else None)
        if self.cell.variant != "filter":
            return WarmupRecord(requests=len(self.requests), store_wait_ms=None)
        t0 = time.monotonic()
        last, stable_since = self._stores(), time.monotonic()
        while time.monotonic() - stable_since < 0.3 and time.monotonic() - t0 < timeout_s:
            time.sleep(0.05)
            now = self._stores()
            if now != last:
                last, stable_since = now, time.monotonic()
        return WarmupRecord(requests=len(self.requests), store_wait_ms=(time.monotonic() - t0) * 1000)

    # -- load ----------------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """Locust with the sampler and the before/after reads; the measured fields of the record."""
        stack, envoy = self.stack, self.stack.envoy
        upstream_before = self.upstream_total("warm-up")
        backend_before = self.backend_stats("warm-up")
        try:
            counters_before: dict[str, int] | None = envoystats.read_values(envoy, "Counters")
        except envoystats.StatsUnavailable as exc:
            self.find("stats_unavailable", "envoy", "warm-up", str(exc))
            counters_before = None
        requests_file = None
        if self.requests is not None:
            requests_file = self.dir / "requests.json"
            requests_file.write_text(json.dumps(self.requests))
        argv = locust_argv(self.cell, stack.listener_url, self.dir / "samples.json", uuid.uuid4().hex[:12],
                           requests_file=requests_file, dist=self.ctx.dist)
        hook = _Hook(self.ctx.during, stack, self.cell)
        with ResourceSampler(stack) as sampler:
            hook.start()
            try:
                code, seconds = run_locust(argv, self.dir / "locust.log", self.cell.duration_s,
                                           worker_argv=local_worker_argv(self.ctx.dist), on_tick=self.ctx.on_tick)
            except LocustOverrun as exc:
                code, seconds = None, None
                self.find("locust_failed", "locust", "load", str(exc))
        hook.join()
        fate = _envoy_fate(stack, "load")
        self.findings.extend(sampler.findings())
        if fate.died:
            self.findings.append(_death_finding(fate, sampler.envoy_died_at_s))
        envoy_stats = None
        if counters_before is not None and not fate.died:
            try:
                envoy_stats = envoystats.stats_record(envoy, counters_before)
            except envoystats.StatsUnavailable as exc:
                self.find("stats_unavailable", "envoy", "end", str(exc))
        if envoy_stats is not None:
            self._cluster_findings(envoy_stats)
        upstream_after = self.upstream_total("end")
        backend_after = self.backend_stats("end")
        log_text = (self.dir / "locust.log").read_text(errors="replace")
        files = sorted(p.name for p in self.dir.glob("samples*.json"))
        if code not in (0, None):
            self.find("locust_failed", "locust", "load", f"Locust exited with code {code}")
        expected = max(1, self.ctx.dist.workers)
        if files and len(files) < expected:
            self.find("samples_missing", "locust", "end", f"{len(files)} of {expected} workers sent samples")
        return {
            "envoy": fate, "envoy_stats": envoy_stats, "resources": sampler.summary, "load_seconds": seconds,
            "backend_stats_before": backend_before, "backend_stats_after": backend_after,
            "upstream_requests": upstream_after - upstream_before
            if upstream_before is not None and upstream_after is not None else None,
            "locust": LocustRecord(argv=argv[1:], exit_code=code, cpu_warning=CPU_WARNING_TEXT in log_text,
                                   samples_files=files, workers=self.ctx.dist.workers),
            "measured": bool(files) and code == 0,
        }

    def _cluster_findings(self, stats: EnvoyStatsRecord) -> None:
        faults: tuple[tuple[str, FindingKind], ...] = (("upstream", "upstream_faults"),
                                                       ("sp_cache_backend", "backend_faults"))
        for cluster, kind in faults:
            counts = {k: v for k, v in stats.clusters.get(cluster, {}).items() if k in FAULT_COUNTERS and v > 0}
            if counts:
                self.find(kind, "envoy", "load", f"Envoy counted failures towards cluster {cluster}: "
                          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), counts)

    def record(self, status: RecordStatus, error: str | None, fields: dict[str, Any]) -> CellRecord:
        cell = self.cell
        base: dict[str, Any] = {
            "envoy": _envoy_fate(self.stack, "start"), "envoy_stats": None, "resources": None, "load_seconds": None,
            "backend_stats_before": None, "backend_stats_after": None, "upstream_requests": None, "locust": None,
            "warmup": WarmupRecord(requests=0, store_wait_ms=None),
        }
        base.update({k: v for k, v in fields.items() if k != "measured"})
        return CellRecord(
            schema_=CELL_SCHEMA, cell_id=cell.cell_id, repetition=self.repetition, status=status, error=error,
            cell=cell, mode=cell.mode, plugin_config=cell.effective_plugin_config(),
            runtime=RuntimeRecord(name=cell.runtime, options=cell.runtime_options.given(),
                                  envoy_path=cell.envoy_path or None),
            upstream=_upstream_record(cell), started_unix=self.started, ended_unix=time.time(),
            findings=list(self.findings), **base)


class _Hook:
    """The optional ``during`` hook in a thread; its exception is re-raised by :meth:`join`."""

    def __init__(self, hook: DuringHook | None, stack: Stack, cell: Cell) -> None:
        self.hook, self.stack, self.cell = hook, stack, cell
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def _run(self, hook: DuringHook) -> None:
        try:
            hook(self.stack, self.cell)
        except BaseException as exc:  # noqa: BLE001 - re-raised in join()
            self.error = exc

    def start(self) -> None:
        if self.hook is not None:
            self.thread = threading.Thread(target=self._run, args=(self.hook,), name="cell-hook", daemon=True)
            self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(timeout=60)
        if self.error is not None:
            raise RuntimeError(f"during-hook failed: {self.error}") from self.error


def run_cell(cell: Cell, repetition: int, rep_dir: Path, ctx: CellContext | None = None) -> CellRecord:
    """Measure one repetition of ``cell`` into ``rep_dir`` and write its ``cell.json``.

    Returns the record (``status`` ``failed`` when no load was measured). Raises only for
    Ctrl-C/SIGTERM and a failing ``during`` hook; the record is written in every case the stack
    got to start.
    """
    ctx = ctx or CellContext()
    rep_dir = Path(rep_dir)
    rep_dir.mkdir(parents=True, exist_ok=True)
    for old in rep_dir.glob("samples*.json"):
        old.unlink()
    run = _Cell(cell, repetition, rep_dir, ctx)
    rec: CellRecord | None = None
    try:
        try:
            run.stack.start()
        except Exception as exc:  # noqa: BLE001 - any start failure ends this repetition with its cause
            fate = _envoy_fate(run.stack, "start")
            if fate.died:
                run.findings.append(_death_finding(fate, None))
            run.find("stack_start_failed", "workbench", "start", f"stack did not start: {exc}")
            rec = run.record("failed", f"stack did not start: {exc}", {"envoy": fate})
            return rec
        try:
            warm = run.warm_up()
        except WarmupError as exc:
            fate = _envoy_fate(run.stack, "warm-up")
            if fate.died:
                run.findings.append(_death_finding(fate, None))
            run.backend_stats("warm-up")  # names a dead backend
            run.upstream_total("warm-up")
            run.find("warmup_failed", "workbench", "warm-up", str(exc))
            rec = run.record("failed", str(exc), {"envoy": fate})
            return rec
        fields = run.load()
        fields["warmup"] = warm
        if fields["measured"]:
            rec = run.record("measured", None, fields)
        else:
            if not fields["locust"].samples_files:
                run.find("samples_missing", "locust", "end",
                         f"Locust wrote no samples file (see {rep_dir / 'locust.log'})")
            rec = run.record("failed", "Locust did not measure the load (see findings and locust.log)", fields)
        return rec
    finally:
        run.stack.stop()
        if rec is not None:
            write_model(rep_dir / CELL_FILE, rec)
