"""Repetitions: ratios to the baseline per repetition, and medians with a confidence interval.

Functions over the results rows (:func:`sp_istio_cache.bench.table.build_table`), so they read
files only. A run measures each cell ``repetitions`` times, interleaved across the variants of a
point; a ratio is taken **within** one repetition (cell / baseline of the same point and the same
repetition: both met the same drift), then summarised over the repetitions.

Interval: the distribution-free order-statistic confidence interval for the median
(W. J. Conover, *Practical Nonparametric Statistics*, 3rd ed., 1999, §3.2 "confidence interval
for a quantile"; G. J. Hahn & W. Q. Meeker, *Statistical Intervals*, 1991, §5.2). With the sorted
values x(1) ≤ … ≤ x(n), the interval [x(r), x(n−r+1)] covers the median with probability
P(r ≤ B ≤ n−r), B ~ Binomial(n, ½). We take the largest r whose coverage reaches the requested
level; when even r = 1 does not (n ≤ 5 at 95 %), the interval is [min, max] and ``ci_level``
says the coverage it really has (75 % for n = 3, 87.5 % for n = 4). It assumes only that the
repetitions are independent draws of one distribution — no normality, sensible for 3–10 values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .table import FLOOR_COLUMNS, POINT_COLUMNS, build_table

#: metrics summarised per cell, and the ratio columns added by :func:`ratios_to_baseline`
METRICS = ("p50_us", "p90_us", "p99_us", "rps", "error_rate", "achieved_hit_ratio", "cpu_s_per_1k_requests",
           "rss_mean_bytes", "p50_ratio", "p99_ratio", "rps_ratio", "cpu_s_per_1k_ratio", "rss_over_baseline_bytes",
           "cpu_s_per_1k_over_baseline")
_BASE = {"p50_us": "p50_ratio", "p99_us": "p99_ratio", "rps": "rps_ratio",
         "cpu_s_per_1k_requests": "cpu_s_per_1k_ratio"}


def median_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(median, low, high, achieved coverage) of ``values`` (NaN/None dropped); see the module
    docstring for the method. No value: four NaN.

    Raises:
        ValueError: ``level`` not within (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be within (0, 1), got {level}")
    xs = sorted(float(v) for v in values if v is not None and not math.isnan(float(v)))
    n = len(xs)
    if n == 0:
        return (math.nan, math.nan, math.nan, math.nan)
    mid = n // 2
    median = xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2

    def coverage(r: int) -> float:
        return sum(math.comb(n, k) for k in range(r, n - r + 1)) / 2 ** n

    best = 1
    for r in range(1, n // 2 + 1):
        if coverage(r) >= level:
            best = r
    return median, xs[best - 1], xs[n - best], coverage(best)


def intervals_separate(low_a: float, high_a: float, low_b: float, high_b: float) -> bool:
    """True when two intervals do not overlap (a difference may be called)."""
    return high_a < low_b or high_b < low_a


def ratios_to_baseline(frame: pd.DataFrame) -> pd.DataFrame:
    """Add, per row, the ratio to the ``baseline`` ALL row of the same point and repetition
    (``p50_ratio``, ``p99_ratio``, ``rps_ratio``, ``cpu_s_per_1k_ratio``), the differences
    ``rss_over_baseline_bytes`` and ``cpu_s_per_1k_over_baseline``, and the generator floor of the
    same (size, load) and repetition (``floor_p50_us``, ``floor_p99_us``, ``floor_rps``). NaN where
    the run has no baseline or no floor for the row (e.g. the floor's own rows have no baseline)."""
    frame = frame.copy()
    keys = [*POINT_COLUMNS, "repetition"]
    base = frame[(frame["variant"] == "baseline") & (frame["outcome"] == "ALL")]
    base = base[[*keys, *_BASE, "rss_mean_bytes"]].rename(columns={c: f"_b_{c}" for c in [*_BASE, "rss_mean_bytes"]})
    merged = frame.merge(base, on=keys, how="left", validate="many_to_one")
    for col, ratio in _BASE.items():
        merged[ratio] = merged[col] / merged[f"_b_{col}"]
    merged["rss_over_baseline_bytes"] = merged["rss_mean_bytes"] - merged["_b_rss_mean_bytes"]
    merged["cpu_s_per_1k_over_baseline"] = merged["cpu_s_per_1k_requests"] - merged["_b_cpu_s_per_1k_requests"]
    fkeys = [*FLOOR_COLUMNS, "repetition"]
    floor = frame[(frame["variant"] == "floor") & (frame["outcome"] == "ALL")][[*fkeys, "p50_us", "p99_us", "rps"]]
    floor = floor.rename(columns={"p50_us": "floor_p50_us", "p99_us": "floor_p99_us", "rps": "floor_rps"})
    merged = merged.merge(floor, on=fkeys, how="left", validate="many_to_one")
    return merged.drop(columns=[c for c in merged.columns if c.startswith("_b_")])


def summarize_repetitions(frame: pd.DataFrame, metrics: Sequence[str] = METRICS,
                          level: float = 0.95) -> pd.DataFrame:
    """One row per (cell, outcome): the point columns, ``repetitions`` (values summarised) and
    for every metric ``<m>_median``, ``<m>_ci_low``, ``<m>_ci_high``, ``<m>_ci_level``.

    ``frame``: results rows, with :func:`ratios_to_baseline` applied when ratio metrics are
    asked for. Failed repetitions (status ``failed``) are left out; ``repetitions`` counts the
    measured ones.
    """
    measured = frame[frame["status"] == "measured"]
    ident = ["cell_id", "variant", *[c for c in POINT_COLUMNS if c in frame.columns], "outcome"]
    out: list[dict[str, Any]] = []
    for key, group in measured.groupby(ident, dropna=False, sort=False):
        row = dict(zip(ident, key))
        row["repetitions"] = len(group)
        for m in metrics:
            if m not in group.columns:
                continue
            med, low, high, cover = median_ci(group[m].tolist(), level)
            row.update({f"{m}_median": med, f"{m}_ci_low": low, f"{m}_ci_high": high, f"{m}_ci_level": cover})
        out.append(row)
    return pd.DataFrame(out)


def run_summary(run_dir: Path, level: float = 0.95) -> pd.DataFrame:
    """:func:`summarize_repetitions` of a run directory's rows, ratios included."""
    return summarize_repetitions(ratios_to_baseline(build_table(run_dir).to_pandas()), level=level)


def median_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, outcome) with the same columns as ``frame`` but ``repetition``:
    numbers are medians over the measured repetitions, flags (bool) are true when any
    repetition's was, text is the first repetition's; ``repetitions`` counts them. A cell whose
    every repetition failed keeps its first failed row. Row order: first appearance."""
    measured = frame[frame["status"] == "measured"]
    failed_only = frame[~frame["cell_id"].isin(measured["cell_id"])].drop_duplicates(["cell_id", "outcome"])
    out = []
    for (_, _), group in measured.groupby(["cell_id", "outcome"], sort=False):
        row: dict[str, Any] = {}
        for col in frame.columns:
            if col == "repetition":
                continue
            values = group[col]
            if values.dtype == bool or col in ("upstream_mismatch",):
                row[col] = bool(values.fillna(False).astype(bool).any())
            elif pd.api.types.is_numeric_dtype(values):
                row[col] = values.median()
            else:
                row[col] = values.iloc[0]
        row["repetitions"] = len(group)
        out.append(row)
    failed = failed_only.drop(columns="repetition").assign(repetitions=0)
    return pd.concat([pd.DataFrame(out), failed], ignore_index=True) if len(failed) else pd.DataFrame(out)
