"""The benchmark step (notebook 03): run the matrix with the bench engine, then read its files.

Locust never runs in the kernel: :func:`sp_istio_cache.bench.runner.run_matrix` starts it as a
subprocess per cell. Every table and chart below is built from the run directory's files
(``docs/bench-files.md``), so the same functions re-chart an old run (:func:`read_step`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.bench_charts import write_benchmark_charts
from ..analysis.results import RunData, load_run, write_results
from .steps import CHARTS, StepError, write_json

#: counters of the filter the report surfaces (names of docs/metrics.md, without ``sp_cache.``)
COUNTERS = ("hit", "miss", "bypass", "store_dropped", "store_failed", "lookup_timeout", "lookup_error",
            "entry_rejected", "coalesced", "store_skipped_too_large", "store_skipped_buffer_budget")


def benchmark_step(out_dir: str | Path, *, matrix_file: str = "", runtime: str = "auto",
                   sidecar_cpu_limit: float = 1.0, sidecar_memory_limit: int | str = "128Mi",
                   **parameters: Any) -> tuple[RunData, list[Path], list[str]]:
    """Run the matrix into ``out_dir/bench`` and chart it.

    ``parameters`` are keys of :class:`sp_istio_cache.bench.scenario.Matrix` (the notebook's
    parameters cell uses the same names); empty values (``""``, ``{}``, None) keep those of
    ``matrix_file``. With ``profile`` or ``upstream`` the synthetic axes (sizes, hit ratios,
    request bodies; and the origin delay for an external upstream) are dropped: the traffic
    comes from the profile or the service. The runtime is the report's choice (Docker with the sidecar limits when an
    engine answers). Writes ``gate.json`` (repetitions over the failure gate) and returns the
    run, the chart paths and notes on charts that could not be drawn.

    Raises:
        ScenarioError: a bad matrix value, naming the key.
        ModuleIdentityError: the filter module is not the one its build recorded (the bench checks).
        StepError: no repetition measured anything.
    """
    from ..bench.runner import run_matrix
    from .runtime_choice import runtime_for

    out = Path(out_dir)
    choice = runtime_for(out, runtime, sidecar_cpu_limit, sidecar_memory_limit)
    matrix = _matrix(parameters, matrix_file, choice.name, dict(choice.options) or None)
    try:
        run_matrix(matrix, out / "bench", progress="lines")
    finally:
        prune_cache_databases(out / "bench")
    return read_step(out, out / "bench")


def _matrix(parameters: dict[str, Any], matrix_file: str, runtime: str,
            runtime_options: dict[str, Any] | None) -> Any:
    from ..bench.scenario import SYNTHETIC_KEYS, matrix_from, read_matrix_file

    base = read_matrix_file(Path(matrix_file)) if matrix_file else {}
    given = {k: v for k, v in parameters.items() if v not in ("", {}, None)}
    if given.get("profile") or given.get("upstream"):
        dropped = [*SYNTHETIC_KEYS, *(["upstream_delay_ms"] if given.get("upstream") else [])]
        given = {k: v for k, v in given.items() if k not in dropped}
    given.update(runtime=runtime, runtime_options=runtime_options)
    return matrix_from(given, "report parameters", base=base)


def check_parameters(*, matrix_file: str = "", runtime: str = "auto", sidecar_cpu_limit: float = 1.0,
                     sidecar_memory_limit: int | str = "128Mi", run_dir: str = "", **parameters: Any) -> None:
    """Refuse the benchmark step's parameters before the report starts anything (the same checks
    :func:`benchmark_step` makes, with the local runtime so that no engine is asked).

    Raises:
        ScenarioError: a bad matrix value or sidecar limit, naming the key.
    """
    from ..bench.scenario import ScenarioError
    from ..runtime.docker import parse_memory

    if runtime not in ("auto", "local", "docker"):
        raise ScenarioError(f"report parameters: runtime: {runtime!r} is not one of auto, local, docker")
    if not isinstance(sidecar_cpu_limit, int | float) or sidecar_cpu_limit <= 0:
        raise ScenarioError(f"report parameters: sidecar_cpu_limit: {sidecar_cpu_limit!r} is not a number of "
                            "cores > 0")
    try:
        parse_memory(sidecar_memory_limit)
    except ValueError as exc:
        raise ScenarioError(f"report parameters: sidecar_memory_limit: {exc}") from None
    if not run_dir:
        _matrix(parameters, matrix_file, "local", None)


def read_step(out_dir: str | Path, run_dir: str | Path) -> tuple[RunData, list[Path], list[str]]:
    """Tables, gate and charts of an existing run (what :func:`benchmark_step` does after the load).

    Raises:
        RecordError / ResultsError / SamplesError: a run file is missing or malformed.
        StepError: no repetition measured anything.
    """
    from ..bench.gate import check_run

    out = Path(out_dir)
    run = load_run(Path(run_dir))
    if not (run.rows["status"] == "measured").any():
        raise StepError(f"{run_dir}: no repetition measured anything ({len(run.rows)} failed)")
    write_results(run)
    max_error_rate = float(run.manifest.parameters.get("max_error_rate", 0.01))
    gate = [f.line() for f in check_run(run.run_dir, max_error_rate)]
    write_json(out / "gate.json", {"max_error_rate": max_error_rate, "failures": gate})
    paths, notes = write_benchmark_charts(run, out / CHARTS)
    return run, paths, notes


def prune_cache_databases(run_dir: Path) -> int:
    """Delete the backends' SQLite files under the run's cell directories (hundreds of MB of
    cached bodies, not evidence: entry counts and bytes are in each cell.json); return the bytes
    freed."""
    freed = 0
    for db in Path(run_dir).glob("cells/*/rep-*/stack/cache.sqlite3*"):
        freed += db.stat().st_size
        db.unlink()
    return freed


def cell_table(run: RunData) -> pd.DataFrame:
    """The per-cell view shown in the notebook: ``ALL`` outcomes, medians over the repetitions
    with their interval, ratios to the baseline, the floor, and flags."""
    c = run.cells[run.cells["outcome"] == "ALL"]

    def span(metric: str, fmt: str) -> list[str]:
        return [f"{fmt.format(m)} [{fmt.format(lo)}–{fmt.format(hi)}]" if not pd.isna(m) else "–"
                for m, lo, hi in zip(c[f"{metric}_median"], c[f"{metric}_ci_low"], c[f"{metric}_ci_high"])]

    return pd.DataFrame({
        "cell": c["cell_id"], "reps": c["repetitions"], "p50 µs [interval]": span("p50_us", "{:,.0f}"),
        "p99 µs [interval]": span("p99_us", "{:,.0f}"), "p99 / baseline": span("p99_ratio", "{:.2f}"),
        "req/s": span("rps", "{:,.0f}"), "hit ratio": span("achieved_hit_ratio", "{:.2f}"),
        "floor p50 µs": [f"{v:,.0f}" if not pd.isna(v) else "–" for v in c["floor_p50_us_median"]],
    }).reset_index(drop=True)


def counter_table(run: RunData) -> pd.DataFrame:
    """The filter's counters over the measured phase per cell (median over repetitions), the
    ones that say something went wrong first: ``store_dropped``, ``lookup_timeout``, ..."""
    m = run.metrics
    counters = m[(m["kind"] == "counter") & m["name"].isin([f"sp_cache.{n}" for n in COUNTERS])]
    if counters.empty:
        return pd.DataFrame(columns=["cell_id"])
    table = counters.groupby(["cell_id", "name"])["value"].median().unstack(fill_value=0)
    table.columns = [c.removeprefix("sp_cache.") for c in table.columns]
    order = [n for n in COUNTERS if n in table.columns]
    return table[order].reset_index()
