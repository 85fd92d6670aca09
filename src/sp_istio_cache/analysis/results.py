"""A benchmark run as the report reads it, from its files only (``docs/bench-files.md``).

:func:`load_run` gives a :class:`RunData`:

- ``rows``: one row per cell × repetition × outcome (:func:`sp_istio_cache.bench.table.build_table`)
  with the per-repetition ratios to the baseline and the generator floor of the same repetition
  (:func:`sp_istio_cache.bench.repetitions.ratios_to_baseline`);
- ``cells``: one row per cell × outcome, the median of every metric over the measured
  repetitions with its order-statistic interval (``<m>_median``, ``<m>_ci_low``,
  ``<m>_ci_high``, ``<m>_ci_level``; :func:`~sp_istio_cache.bench.repetitions.summarize_repetitions`),
  plus the floor of the cell's (payload, request body, load): ``floor_cell``,
  ``floor_p50_us_median`` / ``_ci_low`` / ``_ci_high``, ``floor_p99_us_median``,
  ``floor_rps_median`` (NaN when the run has no such floor);
- ``metrics``: the filter's own metrics per repetition (:func:`~sp_istio_cache.bench.table.filter_metrics`);
- ``manifest`` (``run.json``) and ``profile`` (``profile.json`` when the run had one).

Nothing here starts a process or imports the runtime. A missing file or field raises the
contract's error naming the file and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..bench.records import RunManifest, read_model, read_run
from ..bench.repetitions import median_rows, ratios_to_baseline, summarize_repetitions
from ..bench.table import FLOOR_COLUMNS, ResultsError, build_table, filter_metrics, write_table

#: columns that identify a cell apart from its variant (``compare`` matches cells on these)
POINT_COLUMNS = ["payload_bytes", "request_body_bytes", "target_hit_ratio", "upstream_delay_ms", "mode", "users",
                 "target_rate", "profile_name"]
CELL_COLUMNS = ["variant", *POINT_COLUMNS]
#: extra per-cell columns carried from the rows into ``RunData.cells`` (first repetition's value)
_CARRIED = ("traffic", "runtime", "upstream_kind", "latency_basis", "duration_s", "memory_basis")


@dataclass(frozen=True)
class RunData:
    """A run's files as tables (see the module docstring)."""

    run_dir: Path
    manifest: RunManifest
    rows: pd.DataFrame
    cells: pd.DataFrame
    metrics: pd.DataFrame
    profile: Any | None

    def cell_rows(self, cell_id: str, outcome: str = "ALL") -> pd.DataFrame:
        """The per-repetition rows of one cell and outcome."""
        return self.rows[(self.rows["cell_id"] == cell_id) & (self.rows["outcome"] == outcome)]

    def summary(self, cell_id: str, outcome: str = "ALL") -> pd.Series | None:
        """The summary row of one cell and outcome (None when the cell has no measured repetition)."""
        found = self.cells[(self.cells["cell_id"] == cell_id) & (self.cells["outcome"] == outcome)]
        return None if found.empty else found.iloc[0]


def _with_floor(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Add a few per-cell columns of the rows (``_CARRIED``) and the floor of every cell's
    (payload, request body, load) to the summary rows. A profile's floor answers with the
    profile's median size while its cells have no single size: they pair on the profile name
    and the load."""
    first = rows[rows["outcome"] == "ALL"].drop_duplicates("cell_id").set_index("cell_id")
    cells = cells.assign(**{c: cells["cell_id"].map(first[c]) for c in _CARRIED if c in first.columns})
    picked = ["cell_id", "p50_us_median", "p50_us_ci_low", "p50_us_ci_high", "p99_us_median", "rps_median"]
    floors = cells[(cells["variant"] == "floor") & (cells["outcome"] == "ALL")]
    parts = []
    for traffic, part in cells.groupby("traffic", sort=False, dropna=False):
        keys = [c for c in FLOOR_COLUMNS if c in cells.columns
                and not (traffic == "profile" and c in ("payload_bytes", "request_body_bytes"))]
        theirs = floors[floors["traffic"] == traffic][[*keys, *picked]]
        theirs = theirs.rename(columns={c: f"floor_{c}" for c in picked})
        theirs = theirs.rename(columns={"floor_cell_id": "floor_cell"})
        parts.append(part.merge(theirs, on=keys, how="left", validate="many_to_one"))
    return pd.concat(parts, ignore_index=True) if parts else cells


def load_run(run_dir: Path) -> RunData:
    """Read a run directory into tables (see the module docstring).

    Raises:
        RecordError / ResultsError / SamplesError: a file is missing or malformed (names it);
        ResultsError also when no repetition has run yet.
    """
    from ..bench.profile import TrafficProfile

    run_dir = Path(run_dir)
    manifest = read_run(run_dir)
    rows = ratios_to_baseline(build_table(run_dir).to_pandas())
    cells = _with_floor(summarize_repetitions(rows), rows)
    profile = (read_model(run_dir / manifest.profile, TrafficProfile, "missing (run.json names it)")
               if manifest.profile else None)
    return RunData(run_dir=run_dir, manifest=manifest, rows=rows, cells=cells,
                   metrics=filter_metrics(run_dir).to_pandas(), profile=profile)


def build_frame(run_dir: Path) -> pd.DataFrame:
    """One row per cell × outcome, medians over the measured repetitions of the run's rows with
    the ratios to the baseline (:func:`~sp_istio_cache.bench.repetitions.median_rows`; what
    ``compare`` reads).

    Raises:
        RecordError / ResultsError / SamplesError: a run file is missing or malformed (names it).
    """
    return median_rows(ratios_to_baseline(build_table(Path(run_dir)).to_pandas()))


def write_results(run: RunData, out_dir: Path | None = None) -> list[Path]:
    """Write ``results.parquet`` (the contract's per-repetition rows, schema-checked) into the
    run directory and ``cells.csv`` (medians with intervals per cell × outcome) beside it, or
    into ``out_dir``; return the paths."""
    target = Path(out_dir) if out_dir else run.run_dir
    target.mkdir(parents=True, exist_ok=True)
    parquet = write_table(build_table(run.run_dir), target / "results.parquet")
    csv = target / "cells.csv"
    run.cells.to_csv(csv, index=False)
    return [parquet, csv]


__all__ = ["CELL_COLUMNS", "POINT_COLUMNS", "ResultsError", "RunData", "build_frame", "load_run", "write_results"]
