"""What a report says about itself: per-step status, the report's status, its exit code, and
``report.json`` (schema ``sp-istio-cache/report/1``).

Step status: ``pending`` → ``running`` → ``passed`` | ``failed`` | ``interrupted``; a step left
out by ``--only`` is ``skipped``; a step after a failure or an interruption is ``not-run``.

Report status and exit code (:func:`conclude`), the first that applies:

=============  ====  ===================================================================
status         exit  when
=============  ====  ===================================================================
interrupted    130   Ctrl-C or SIGTERM while a step ran
failed         1     a step failed (its error names the notebook and cell)
passed         3     every step ran, but the recommendation was **refused** (its reasons)
partial        3     ``--only`` steps ran, and the recommendation they made was refused
passed         4     the recommendation was accepted, but cells outside it failed the gate
partial        4     the same for ``--only`` runs
passed         0     every step passed, the recommendation (if any) was accepted
partial        0     every requested step passed; the others did not run (named)
=============  ====  ===================================================================
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "sp-istio-cache/report/1"
EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_GATE, EXIT_INTERRUPTED = 0, 1, 3, 4, 130


@dataclass
class StepResult:
    """One notebook of the report: status, wall seconds, figures, executed notebook and HTML, error."""

    name: str
    status: str = "pending"
    seconds: float = 0.0
    figures: int = 0
    notebook: str = ""
    html: str = ""
    error: str = ""


@dataclass
class Report:
    """A report's state; :func:`conclude` fills ``status``, ``exit_code`` and ``headline``."""

    out_dir: Path
    steps: list[StepResult] = field(default_factory=list)
    wall_seconds: float = 0.0
    status: str = "pending"
    exit_code: int = EXIT_OK
    headline: str = ""
    error: str = ""
    params_source: str = ""
    verdict: dict[str, Any] | None = None
    gate: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True only when the exit code is 0."""
        return self.exit_code == EXIT_OK

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)

    def ran(self) -> list[str]:
        return [s.name for s in self.steps if s.status not in ("skipped", "not-run", "pending")]

    def left_out(self) -> list[str]:
        return [s.name for s in self.steps if s.status in ("skipped", "not-run", "pending")]


def _verdict_line(verdict: dict[str, Any]) -> str:
    codes = ", ".join(r["code"] for r in verdict.get("refusals", []))
    return f"the recommendation was REFUSED ({codes}): {'; '.join(verdict.get('reasons', []))}"


def conclude(report: Report, *, interrupted: bool, failure: str | None) -> Report:
    """Set ``status``, ``exit_code`` and a one-line ``headline`` (module docstring's table)."""
    n = len(report.steps)
    running = next((s for s in report.steps if s.status in ("running", "interrupted")), None)
    if interrupted:
        report.status, report.exit_code = "interrupted", EXIT_INTERRUPTED
        where = f" during step {running.name}" if running else ""
        report.headline = (f"INTERRUPTED{where} after {report.wall_seconds:.0f} s; not run: "
                           f"{', '.join(report.left_out()) or 'none'}")
        return report
    if failure is not None:
        report.status, report.exit_code, report.error = "failed", EXIT_FAILED, failure
        report.headline = f"FAILED: {failure}"
        return report
    partial = any(s.status == "skipped" for s in report.steps)
    report.status = "partial" if partial else "passed"
    ran = report.ran()
    if partial:
        report.headline = (f"Partial report: ran {', '.join(ran)} ({len(ran)} of {n} steps, all passed); not run: "
                           f"{', '.join(report.left_out())}")
    else:
        report.headline = f"All {n} steps passed in {report.wall_seconds:.0f} s"
    if report.verdict is not None and not report.verdict.get("trusted", False):
        report.exit_code = EXIT_REFUSED
        report.headline += f", but {_verdict_line(report.verdict)}"
    elif report.gate:
        report.exit_code = EXIT_GATE
        report.headline += f", but {len(report.gate)} repetition(s) failed the gate: {report.gate[0]}"
    return report


def write_report_json(report: Report) -> Path:
    """``report.json``: the status, exit code, headline, steps and verdict, for machines."""
    doc = {"schema": SCHEMA, "status": report.status, "exit_code": report.exit_code, "ok": report.ok,
           "headline": report.headline, "error": report.error or None, "wall_seconds": report.wall_seconds,
           "params_source": report.params_source, "not_run": report.left_out(),
           "verdict": report.verdict, "gate": report.gate, "steps": [asdict(s) for s in report.steps]}
    path = report.out_dir / "report.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path
