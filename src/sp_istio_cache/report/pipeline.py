"""Run the report: the notebooks in order with papermill into ``reports/<UTC time>/``.

For each notebook: the parameters it declares (from the YAML set and overrides) plus
``out_dir``, the registered venv kernel, the executed notebook written next to its HTML export
(also when a cell fails: papermill saves the notebook as it executes). A step fails when a cell
raises (the message names the notebook, the cell and the exception), when the kernel dies, or
when it produced no figure; the steps after it do not run.

Ctrl-C or SIGTERM: the kernel runs in its own process group and never sees the terminal's
signal, so the report interrupts it (SIGINT: the cell's own cleanup runs, e.g. the bench stops
its stack and marks its run interrupted), waits up to :data:`INTERRUPT_GRACE_S`, then stops it.

At the end, whatever happened: ``report.json`` (status, exit code, steps; see
:mod:`sp_istio_cache.report.status`), ``summary.md`` and ``report.html`` (title, verdict and
recommendation, summary, then every notebook). ``reports/latest`` moves to a report whose
requested steps all ran (passed or partial), refused recommendations included, so that
``istio render`` reads the newest verdict.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
import yaml

from .kernel import KERNEL_NAME, ensure_kernel
from .notebooks import NOTEBOOKS, materialize, source_path
from .params import ParamsError, split_by_notebook
from .progress import BenchWatch, Progress, bench_guess_s
from .status import Report, StepResult, conclude, write_report_json

INJECTED = ("out_dir",)
#: seconds an interrupted kernel gets to finish its cell's cleanup before it is stopped
INTERRUPT_GRACE_S = 60.0
#: environment of the kernel: no debugger and Jupyter-path warnings in the report's output
QUIET_ENV = {"PYDEVD_DISABLE_FILE_VALIDATION": "1", "JUPYTER_PLATFORM_DIRS": "1", "PYTHONWARNINGS": "ignore",
             "MPLBACKEND": "Agg"}


#: arguments of the kernel: its own log (e.g. the loopback-TCP notice) stays out of the report's output
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


class ReportError(RuntimeError):
    """A step failed; ``step`` names the notebook, ``report_dir`` where its evidence is."""

    def __init__(self, step: str, message: str, report_dir: Path | None = None) -> None:
        super().__init__(f"step {step} failed: {message}")
        self.step = step
        self.report_dir = report_dir


class Interrupted(BaseException):
    """SIGTERM arrived (handled like Ctrl-C)."""


def declared_parameters(path: Path) -> set[str]:
    """Names declared in the notebook's ``parameters`` cell (papermill's own parser; ``path``
    is an ``.ipynb``)."""
    import papermill

    return set(papermill.inspect_notebook(str(path)).keys())


def count_figures(nb: nbformat.NotebookNode) -> int:
    """Image outputs (PNG or SVG) of an executed notebook."""
    return sum(1 for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
               if "image/png" in out.get("data", {}) or "image/svg+xml" in out.get("data", {}))


def export_html(nb: nbformat.NotebookNode, path: Path, title: str | None = None, code: bool = True) -> Path:
    """Self-contained HTML (images embedded) of a notebook; ``code`` False leaves the code cells'
    source out (their outputs stay)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(embed_images=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            exclude_input=not code)
    if title:
        nb.metadata["title"] = title
    body, _ = exporter.from_notebook_node(nb)
    path.write_text(body)
    return path


def _timestamp_dir(out_root: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path, n = out_root / stamp, 1
    while path.exists():
        n += 1
        path = out_root / f"{stamp}-{n}"
    return path


def _kernel_processes() -> list[Any]:
    import psutil

    return [p for p in psutil.Process().children(recursive=False)
            if any("ipykernel" in part for part in (p.cmdline() if p.is_running() else []))]


def _stop_kernel(done: threading.Event) -> None:
    """Interrupt the running kernel (SIGINT), give its cell :data:`INTERRUPT_GRACE_S` to clean
    up, then end its process group. ``done`` is set when the notebook's execution returned (an
    Event, not ``Thread.join``: before Python 3.13 a join interrupted by KeyboardInterrupt can
    mark a running thread as stopped)."""
    kernels = _kernel_processes()
    for proc in kernels:
        proc.send_signal(signal.SIGINT)
    try:
        done.wait(INTERRUPT_GRACE_S)
    except (KeyboardInterrupt, Interrupted):
        pass  # asked twice: stop now
    for proc in kernels:
        if proc.is_running():
            try:
                os.killpg(os.getpgid(proc.pid), signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
    done.wait(10)


def _execute(name: str, src: Path, out_dir: Path, parameters: dict[str, Any], kernel_name: str,
             result: StepResult, progress: Progress) -> None:
    """Run one notebook in a worker thread (so that the main thread can take Ctrl-C / SIGTERM)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out_nb = out_dir / f"{name}.ipynb"
    result.notebook = str(out_nb)
    errors: list[ReportError] = []
    done = threading.Event()

    def work() -> None:
        try:
            papermill.execute_notebook(str(src), str(out_nb), parameters=parameters, kernel_name=kernel_name,
                                       cwd=str(out_dir), progress_bar=False, log_output=False,
                                       extra_arguments=KERNEL_ARGS)
        except PapermillExecutionError as exc:
            errors.append(ReportError(name, f"cell {exc.exec_count} (index {exc.cell_index}) raised {exc.ename}: "
                                            f"{exc.evalue} (executed notebook: {out_nb})", out_dir))
        except Exception as exc:  # noqa: BLE001 - kernel death, missing kernel: name the step
            errors.append(ReportError(name, f"{type(exc).__name__}: {exc}", out_dir))
        finally:
            done.set()

    t0 = time.monotonic()
    worker = threading.Thread(target=work, name=f"papermill-{name}", daemon=True)
    watch = BenchWatch(out_dir / "bench", progress, name) if name.startswith("03_") else None
    try:
        if watch:
            watch.__enter__()
        worker.start()
        while not done.wait(0.2):
            pass
    except (KeyboardInterrupt, Interrupted):
        result.status = "interrupted"
        _stop_kernel(done)
        raise
    finally:
        if watch:
            watch.__exit__(None, None, None)
        result.seconds = round(time.monotonic() - t0, 1)
        _collect(out_nb, out_dir, name, result)
    error = errors[0] if errors else None
    if error is None and not out_nb.exists():
        error = ReportError(name, f"papermill wrote no executed notebook at {out_nb}", out_dir)
    if error is None and result.figures == 0:
        error = ReportError(name, f"the notebook produced no figures ({out_nb})", out_dir)
    if error is not None:
        result.status, result.error = "failed", str(error)
        raise error
    result.status = "passed"


def _collect(out_nb: Path, out_dir: Path, name: str, result: StepResult) -> None:
    if out_nb.exists():
        nb = nbformat.read(out_nb, as_version=4)
        result.figures = count_figures(nb)
        result.html = str(export_html(nb, out_dir / f"{name}.html", title=name))


def _combined_html(report: Report, summary_md: str) -> Path:
    """``report.html``: the summary (title, verdict, recommendation) first, then each notebook
    without its injected-parameters cell and without code (the executed notebooks keep it)."""
    cells = [nbformat.v4.new_markdown_cell(summary_md)]
    for step in report.steps:
        if step.notebook and Path(step.notebook).exists():
            nb = nbformat.read(step.notebook, as_version=4)
            cells.append(nbformat.v4.new_markdown_cell(f"---\n*notebook `{step.name}` · {step.status} · "
                                                       f"{step.seconds:.0f} s*"))
            cells.extend(c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", []))
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"language_info": {"name": "python"}})
    return export_html(nb, report.out_dir / "report.html", title=f"SP-Istio Cache report {report.out_dir.name}",
                       code=False)


def _update_latest(out_root: Path, target: Path) -> None:
    link = out_root / "latest"
    tmp = out_root / f".latest-{target.name}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    tmp.replace(link)


def _read_outcome(report: Report) -> None:
    """The verdict and gate the steps wrote (files), into the report."""
    import json

    from .tuning_step import load_recommendation

    report.verdict = load_recommendation(report.out_dir)
    gate = report.out_dir / "gate.json"
    if gate.is_file():
        report.gate = json.loads(gate.read_text())["failures"]


def _sigterm_handler(*_: Any) -> None:
    raise Interrupted()


def _check_bench_parameters(parameters: dict[str, Any] | None) -> None:
    """A bad benchmark parameter is refused before the build and smoke steps run, not minutes later.

    Raises:
        ParamsError: naming the key.
    """
    if not parameters:
        return
    from ..bench.scenario import ScenarioError
    from .bench_step import check_parameters

    try:
        check_parameters(**{k: v for k, v in parameters.items() if k not in INJECTED})
    except ScenarioError as exc:
        raise ParamsError(str(exc)) from None


def run_report(params: dict[str, Any], out_root: Path, *, notebooks: Sequence[Path] | None = None,
               only: Sequence[str] | None = None, kernel_name: str = KERNEL_NAME, console: Any = None,
               params_source: str = "", progress: str = "auto") -> Report:
    """Execute the notebooks in order into a new ``out_root/<UTC time>/`` and conclude (module
    docstring). Never raises for a failed step or an interruption: the returned report's
    ``status`` and ``exit_code`` say what happened.

    ``notebooks`` replaces the report's notebooks (``.py`` percent or ``.ipynb``; tests pass a
    tiny one); ``only`` runs a subset by name (later steps read the files earlier ones wrote,
    e.g. ``04`` with ``run_dir``). ``progress``: ``auto`` (rich on a terminal, lines otherwise),
    ``bar``, ``lines``, ``none``.

    Raises:
        ParamsError: a parameter no notebook declares; ReportError: an unknown ``only`` step.
    """
    from rich.console import Console

    from .summary import write_summary

    console = console or Console(stderr=True)
    paths = [Path(p) for p in notebooks] if notebooks is not None else [source_path(n) for n in NOTEBOOKS]
    names = [p.stem for p in paths]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ReportError(unknown[0], f"no such step; steps: {', '.join(names)}")
    os.environ.update(QUIET_ENV)
    with tempfile.TemporaryDirectory(prefix="sp-report-") as tmp:
        sources = [materialize(p, Path(tmp)) for p in paths]
        declared = {s.stem: declared_parameters(s) - set(INJECTED) for s in sources}
        per_notebook = split_by_notebook(params, declared)
        _check_bench_parameters(per_notebook.get("03_benchmark_matrix"))
        out_root = Path(out_root).resolve()
        out_dir = _timestamp_dir(out_root)
        out_dir.mkdir(parents=True)
        (out_dir / "params.yaml").write_text(
            (f"# from {params_source}\n" if params_source else "") + yaml.safe_dump(params, sort_keys=False))
        report = Report(out_dir=out_dir, steps=[StepResult(n) for n in names], params_source=params_source)
        mode = progress if progress != "auto" else ("bar" if console.is_terminal else "lines")
        guesses = {"03_benchmark_matrix": bench_guess_s(per_notebook.get("03_benchmark_matrix", {}))}
        main = threading.current_thread() is threading.main_thread()
        # Ctrl-C and SIGTERM are handled even when the shell that started us ignores SIGINT
        # (background jobs of a non-interactive shell do)
        old_handlers = ({signal.SIGTERM: signal.signal(signal.SIGTERM, _sigterm_handler),
                         signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)} if main else {})
        t0 = time.monotonic()
        failure: str | None = None
        interrupted = False
        try:
            with Progress(console, mode, names, guesses) as bars:
                kernel = ensure_kernel(kernel_name)
                for index, (src, step) in enumerate(zip(sources, report.steps), start=1):
                    if only and step.name not in only:
                        step.status = "skipped"
                        bars.step_skipped(step.name, "skipped (--only)")
                        continue
                    step.status = "running"
                    bars.step_started(index, step.name)
                    try:
                        _execute(step.name, src, out_dir, {**per_notebook[step.name], "out_dir": str(out_dir)},
                                 kernel, step, bars)
                    finally:
                        bars.step_done(index, step)
        except ReportError as exc:
            failure = str(exc)
        except (KeyboardInterrupt, Interrupted):
            interrupted = True
        except Exception as exc:  # noqa: BLE001 - e.g. the kernel could not be registered
            failure = f"setup: {type(exc).__name__}: {exc}"
        finally:
            for signum, handler in old_handlers.items():
                signal.signal(signum, handler)
            for step in report.steps:
                if step.status in ("pending", "running"):
                    step.status = "interrupted" if (interrupted and step.status == "running") else "not-run"
            report.wall_seconds = round(time.monotonic() - t0, 1)
            _read_outcome(report)
            conclude(report, interrupted=interrupted, failure=failure)
            write_report_json(report)
            summary = write_summary(out_dir, report)
            _combined_html(report, summary.read_text())
    if report.status in ("passed", "partial"):
        _update_latest(out_root, out_dir)
    return report
