"""Compare two benchmark runs cell by cell (a CI gate).

For every cell present in both runs (matched on variant, payload, request body, target hit ratio,
mode, users, target rate; the ``ALL`` outcome row), the ratio B/A of p50, p99, throughput (rps) and
mean Envoy RSS. A cell regresses when p50, p99 or RSS grow by more than the tolerance, or the
throughput drops by more than it. Cells found in only one run are listed, not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .results import CELL_COLUMNS, build_frame

#: (column, ratio column, True when a higher value is worse)
METRICS = (("p50_us", "p50", True), ("p99_us", "p99", True), ("rps", "rps", False),
           ("rss_mean_bytes", "rss", True))


@dataclass
class Comparison:
    """Per-cell ratios (``table``), the regressed cells and the cells only one run has."""

    table: pd.DataFrame
    regressions: pd.DataFrame
    only_in_a: list[str]
    only_in_b: list[str]
    tolerance: float

    @property
    def regressed(self) -> bool:
        return not self.regressions.empty


def compare_frames(a: pd.DataFrame, b: pd.DataFrame, tolerance: float = 0.10) -> Comparison:
    """Compare result tables ``a`` (reference) and ``b`` (candidate).

    ``table`` has the cell columns, ``<m>_a``, ``<m>_b`` and ``<m>_ratio`` (B/A) for m in p50,
    p99, rps, rss, plus ``regressed`` (bool) and ``why`` (which metrics crossed the tolerance).

    Raises:
        ValueError: tolerance not within (0, 10).
    """
    if not 0 < tolerance < 10:
        raise ValueError(f"tolerance must be within (0, 10), got {tolerance}")
    cols = [c for c, _, _ in METRICS]

    def all_rows(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["outcome"] == "ALL"][["cell_id", *CELL_COLUMNS, *cols]]

    merged = all_rows(a).merge(all_rows(b), on=CELL_COLUMNS, how="outer", suffixes=("_a", "_b"),
                               indicator=True)

    def label(row: pd.Series) -> str:
        return str(row["cell_id_a"] if isinstance(row.get("cell_id_a"), str) else row["cell_id_b"])

    only_a = [label(r) for _, r in merged[merged["_merge"] == "left_only"].iterrows()]
    only_b = [label(r) for _, r in merged[merged["_merge"] == "right_only"].iterrows()]
    table = merged[merged["_merge"] == "both"].drop(columns="_merge").copy()
    why = pd.Series([""] * len(table), index=table.index, dtype=object)
    for col, short, higher_is_worse in METRICS:
        table = table.rename(columns={f"{col}_a": f"{short}_a", f"{col}_b": f"{short}_b"})
        ratio = table[f"{short}_b"] / table[f"{short}_a"]
        table[f"{short}_ratio"] = ratio
        bad = ratio > 1 + tolerance if higher_is_worse else ratio < 1 - tolerance
        bad = bad.fillna(False)
        why = why.where(~bad, why + [f"{short} x{r:.3f} " for r in ratio])
    table["why"] = why.str.strip()
    table["regressed"] = table["why"] != ""
    table["cell"] = [label(r) for _, r in table.iterrows()]
    table = table.reset_index(drop=True)
    return Comparison(table=table, regressions=table[table["regressed"]], only_in_a=only_a,
                      only_in_b=only_b, tolerance=tolerance)


def compare_runs(run_a: Path, run_b: Path, tolerance: float = 0.10) -> Comparison:
    """Read two run directories (medians over their repetitions) and compare them.

    Raises:
        RecordError / ResultsError / SamplesError: a run is unreadable; ValueError: the runs
            share no cell.
    """
    result = compare_frames(build_frame(run_a), build_frame(run_b), tolerance)
    if result.table.empty:
        raise ValueError(f"{run_a} and {run_b} have no cell in common")
    return result
