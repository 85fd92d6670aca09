"""The ``report`` command: parameters in, a report directory and an exit code out.

Exit codes are those of :mod:`sp_istio_cache.report.status` (0 passed, 1 a step failed, 3 the
recommendation was refused, 4 cells failed the gate, 130 interrupted); 2 when the command was
refused before anything ran (bad parameter file or override, unknown step).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from .status import EXIT_GATE, EXIT_OK, EXIT_REFUSED

EXIT_USAGE = 2


def run(params: str, overrides: Sequence[str], out: Path | None, *, only: str | None, kernel: str,
        progress: str, console: Any, err: Any, notebooks: Sequence[Path] | None = None) -> int:
    """Run a report and print where it is, its headline and its summary; return the exit code.

    Relative paths among the parameters (``run_dir``, ``matrix_file``, ...) are resolved against
    the current directory before the notebooks (which run inside the report folder) see them.
    """
    from ..paths import REPO_ROOT
    from . import params as report_params
    from .pipeline import ReportError, run_report

    try:
        values = report_params.load(params)
        values.update(report_params.parse_overrides(list(overrides)))
        values = report_params.resolve_paths(values)
        report = run_report(values, out or REPO_ROOT / "reports",
                            only=[s.strip() for s in only.split(",") if s.strip()] if only else None,
                            kernel_name=kernel, console=err, params_source=params, progress=progress,
                            notebooks=notebooks)
    except (report_params.ParamsError, ReportError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_USAGE
    console.print((report.out_dir / "summary.md").read_text(), highlight=False, markup=False, soft_wrap=True)
    style = "green" if report.exit_code == EXIT_OK else "bold red"
    # the verdict, not the steps, decides the first word: "passed" beside exit 3 would read as a yes
    word = {EXIT_REFUSED: "refused", EXIT_GATE: "failed the gate"}.get(report.exit_code, report.status)
    err.print(f"[{style}]report {word} (exit {report.exit_code}):[/] {report.headline}", highlight=False,
              soft_wrap=True)
    err.print(f"report written to {report.out_dir}", highlight=False, soft_wrap=True)
    return report.exit_code
