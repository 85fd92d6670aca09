"""Run the report: the notebooks in order with papermill into ``reports/<UTC time>/``.

For each notebook: the parameters it declares (from the YAML set and overrides) plus
``out_dir``, the registered venv kernel, the executed notebook written next to its HTML export
(also when a cell fails — papermill saves the notebook as it executes). A step fails the run
when a cell raises (the message names the notebook, the cell and the exception), when the kernel
dies, or when it produced no figure. At the end: ``report.html`` (every notebook in one
self-contained page), ``summary.md``, ``report.json`` (steps, times, statuses) and the
``reports/latest`` symlink (only for a report whose every step passed).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
import yaml

from .kernel import KERNEL_NAME, ensure_kernel
from .params import NOTEBOOK_DIR, split_by_notebook

NOTEBOOKS = ("01_build_filter", "02_smoke", "03_benchmark_matrix", "04_size_limit_tuning")
INJECTED = ("out_dir",)


class ReportError(RuntimeError):
    """A step failed; ``step`` names the notebook, ``report_dir`` where its evidence is."""

    def __init__(self, step: str, message: str, report_dir: Path | None = None) -> None:
        super().__init__(f"step {step} failed: {message}")
        self.step = step
        self.report_dir = report_dir


@dataclass
class StepResult:
    name: str
    status: str = "pending"  # pending | running | passed | failed | skipped
    seconds: float = 0.0
    figures: int = 0
    notebook: str = ""
    html: str = ""
    error: str = ""


@dataclass
class Report:
    out_dir: Path
    steps: list[StepResult] = field(default_factory=list)
    wall_seconds: float = 0.0
    ok: bool = False


def declared_parameters(path: Path) -> set[str]:
    """Names declared in the notebook's ``parameters`` cell (papermill's own parser)."""
    import papermill

    return set(papermill.inspect_notebook(str(path)).keys())


def count_figures(nb: nbformat.NotebookNode) -> int:
    """Image outputs (PNG or SVG) of an executed notebook."""
    return sum(1 for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
               if "image/png" in out.get("data", {}) or "image/svg+xml" in out.get("data", {}))


def export_html(nb: nbformat.NotebookNode, path: Path) -> Path:
    """Self-contained HTML (images embedded) of a notebook."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(embed_images=True).from_notebook_node(nb)
    path.write_text(body)
    return path


def _timestamp_dir(out_root: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path, n = out_root / stamp, 1
    while path.exists():
        n += 1
        path = out_root / f"{stamp}-{n}"
    return path


def _bench_watch(out_dir: Path) -> Callable[[], tuple[int, int] | None]:
    """Progress of the benchmark from its run.json (cells done, cells total)."""
    def poll() -> tuple[int, int] | None:
        try:
            run = json.loads((out_dir / "bench" / "run.json").read_text())
        except (OSError, ValueError):
            return None
        cells = run.get("cells", [])
        return sum(c.get("status") == "done" for c in cells), len(cells)
    return poll


def _execute(name: str, src: Path, out_dir: Path, parameters: dict[str, Any], kernel_name: str,
             result: StepResult) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out_nb = out_dir / f"{name}.ipynb"
    result.notebook = str(out_nb)
    t0 = time.monotonic()
    error: ReportError | None = None
    try:
        papermill.execute_notebook(str(src), str(out_nb), parameters=parameters, kernel_name=kernel_name,
                                   cwd=str(out_dir), progress_bar=False, log_output=False)
    except PapermillExecutionError as exc:
        error = ReportError(name, f"cell {exc.exec_count} (index {exc.cell_index}) raised {exc.ename}: "
                                  f"{exc.evalue} (executed notebook: {out_nb})", out_dir)
    except Exception as exc:  # noqa: BLE001 - kernel death, missing kernel, bad notebook: name the step
        error = ReportError(name, f"{type(exc).__name__}: {exc}", out_dir)
    result.seconds = round(time.monotonic() - t0, 1)
    if out_nb.exists():
        nb = nbformat.read(out_nb, as_version=4)
        result.figures = count_figures(nb)
        result.html = str(export_html(nb, out_dir / f"{name}.html"))
        if error is None and result.figures == 0:
            error = ReportError(name, f"the notebook produced no figures ({out_nb})", out_dir)
    elif error is None:
        error = ReportError(name, f"papermill wrote no executed notebook at {out_nb}", out_dir)
    if error is not None:
        result.status, result.error = "failed", str(error)
        raise error
    result.status = "passed"


def _combined_html(report: Report) -> Path | None:
    cells = []
    for step in report.steps:
        if step.notebook and Path(step.notebook).exists():
            nb = nbformat.read(step.notebook, as_version=4)
            cells.append(nbformat.v4.new_markdown_cell(f"---\n*notebook `{step.name}` · {step.status} · "
                                                       f"{step.seconds:.0f} s*"))
            cells.extend(c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", []))
    if not cells:
        return None
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"language_info": {"name": "python"}})
    return export_html(nb, report.out_dir / "report.html")


def _update_latest(out_root: Path, target: Path) -> None:
    link = out_root / "latest"
    tmp = out_root / f".latest-{target.name}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    tmp.replace(link)


def run_report(params: dict[str, Any], out_root: Path, *, notebooks: Sequence[Path] | None = None,
               only: Sequence[str] | None = None, kernel_name: str = KERNEL_NAME, console: Any = None,
               params_source: str = "", progress: bool = True) -> Report:
    """Execute the notebooks in order into a new ``out_root/<UTC time>/``; see the module docstring.

    ``notebooks`` replaces the four report notebooks (tests pass a tiny one); ``only`` runs a
    subset by name (later steps read the files earlier ones wrote, e.g. ``04`` with ``run_dir``).

    Raises:
        ParamsError: a parameter no notebook declares.
        ReportError: a step failed; names the notebook (the report directory is kept).
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .summary import write_summary

    console = console or Console(stderr=True)
    paths = list(notebooks) if notebooks is not None else [NOTEBOOK_DIR / f"{n}.ipynb" for n in NOTEBOOKS]
    names = [Path(p).stem for p in paths]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ReportError(unknown[0], f"no such step; steps: {', '.join(names)}")
    declared = {Path(p).stem: declared_parameters(Path(p)) - set(INJECTED) for p in paths}
    per_notebook = split_by_notebook(params, declared)
    out_root = Path(out_root).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    out_dir = _timestamp_dir(out_root)
    out_dir.mkdir(parents=True)
    (out_dir / "params.yaml").write_text(
        (f"# from {params_source}\n" if params_source else "") + yaml.safe_dump(params, sort_keys=False))
    report = Report(out_dir=out_dir, steps=[StepResult(n) for n in names])
    t0 = time.monotonic()
    failure: ReportError | None = None
    bars = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[note]}"),
                    TimeElapsedColumn(), console=console, disable=not progress)
    try:
        kernel = ensure_kernel(kernel_name)
        with bars:
            tasks = {n: bars.add_task(f"{n:22}", total=1, note="", start=False) for n in names}
            for path, step in zip(paths, report.steps):
                if only and step.name not in only:
                    step.status = "skipped"
                    bars.update(tasks[step.name], note="skipped", completed=1)
                    continue
                bars.start_task(tasks[step.name])
                step.status = "running"
                stop = threading.Event()
                watcher = None
                if step.name == "03_benchmark_matrix":
                    poll = _bench_watch(out_dir)

                    def watch(_task=tasks[step.name]) -> None:
                        while not stop.wait(1.0):
                            seen = poll()
                            if seen:
                                bars.update(_task, total=seen[1], completed=seen[0], note=f"{seen[0]}/{seen[1]} cells")
                    watcher = threading.Thread(target=watch, daemon=True)
                    watcher.start()
                try:
                    _execute(step.name, Path(path), out_dir, {**per_notebook[step.name], "out_dir": str(out_dir)},
                             kernel, step)
                finally:
                    stop.set()
                    if watcher is not None:
                        watcher.join()
                    task = bars.tasks[tasks[step.name]]
                    bars.update(tasks[step.name], completed=task.total,
                                note=f"{step.status}, {step.figures} figure(s)")
                    bars.stop_task(tasks[step.name])
    except ReportError as exc:
        failure = exc
    except Exception as exc:  # noqa: BLE001 - e.g. the kernel could not be registered
        failure = ReportError("setup", f"{type(exc).__name__}: {exc}", out_dir)
    finally:
        report.wall_seconds = round(time.monotonic() - t0, 1)
        report.ok = failure is None
        _combined_html(report)
        (out_dir / "report.json").write_text(json.dumps(
            {"ok": report.ok, "wall_seconds": report.wall_seconds, "params_source": params_source,
             "error": str(failure) if failure else None, "steps": [asdict(s) for s in report.steps]}, indent=2))
        write_summary(out_dir, report, failure)
    if failure is not None:
        raise failure
    _update_latest(out_root, out_dir)
    return report
