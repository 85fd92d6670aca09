"""The terminal summary of a run, read from its files: one line per cell, medians over the
repetitions with their interval, ratios to the baseline, the floor, and what went wrong."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .repetitions import ratios_to_baseline, summarize_repetitions
from .table import build_table


def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _ci(row: pd.Series, metric: str, spec: str = ",.0f") -> str:
    med = row.get(f"{metric}_median")
    if med is None or (isinstance(med, float) and math.isnan(med)):
        return "-"
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if row["repetitions"] < 2:
        return _fmt(med, spec)
    return f"{_fmt(med, spec)} [{_fmt(low, spec)}–{_fmt(high, spec)}]"


def summary_table(run_dir: Path) -> Table:
    """A rich table of the run's ``ALL`` rows (see the module docstring).

    Raises:
        RecordError / ResultsError / SamplesError: a run file is missing or malformed.
    """
    rows = ratios_to_baseline(build_table(Path(run_dir)).to_pandas())
    summary = summarize_repetitions(rows)
    flags = rows[rows["outcome"] == "ALL"].groupby("cell_id").agg(
        failed=("status", lambda s: int((s == "failed").sum())),
        limited=("generator_limited", "any"),
        kinds=("finding_kinds", lambda s: sorted({k for kinds in s for k in kinds})),
        error_max=("error_rate", "max"))
    level = summary.filter(like="_ci_level").max(axis=1).max() if not summary.empty else math.nan
    table = Table(title=escape(f"benchmark cells (ALL outcomes): median over repetitions "
                               f"[order-statistic interval, coverage {_fmt(level, '.0%')}]; latency in µs"))
    for col in ("cell", "reps", "rps", "p50", "p99", "p50/base", "rps/base", "hit ratio", "max errors", "flags"):
        table.add_column(col, justify="left" if col in ("cell", "flags") else "right", no_wrap=col != "flags")
    for _, r in summary[summary["outcome"] == "ALL"].iterrows():
        f = flags.loc[r["cell_id"]] if r["cell_id"] in flags.index else None
        notes = []
        if f is not None:
            if f["failed"]:
                notes.append(f"{f['failed']} failed")
            if f["limited"]:
                notes.append("generator-limited")
            if f["kinds"]:
                notes.append(", ".join(f["kinds"]))
        table.add_row(r["cell_id"], str(r["repetitions"]), _ci(r, "rps"), _ci(r, "p50_us"), _ci(r, "p99_us"),
                      _ci(r, "p50_ratio", ".2f"), _ci(r, "rps_ratio", ".2f"), _ci(r, "achieved_hit_ratio", ".3f"),
                      _fmt(f["error_max"] if f is not None else None, ".1%"), "; ".join(notes))
    return table


def print_summary(run_dir: Path, console: Console) -> None:
    """Print :func:`summary_table`, at least 200 columns wide (readable in logs and CI)."""
    if not (console.is_terminal and console.width >= 170):
        console = Console(file=console.file, width=max(console.width, 200), highlight=False)
    console.print(summary_table(run_dir))
