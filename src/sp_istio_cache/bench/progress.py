"""Progress of a run: a rich progress bar on a terminal, one line per cell elsewhere (CI,
papermill, a pipe), each with the elapsed time and an ETA learnt from the cells already run."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Protocol


def clock(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour)."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunProgress(Protocol):
    """What the runner reports; see :func:`make_progress`."""

    def __enter__(self) -> RunProgress: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...
    def cell_started(self, n: int, label: str, duration_s: float) -> None: ...
    def tick(self, seconds_into_load: float) -> None: ...
    def cell_done(self, n: int, label: str, status: str, findings: int) -> None: ...
    def note(self, text: str) -> None: ...


class _Eta:
    def __init__(self, total: int, guess_s: float) -> None:
        self.total = total
        self.guess_s = guess_s
        self.t0 = time.monotonic()
        self.done = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def eta(self) -> float:
        per = self.elapsed() / self.done if self.done else self.guess_s
        return per * (self.total - self.done)


class NoProgress:
    """Nothing at all (``--no-progress``); the others override what they show."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        pass

    def cell_started(self, n: int, label: str, duration_s: float) -> None:
        pass

    def tick(self, seconds_into_load: float) -> None:
        pass

    def cell_done(self, n: int, label: str, status: str, findings: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class LineProgress(NoProgress):
    """One line per finished cell: ``[3/12] filter-p1024-... rep 1 measured  elapsed 0:41  ETA 2:03``."""

    def __init__(self, console: Any, total: int, guess_s: float) -> None:
        self.console = console
        self.eta = _Eta(total, guess_s)

    def __enter__(self) -> LineProgress:
        self.console.print(f"bench: {self.eta.total} cell repetitions, ETA {clock(self.eta.eta())}", highlight=False)
        return self

    def cell_done(self, n: int, label: str, status: str, findings: int) -> None:
        self.eta.done = n + 1
        extra = f", {findings} finding(s)" if findings else ""
        self.console.print(f"[{n + 1}/{self.eta.total}] {label} {status}{extra}  elapsed {clock(self.eta.elapsed())}"
                           f"  ETA {clock(self.eta.eta())}", highlight=False, markup=False)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)


class BarProgress(NoProgress):
    """A rich progress display: the run (with ETA) and the cell under load."""

    def __init__(self, console: Any, total: int, guess_s: float) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                             transient=False)
        self.total = total
        self.run_task: Any = None
        self.cell_task: Any = None
        self.n = 0
        self.duration_s = 1.0
        self.console = console

    def __enter__(self) -> BarProgress:
        self.bars.__enter__()
        self.run_task = self.bars.add_task(f"run ({self.total} cell repetitions)", total=self.total)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.bars.__exit__(exc_type, exc, tb)

    def cell_started(self, n: int, label: str, duration_s: float) -> None:
        self.n, self.duration_s = n, duration_s
        if self.cell_task is not None:
            self.bars.remove_task(self.cell_task)
        self.cell_task = self.bars.add_task(f"  {label}", total=duration_s)

    def tick(self, seconds_into_load: float) -> None:
        done = min(seconds_into_load, self.duration_s)
        self.bars.update(self.cell_task, completed=done)
        self.bars.update(self.run_task, completed=self.n + done / self.duration_s * 0.8)

    def cell_done(self, n: int, label: str, status: str, findings: int) -> None:
        self.bars.update(self.run_task, completed=n + 1)
        if status != "measured" or findings:
            self.console.print(f"{label}: {status}, {findings} finding(s)", highlight=False, markup=False)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)


def make_progress(mode: str, console: Any, total: int, guess_s: float) -> RunProgress:
    """``auto`` (a bar on a terminal, lines elsewhere), ``bar``, ``lines`` or ``none``.

    Raises:
        ValueError: an unknown mode.
    """
    if mode == "auto":
        mode = "bar" if console.is_terminal else "lines"
    if mode == "bar":
        return BarProgress(console, total, guess_s)
    if mode == "lines":
        return LineProgress(console, total, guess_s)
    if mode == "none":
        return NoProgress()
    raise ValueError(f"progress must be auto, bar, lines or none, got {mode!r}")
