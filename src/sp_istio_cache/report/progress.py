"""Progress of a report: a rich display on a terminal; off a terminal (CI, a pipe, a log file)
one line per step and per benchmark cell, each with the elapsed time and an ETA.

The benchmark runs inside the notebook kernel, whose output goes into the notebook; its progress
is read from the files it writes (``bench/run.json``, rewritten after every cell), so the report
never depends on the kernel's streams.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ..bench.progress import clock

#: rough wall time of each step before anything is known (s); the benchmark is estimated from its cells
STEP_GUESS_S = {"01_build_filter": 20.0, "02_smoke": 40.0, "03_benchmark_matrix": 300.0,
                "04_size_limit_tuning": 30.0}
#: seconds a cell repetition costs beyond its measured duration (stack start, warm-up, stop)
CELL_OVERHEAD_S = 8.0


def bench_guess_s(params: dict[str, Any]) -> float | None:
    """Seconds the benchmark step should take: its scheduled repetitions × (duration + overhead),
    from the report's parameters; a few seconds to re-chart a ``run_dir``; None when the
    parameters do not make a matrix."""
    from ..bench.scenario import Matrix, ScenarioError, matrix_from, read_matrix_file

    if params.get("run_dir"):
        return 10.0
    given = {k: v for k, v in params.items() if v not in ("", {}, None) and k in Matrix.model_fields
             and k != "runtime"}
    try:
        base = read_matrix_file(Path(params["matrix_file"])) if params.get("matrix_file") else {}
        matrix = matrix_from(given, "report parameters", base=base)
    except (ScenarioError, ValueError):
        return None
    return len(matrix.schedule()) * (matrix.duration_s + CELL_OVERHEAD_S)


class Progress:
    """Report progress; ``mode`` ``lines`` (one line per event) or ``bar`` (rich) or ``none``."""

    def __init__(self, console: Any, mode: str, steps: list[str], guesses: dict[str, float | None]) -> None:
        self.console = console
        self.mode = mode
        self.steps = steps
        self.guess = {s: guesses.get(s) or STEP_GUESS_S.get(s, 30.0) for s in steps}
        self.done_s: dict[str, float] = {}
        self.t0 = time.monotonic()
        self.bars: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Progress:
        if self.mode == "bar":
            from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bars

            self.bars = Bars(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                             TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=self.console)
            self.bars.__enter__()
            self.tasks = {s: self.bars.add_task(f"{s:22}", total=1, note="", start=False) for s in self.steps}
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.__exit__(None, None, None)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def eta(self, current: str | None = None, current_left: float | None = None) -> float:
        """Seconds left: the current step's estimate plus the guesses of the steps after it."""
        left = current_left or 0.0
        after = False
        for s in self.steps:
            if s == current:
                after = True
                continue
            if after and s not in self.done_s:
                left += self.guess[s]
        return left

    def line(self, text: str) -> None:
        if self.mode == "lines":
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def step_started(self, index: int, name: str) -> None:
        if self.bars is not None:
            self.bars.start_task(self.tasks[name])
        self.line(f"report: [{index}/{len(self.steps)}] {name} started  elapsed {clock(self.elapsed())}"
                  f"  ETA {clock(self.eta(name, self.guess[name]))}")

    def step_skipped(self, name: str, why: str) -> None:
        self.done_s[name] = 0.0
        if self.bars is not None:
            self.bars.update(self.tasks[name], note=why, completed=1)

    def step_done(self, index: int, step: Any) -> None:
        self.done_s[step.name] = step.seconds
        if self.bars is not None:
            task = self.bars.tasks[self.tasks[step.name]]
            self.bars.update(self.tasks[step.name], completed=task.total,
                             note=f"{step.status}, {step.figures} figure(s)")
            self.bars.stop_task(self.tasks[step.name])
        self.line(f"report: [{index}/{len(self.steps)}] {step.name} {step.status} in {clock(step.seconds)}, "
                  f"{step.figures} figure(s)  elapsed {clock(self.elapsed())}  ETA {clock(self.eta(step.name))}")

    def cell(self, name: str, done: int, total: int, label: str, step_elapsed: float) -> None:
        per = step_elapsed / done if done else None
        left = per * (total - done) if per is not None else None
        if self.bars is not None:
            self.bars.update(self.tasks[name], total=total, completed=done, note=f"{done}/{total} cells")
        self.line(f"report: {name} cell {done}/{total} {label}  elapsed {clock(self.elapsed())}"
                  f"  ETA {clock(self.eta(name, left))}")


class BenchWatch:
    """Reports each finished cell repetition of ``run_dir`` (polling ``run.json`` once a second)."""

    def __init__(self, run_dir: Path, progress: Progress, step: str) -> None:
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.step = step
        self.stop = threading.Event()
        self.seen: set[tuple[str, int]] = set()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> BenchWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.poll()

    def poll(self) -> None:
        from ..bench.records import RecordError, read_run

        try:
            run = read_run(self.run_dir)
        except RecordError:
            return
        total = len(run.cells)
        for entry in run.cells:
            key = (entry.cell_id, entry.repetition)
            if entry.status in ("measured", "failed") and key not in self.seen:
                self.seen.add(key)
                extra = f", {entry.findings} finding(s)" if entry.findings else ""
                self.progress.cell(self.step, len(self.seen), total,
                                   f"{entry.cell_id} rep {entry.repetition} {entry.status}{extra}",
                                   time.monotonic() - self.t0)

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            self.poll()
