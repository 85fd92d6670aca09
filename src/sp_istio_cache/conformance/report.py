"""The conformance run's files: ``<profile>/classified.json`` per measured profile (beside the
client's raw ``<profile>/results.json``), and ``summary.md``: the comparison table with the
published caches and, per measured profile, its required failures with the listed reasons."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .counting import COLUMNS, Row
from .expected import ExpectedFailure, GateResult
from .suite import EXCLUDED_SUITES, Suite


@dataclass
class Measured:
    """One profile run here: its ``profile`` name, ``classified`` {test id: result type}, the
    raw ``results_path``, and the ``gate`` outcome (None when the gate was not asked for)."""

    profile: str
    classified: dict[str, str]
    results_path: Path
    gate: GateResult | None = None


def write_classified(path: Path, classified: Mapping[str, str]) -> None:
    """``{test_id: result type}`` as indented JSON, in the suite's order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(classified), indent=2) + "\n")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table(rows: Sequence[Row]) -> str:
    """The comparison table in Markdown: one row per cache, one column per result type."""
    head = ["cache", "source", *COLUMNS.values()]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
    for row in rows:
        name = f"{row.label} {row.version}".strip()
        cells = [_cell(name), row.source, *(str(row.counts[k]) for k in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def failures_section(suite: Suite, run: Measured, expected: Sequence[ExpectedFailure],
                     baseline: Mapping[str, str] | None) -> str:
    """Markdown for one profile: its required failures (id, name, reason from the list, and
    whether the same test also fails with no cache when a baseline was measured), then the
    gate's verdict."""
    reasons = {e.id: e.reason for e in expected}
    failures = [i for i in suite.counted_ids() if run.classified.get(i) == "fail"]
    out = [f"## Required failures: {run.profile} ({len(failures)})", ""]
    if failures:
        head = ["id", "name", *(["baseline"] if baseline is not None else []), "reason (expected-failures list)"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for test_id in failures:
            cells = [f"`{test_id}`", _cell(suite.tests[test_id].name)]
            if baseline is not None:
                cells.append(baseline.get(test_id, "-"))
            cells.append(_cell(reasons.get(test_id, "**not on the list**")))
            out.append("| " + " | ".join(cells) + " |")
    else:
        out.append("None.")
    if run.gate is not None:
        out += ["", "Gate: " + ("passed." if run.gate.ok else "FAILED:")]
        out += [f"- {line}" for line in run.gate.problems()]
    return "\n".join(out)


def summary(suite: Suite, rows: Sequence[Row], runs: Sequence[Measured],
            expected: Mapping[str, Sequence[ExpectedFailure]], baseline: Mapping[str, str] | None) -> str:
    """The whole ``summary.md`` text."""
    commit_file = suite.root / "UPSTREAM_COMMIT"
    commit = commit_file.read_text().split()[0] if commit_file.exists() else "unknown"
    excluded = [t for t in suite.tests.values() if t.excluded]
    parts = [
        "# HTTP caching conformance (the cache-tests.fyi suite)",
        "",
        f"Suite: `{suite.root}` (upstream commit `{commit}`). Counted: {len(suite.counted_ids())} tests; "
        f"left out everywhere: {len(excluded)} tests ({', '.join(f'`{t.id}`' for t in excluded)}): "
        + "; ".join(EXCLUDED_SUITES.values()) + ".",
        "",
        "Each test has one result type, from the suite's own `determineTestResult` (dependencies "
        "honoured). *pass* counts required and optimal tests that passed (not the *check yes* "
        "answers); *required FAIL* counts required tests that failed themselves (a test whose "
        "dependency did not pass is a *dependency fail*). See docs/conformance.md.",
        "",
        table(rows),
    ]
    for run in runs:
        parts += ["", failures_section(suite, run, expected.get(run.profile, ()),
                                       baseline if run.profile != "baseline" else None)]
    return "\n".join(parts) + "\n"
