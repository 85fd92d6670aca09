"""Run benchmark cells: a fresh stack per cell, warm-up, Locust in its own process, sampling.

One cell, in order:

1. start a fresh :class:`~sp_istio_cache.stack.Stack` for the cell's variant (free ports);
2. warm-up (when the target hit ratio is > 0): request every hot key once through the listener,
   then wait until the cache holds them: the backend's ``stores`` count for ``filter``, a HIT on
   every hot key for ``envoy-cache``; ``baseline`` and ``filter-off`` get the same requests and
   no wait;
3. read the upstream's request counter, start the :class:`ResourceSampler`, run
   ``python -m locust -f bench/cache_load.py --headless ...`` (subprocess, no shell, own process
   group, output to ``locust.log``), stop the sampler, read the upstream counter again;
4. stop the stack and write ``cell.json`` beside the Locust samples file(s).

The cell's runtime (``local`` or ``docker``), its options (``cpu_limit``, ``memory_limit``) and
``envoy_path`` go into the cell's :class:`~sp_istio_cache.stack.StackSpec`. An Envoy that the
kernel OOM-kills (at start, in the warm-up or under load), or that dies once it was ready, is a
finding, not a failure of the run: ``cell.json`` records its fate under ``envoy`` (``died``,
``oom_killed``, ``exit_code``, ``phase``), the table marks the cell, and the run goes on.

The cell directory then holds everything :mod:`sp_istio_cache.analysis.results` needs to build
the table offline: ``cell.json``, ``samples*.json``, ``locust.log`` and the stack's logs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import procutil
from ..httpclient import request
from ..paths import DIST_WASM, REPO_ROOT
from ..stack import Stack, StackSpec
from . import manifest
from .keys import hot_key, request_path
from .sampler import ResourceSampler
from .scenario import Cell, Matrix

LOCUSTFILE = REPO_ROOT / "bench" / "cache_load.py"
CELL_SCHEMA = "sp-istio-cache/cell/1"
CPU_WARNING_TEXT = "CPU usage above"
#: seconds a cell may overrun its duration (Locust start-up, stop timeout) before it is killed
LOCUST_GRACE_S = 60.0
PAYLOAD_SEED = "1"

#: hook run in a thread while Locust loads the stack: ``during(stack, cell)``
DuringHook = Callable[[Stack, Cell], None]


class CellError(RuntimeError):
    """A cell could not be measured; the message names the cell and its directory."""


def locust_argv(cell: Cell, host: str, samples_out: Path, run_token: str) -> list[str]:
    """The Locust command line of one cell (headless, no shell)."""
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-H", host,
            "-u", str(cell.users), "-r", f"{cell.spawn_rate or cell.users:g}",
            "-t", f"{max(1, math.ceil(cell.duration_s))}s", "--stop-timeout", "30",
            "--only-summary", "--exit-code-on-error", "0",
            "--payload-bytes", str(cell.payload_bytes),
            "--request-body-bytes", str(cell.request_body_bytes),
            "--hit-ratio", f"{cell.target_hit_ratio:g}", "--hot-keys", str(cell.hot_keys),
            "--payload-seed", PAYLOAD_SEED, "--cache-control", cell.cache_control,
            "--run-token", run_token, "--samples-out", str(samples_out)]
    if cell.rate > 0:
        argv += ["--rate", f"{cell.rate:g}"]
    if cell.processes > 1:
        argv += ["--processes", str(cell.processes)]
    return argv


def _warm_up(stack: Stack, cell: Cell, cell_dir: Path, timeout_s: float = 30.0) -> tuple[int, float]:
    """Seed the hot keys; return (warm-up requests sent, ms waited for the cache to hold them)."""
    if cell.target_hit_ratio <= 0:
        return 0, 0.0
    body = b"x" * cell.request_body_bytes if cell.request_body_bytes else None
    method = "POST" if body else "GET"
    stores_before = stack.backend_stats()["stores"] if cell.variant == "filter" else 0
    paths = [request_path(cell.payload_bytes, hot_key(i), seed=PAYLOAD_SEED, cache_control=cell.cache_control)
             for i in range(cell.hot_keys)]
    def fetch(path: str):
        try:
            return request(stack.listener_url + path, method=method, body=body, timeout_s=10)
        except OSError as exc:
            raise CellError(f"cell {cell.cell_id} ({cell_dir}): warm-up {method} {path} failed: "
                            f"{exc!r}") from None

    sent = 0
    for path in paths:
        reply = fetch(path)
        sent += 1
        if reply.status != 200:
            raise CellError(f"cell {cell.cell_id} ({cell_dir}): warm-up {method} {path} answered "
                            f"{reply.status}")
    t0 = time.monotonic()
    if cell.variant == "filter":
        try:
            stack.wait_for_stores(stores_before + cell.hot_keys, timeout_s=timeout_s)
        except TimeoutError as exc:
            raise CellError(f"cell {cell.cell_id} ({cell_dir}): warm-up stores did not land: {exc}") from None
    elif cell.variant == "envoy-cache" and cell.request_body_bytes == 0:
        pending = list(paths)
        while pending:
            pending = [p for p in pending if fetch(p).header("age") is None]
            if pending and time.monotonic() - t0 > timeout_s:
                raise CellError(f"cell {cell.cell_id} ({cell_dir}): {len(pending)} hot keys still miss "
                                f"in Envoy's cache after {timeout_s:.0f} s")
            if pending:
                time.sleep(0.05)
    return sent, (time.monotonic() - t0) * 1000


def run_cell(cell: Cell, cell_dir: Path, *, wasm_path: Path = DIST_WASM,
             on_tick: Callable[[float], None] | None = None, during: DuringHook | None = None) -> dict[str, Any]:
    """Measure one cell into ``cell_dir`` and return the ``cell.json`` document.

    ``on_tick(seconds_into_load)`` is called about 5 times a second while Locust runs.

    Raises:
        CellError: the stack did not start, the warm-up failed, Locust failed or overran;
            the message names the cell and its directory.
    """
    cell_dir = Path(cell_dir)
    cell_dir.mkdir(parents=True, exist_ok=True)
    for old in cell_dir.glob("samples*.json"):
        old.unlink()
    spec = cell_spec(cell, wasm_path)
    stack = Stack(spec, cell_dir / "stack")
    started = time.time()
    doc: dict[str, Any] | None = None
    try:
        try:
            stack.start()
        except Exception as exc:  # noqa: BLE001 - any start failure ends this cell with its cause
            fate = _envoy_fate(stack, "start")
            if not fate["oom_killed"]:
                raise CellError(f"cell {cell.cell_id} ({cell_dir}): stack did not start: {exc}") from exc
            doc = _died_doc(cell, started, fate, str(exc))
            return doc
        try:
            warmup_requests, store_wait_ms = _warm_up(stack, cell, cell_dir)
        except CellError as exc:
            fate = _envoy_fate(stack, "warm-up")
            if not fate["died"]:
                raise
            doc = _died_doc(cell, started, fate, str(exc))
            return doc
        upstream_before = stack.upstream.get_json("/__stats")["total"]
        filter_before = stack.filter_stats() if stack.uses_filter else {}
        backend_before = stack.backend_stats() if stack.backend else {}
        samples_out = cell_dir / "samples.json"
        argv = locust_argv(cell, stack.listener_url, samples_out, uuid.uuid4().hex[:12])
        log_path = cell_dir / "locust.log"
        log_path.write_bytes(b"")
        hook_thread = None
        hook_error: list[BaseException] = []
        with ResourceSampler(stack) as sampler:
            t_load = time.monotonic()
            proc = procutil.spawn(argv, log_path)
            try:
                if during is not None:
                    def _hook() -> None:
                        try:
                            during(stack, cell)
                        except BaseException as exc:  # noqa: BLE001 - re-raised below
                            hook_error.append(exc)
                    hook_thread = threading.Thread(target=_hook, name="cell-hook", daemon=True)
                    hook_thread.start()
                deadline = t_load + cell.duration_s + LOCUST_GRACE_S
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise CellError(f"cell {cell.cell_id} ({cell_dir}): Locust still running "
                                        f"{LOCUST_GRACE_S:.0f} s after its {cell.duration_s:g} s; killed "
                                        f"(see {log_path})")
                    if on_tick is not None:
                        on_tick(time.monotonic() - t_load)
                    time.sleep(0.2)
            finally:
                procutil.stop(proc)
            load_seconds = time.monotonic() - t_load
        if hook_thread is not None:
            hook_thread.join(timeout=30)
            if hook_error:
                raise CellError(f"cell {cell.cell_id} ({cell_dir}): during-hook failed: {hook_error[0]}") \
                    from hook_error[0]
        upstream_after = stack.upstream.get_json("/__stats")["total"]
        fate = _envoy_fate(stack, "load")
        filter_after = stack.filter_stats() if stack.uses_filter and not fate["died"] else {}
        backend_after = stack.backend_stats() if stack.backend else {}
        log_text = log_path.read_text(errors="replace")
        if proc.returncode != 0:
            raise CellError(f"cell {cell.cell_id} ({cell_dir}): Locust exited with code {proc.returncode}:\n"
                            + procutil.tail(log_path, 3000))
        if not list(cell_dir.glob("samples*.json")):
            raise CellError(f"cell {cell.cell_id} ({cell_dir}): Locust wrote no samples file; see {log_path}")
        doc = {
            "schema": CELL_SCHEMA,
            "cell_id": cell.cell_id,
            "cell": dataclasses.asdict(cell),
            "mode": cell.mode,
            "runtime": runtime_record(cell),
            "envoy": fate,
            "started_unix": started,
            "ended_unix": time.time(),
            "load_seconds": load_seconds,
            "locust_argv": argv[1:],
            "locust_exit_code": proc.returncode,
            "locust_cpu_warning": CPU_WARNING_TEXT in log_text,
            "warmup_requests": warmup_requests,
            "store_wait_ms": store_wait_ms,
            "upstream_requests": upstream_after - upstream_before,
            "filter_stats_delta": {k: filter_after.get(k, 0) - filter_before.get(k, 0) for k in filter_after},
            "backend_stats_before": backend_before,
            "backend_stats_after": backend_after,
            "resources": dataclasses.asdict(sampler.summary),
        }
    finally:
        stack.stop()
        if doc is not None:
            (cell_dir / "cell.json").write_text(json.dumps(doc, indent=2))
    return doc


def cell_spec(cell: Cell, wasm_path: Path = DIST_WASM) -> StackSpec:
    """The stack of one cell: its variant, runtime, runtime options and Envoy binary."""
    return StackSpec(variant=cell.variant, runtime=cell.runtime, storage=cell.storage,
                     plugin_config=cell.effective_plugin_config() if cell.variant in ("filter", "filter-off") else {},
                     wasm_path=wasm_path, concurrency=cell.envoy_concurrency,
                     envoy_path=Path(cell.envoy_path) if cell.envoy_path else None,
                     runtime_options=dict(cell.runtime_options))


def runtime_record(cell: Cell) -> dict[str, Any]:
    """The runtime of a cell as run.json and cell.json record it."""
    return {"name": cell.runtime, "options": dict(cell.runtime_options), "envoy_path": cell.envoy_path or None}


def _envoy_fate(stack: Stack, phase: str) -> dict[str, Any]:
    """Whether Envoy has ended, and why: ``died``, ``oom_killed``, ``exit_code``, ``restart_count``,
    ``phase`` (where the cell was when it was found dead; None when it is alive)."""
    envoy = stack.envoy
    code = None
    oom = False
    restarts = 0
    if envoy is not None:
        try:
            code = envoy.exited()
            oom = bool(envoy.oom_killed()) if hasattr(envoy, "oom_killed") else False
            restarts = int(envoy.restart_count()) if hasattr(envoy, "restart_count") else 0
        except Exception:  # noqa: BLE001 - an unreachable engine must not hide the cell's own result
            pass
    died = code is not None or oom
    return {"died": died, "oom_killed": oom, "exit_code": code, "restart_count": restarts,
            "phase": phase if died else None}


def _died_doc(cell: Cell, started: float, fate: dict[str, Any], error: str) -> dict[str, Any]:
    """cell.json of a cell whose Envoy died before Locust ran (no samples: one empty row)."""
    return {
        "schema": CELL_SCHEMA, "cell_id": cell.cell_id, "cell": dataclasses.asdict(cell), "mode": cell.mode,
        "runtime": runtime_record(cell), "envoy": fate, "error": error,
        "started_unix": started, "ended_unix": time.time(), "load_seconds": 0.0, "locust_argv": [],
        "locust_exit_code": None, "locust_cpu_warning": False, "warmup_requests": 0, "store_wait_ms": math.nan,
        "upstream_requests": 0, "filter_stats_delta": {}, "backend_stats_before": {}, "backend_stats_after": {},
        "resources": None,
    }


@dataclass
class RunResult:
    """A finished run: its directory and the results table (a pandas DataFrame)."""

    out_dir: Path
    frame: Any
    wall_seconds: float


def run_matrix(matrix: Matrix, out_dir: Path, *, wasm_path: Path = DIST_WASM, progress: bool = True,
               console: Any = None, during: DuringHook | None = None) -> RunResult:
    """Run every cell of ``matrix`` into ``out_dir`` and write the results.

    Writes ``out_dir/run.json`` (updated after every cell), ``out_dir/cells/<cell_id>/``, and at
    the end ``results.parquet`` + ``results.csv`` (see :mod:`sp_istio_cache.analysis.results`).
    A rich progress bar per cell and one for the run (with an ETA) go to ``console``.

    Raises:
        CellError: a cell failed; run.json records it (status ``failed``) and the cells measured
            before it are still in ``results.parquet``.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..analysis.results import write_results

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = matrix.cells()
    uses_filter = any(c.variant in ("filter", "filter-off") for c in cells)
    if uses_filter:
        from ..stack import ensure_wasm

        wasm_path = ensure_wasm(wasm_path)
    t0 = time.time()
    run = {
        "schema": manifest.SCHEMA, "status": "running", "started_unix": t0, "started": manifest.iso(t0),
        "ended_unix": None, "ended": None, "wall_seconds": None, "error": None,
        "parameters": matrix.as_dict(),
        "environment": manifest.environment(wasm_path if uses_filter else None),
        "cells": [{"cell_id": c.cell_id, "dir": f"cells/{c.cell_id}", "status": "pending",
                   "runtime": runtime_record(c)} for c in cells],
        "findings": [],
    }
    manifest.write(out_dir / "run.json", run)
    console = console or Console(stderr=True)
    overhead_s = 4.0  # first guess of per-cell start/warm-up/stop time; learnt as cells finish
    bars = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                    disable=not progress, transient=False)
    status = "failed"
    try:
        with bars:
            total_task = bars.add_task(f"run ({len(cells)} cells)", total=len(cells))
            for n, cell in enumerate(cells):
                run["cells"][n]["status"] = "running"
                manifest.write(out_dir / "run.json", run)
                cell_task = bars.add_task(f"  {cell.cell_id}", total=cell.duration_s)
                t_cell = time.monotonic()

                def tick(seconds: float, _task=cell_task, _n=n, _cell=cell) -> None:
                    bars.update(_task, completed=min(seconds, _cell.duration_s))
                    share = min(seconds, _cell.duration_s) / (_cell.duration_s + overhead_s)
                    bars.update(total_task, completed=_n + share)

                doc = run_cell(cell, out_dir / "cells" / cell.cell_id, wasm_path=wasm_path, on_tick=tick,
                               during=during)
                spent = time.monotonic() - t_cell
                fate = doc.get("envoy") or {}
                if fate.get("died"):
                    why = "OOM-killed" if fate.get("oom_killed") else f"exited with code {fate.get('exit_code')}"
                    finding = f"{cell.cell_id}: Envoy {why} during {fate.get('phase')}"
                    run["findings"].append(finding)
                    run["cells"][n].update(envoy_died=True, oom_killed=bool(fate.get("oom_killed")),
                                           envoy_exit_code=fate.get("exit_code"))
                    console.print(f"[yellow]finding:[/] {finding}; going on with the next cell", highlight=False)
                overhead_s = max(0.0, spent - cell.duration_s)
                bars.update(cell_task, completed=cell.duration_s)
                bars.update(total_task, completed=n + 1)
                run["cells"][n]["status"] = "done"
                run["cells"][n]["seconds"] = round(spent, 2)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        run["error"] = str(exc)
        raise
    finally:
        for c in run["cells"]:
            if c["status"] == "running":
                c["status"] = status
        t1 = time.time()
        run.update(status=status, ended_unix=t1, ended=manifest.iso(t1), wall_seconds=round(t1 - t0, 2))
        manifest.write(out_dir / "run.json", run)
        frame = write_results(out_dir) if any(c["status"] == "done" for c in run["cells"]) else None
    return RunResult(out_dir=out_dir, frame=frame, wall_seconds=t1 - t0)
