"""Run a matrix: every cell ``repetitions`` times, interleaved, plus the generator floor, into a
run directory of raw records (``docs/bench-files.md``). No table is written here: the report
stage builds it from the files (:mod:`sp_istio_cache.bench.table`).

Before anything starts: the matrix is valid (it is a :class:`~sp_istio_cache.bench.scenario.Matrix`),
the traffic profile loads, and the filter module (when a filter variant runs) is the one its
build recorded (:func:`~sp_istio_cache.bench.identity.verify_module`). Then, in
:meth:`Matrix.schedule` order, each (cell, repetition) runs through
:func:`~sp_istio_cache.bench.cellrun.run_cell` and ``run.json`` is rewritten. A repetition that
fails (stack, warm-up, Locust) is recorded and the run goes on; Ctrl-C or SIGTERM ends the run
with status ``interrupted`` and keeps every finished cell.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import DIST_WASM
from . import manifest
from .cellrun import CellContext, DuringHook, run_cell
from .identity import verify_module
from .locustrun import Distribution
from .profile import ProfileRow, TrafficProfile, load_profile
from .progress import make_progress
from .records import PROFILE_FILE, RUN_FILE, RUN_SCHEMA, RunCell, RunManifest, rep_dir, write_model
from .scenario import Matrix

#: first guess of a repetition's start-up, warm-up and stop time (s), before one has run
OVERHEAD_GUESS_S = 4.0


@dataclass
class RunResult:
    """A finished run: its directory, manifest and wall time."""

    out_dir: Path
    manifest: RunManifest
    wall_seconds: float


def default_profile(url: str) -> TrafficProfile:
    """The profile of ``--upstream`` without ``--profile``: ``GET /``."""
    return TrafficProfile(name="root", source=f"default for {url}: GET /", rows=[ProfileRow(method="GET", path="/")])


def matrix_profile(matrix: Matrix) -> TrafficProfile | None:
    """The matrix's traffic profile (None for synthetic traffic).

    Raises:
        ProfileError: the profile file is unusable (names the file and row).
    """
    if matrix.profile:
        return load_profile(Path(matrix.profile))
    if matrix.upstream:
        return default_profile(matrix.upstream)
    return None


def prepare_module(matrix: Matrix, wasm_path: Path) -> Path | None:
    """Build the default module when stale and check its identity (None: no filter variant).

    Raises:
        ModuleIdentityError: the module differs from its build record; BuildError: the build failed.
    """
    if not any(v in ("filter", "filter-off") for v in matrix.variants):
        return None
    from ..stack import ensure_wasm

    wasm = ensure_wasm(wasm_path)
    verify_module(wasm)
    return wasm


def run_matrix(matrix: Matrix, out_dir: Path, *, wasm_path: Path = DIST_WASM, progress: str = "auto",
               console: Any = None, during: DuringHook | None = None) -> RunResult:
    """Run every (cell, repetition) of ``matrix`` into ``out_dir`` (see the module docstring).

    ``progress``: ``auto`` (a bar on a terminal, a line per cell otherwise), ``bar``, ``lines``,
    ``none``; shown on ``console`` (default: stderr).

    Raises:
        ModuleIdentityError / ProfileError / BuildError: before anything started.
        KeyboardInterrupt, SystemExit: the run was interrupted (``run.json`` says so).
    """
    from rich.console import Console

    out_dir = Path(out_dir)
    profile = matrix_profile(matrix)
    wasm = prepare_module(matrix, wasm_path)
    schedule = matrix.schedule(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    if profile is not None:
        write_model(out_dir / PROFILE_FILE, profile)
    t0 = time.time()
    run = RunManifest(
        schema_=RUN_SCHEMA, status="running", started_unix=t0, ended_unix=None, wall_seconds=None, error=None,
        parameters=matrix.model_dump(mode="json"), profile=PROFILE_FILE if profile else None,
        environment=manifest.environment(wasm),
        cells=[RunCell(cell_id=c.cell_id, repetition=r, variant=c.variant, dir=rep_dir(c.cell_id, r),
                       status="pending", seconds=None, findings=0) for c, r in schedule],
        findings=[])
    write_model(out_dir / RUN_FILE, run)
    console = console or Console(stderr=True)
    dist = Distribution(processes=matrix.processes, expect_workers=matrix.expect_workers,
                        master_bind_host=matrix.master_bind_host, master_bind_port=matrix.master_bind_port)
    shown = make_progress(progress, console, len(schedule), matrix.duration_s + OVERHEAD_GUESS_S)
    ctx = CellContext(wasm_path=wasm or wasm_path, profile=profile, dist=dist, during=during, on_tick=shown.tick)
    try:
        with shown:
            for n, (cell, repetition) in enumerate(schedule):
                entry = run.cells[n]
                entry.status = "running"
                write_model(out_dir / RUN_FILE, run)
                label = f"{cell.cell_id} rep {repetition}"
                shown.cell_started(n, label, cell.duration_s)
                t_cell = time.monotonic()
                rec = run_cell(cell, repetition, out_dir / entry.dir, ctx)
                entry.status, entry.findings = rec.status, len(rec.findings)
                entry.seconds = round(time.monotonic() - t_cell, 2)
                for f in rec.findings:
                    line = (f"{label}: {f.kind} ({f.phase}" + (f", {f.at_s:.1f} s" if f.at_s is not None else "")
                            + f"): {f.detail}")
                    run.findings.append(line)
                    shown.note(f"finding: {line}")
                shown.cell_done(n, label, rec.status, len(rec.findings))
                write_model(out_dir / RUN_FILE, run)
        run.status = "complete"
    except (KeyboardInterrupt, SystemExit):
        run.status = "interrupted"
        raise
    except BaseException as exc:
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        for entry in run.cells:
            if entry.status == "running":
                entry.status = "interrupted"  # stopped during it: no cell.json
        t1 = time.time()
        run.ended_unix, run.wall_seconds = t1, round(t1 - t0, 2)
        write_model(out_dir / RUN_FILE, run)
    return RunResult(out_dir=out_dir, manifest=run, wall_seconds=t1 - t0)
