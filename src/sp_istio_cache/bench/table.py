"""The results rows: one per cell × repetition × outcome (HIT, MISS, BYPASS, NONE, then ALL),
built from a run's files only (``run.json``, ``cell.json``, ``samples*.json``), with one fixed
Arrow schema checked when the table is built, written and read.

Nothing here starts anything or imports the runtime: the report stage calls :func:`build_table`
on a run directory (and may write it with :func:`write_table`). The columns are listed in
``docs/bench-files.md``; :data:`RESULTS_SCHEMA` is the source of truth. Nullable columns are
null only with the meaning the docs give (e.g. no test upstream to count); a float is never NaN.

Outcome of a response: ``x-sp-cache`` for the filter variants; for ``envoy-cache`` a response
with ``Age`` is a HIT and one without a MISS; ``baseline`` and ``floor`` responses are ``NONE``.
Ground truth (test upstream only): the filter variants must see MISS + BYPASS upstream
requests, ``baseline``/``envoy-cache`` requests − HIT.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .records import CellRecord, RecordError, RunCell, finished_cells
from .samples import CellSamples, load_samples, summarize

GENERATOR_CPU_LIMIT = 0.90
RATE_FLOOR = 0.90
#: a load shorter than this share of the cell's duration did not measure what the cell asked
SHORT_LOAD = 0.80
LATENCY_COLUMNS = ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us", "min_us")


class ResultsError(ValueError):
    """A table or run directory does not match the results schema; the message names it."""


def _f(name: str, typ: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()

RESULTS_SCHEMA = pa.schema([
    # the cell and its point
    _f("cell_id", _S), _f("repetition", _I), _f("variant", _S), _f("traffic", _S), _f("status", _S),
    _f("payload_bytes", _I, True), _f("request_body_bytes", _I, True), _f("target_hit_ratio", _F, True),
    _f("upstream_delay_ms", _F), _f("mode", _S), _f("users", _I), _f("target_rate", _F), _f("duration_s", _F),
    _f("hot_keys", _I, True), _f("cache_control", _S), _f("upstream_kind", _S), _f("profile_name", _S, True),
    _f("runtime", _S), _f("latency_basis", _S, True),
    # this outcome
    _f("outcome", _S), _f("requests", _I), _f("share", _F, True),
    *[_f(c, _F, True) for c in LATENCY_COLUMNS],
    _f("rps", _F, True), _f("non_2xx", _I), _f("no_response", _I), _f("response_bytes", _I),
    # the whole cell: ground truth and honesty
    _f("cell_requests", _I), _f("error_rate", _F, True), _f("achieved_hit_ratio", _F, True),
    _f("achieved_hit_ratio_upstream", _F, True), _f("upstream_requests", _I, True),
    _f("expected_upstream_requests", _I, True), _f("upstream_mismatch", _B, True),
    _f("hot_requests", _I), _f("cold_requests", _I), _f("warmup_requests", _I), _f("store_wait_ms", _F, True),
    _f("generator_limited", _B), _f("generator_reason", _S), _f("locust_cpu_fraction", _F, True),
    _f("locust_workers", _I), _f("slots", _I), _f("missed_slots", _I),
    _f("schedule_lag_p50_us", _F, True), _f("schedule_lag_p99_us", _F, True),
    # resources
    _f("memory_basis", _S, True), _f("rss_mean_bytes", _F, True), _f("rss_max_bytes", _F, True),
    _f("memory_anon_max_bytes", _F, True), _f("memory_peak_bytes", _F, True),
    _f("container_memory_max_bytes", _F, True), _f("memory_limit_bytes", _F, True),
    _f("cpu_limit_cores", _F, True), _f("cpu_seconds", _F, True), _f("cpu_s_per_1k_requests", _F, True),
    _f("cpu_throttled_seconds", _F, True), _f("cpu_throttled_share", _F, True),
    _f("backend_cpu_seconds", _F, True), _f("backend_rss_max_bytes", _F, True),
    _f("upstream_cpu_seconds", _F, True), _f("heap_allocated_bytes", _F, True), _f("heap_size_bytes", _F, True),
    _f("buffered_body_bytes_end", _F, True), _f("backend_entries", _F, True), _f("backend_bytes", _F, True),
    # what happened
    _f("oom_killed", _B), _f("envoy_died", _B), _f("envoy_phase", _S, True),
    _f("finding_kinds", pa.list_(pa.string())),
])

#: the columns that identify a point apart from the variant (baselines are matched on these)
POINT_COLUMNS = ("traffic", "payload_bytes", "request_body_bytes", "target_hit_ratio", "upstream_delay_ms",
                 "mode", "users", "target_rate", "profile_name")
#: the columns that pair a floor cell with the cells it bounds
FLOOR_COLUMNS = ("traffic", "payload_bytes", "request_body_bytes", "mode", "users", "target_rate", "profile_name")


def _num(value: float | None) -> float | None:
    """None for None and NaN (a measurement that has no value), else the float."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _cell_columns(entry: RunCell, rec: CellRecord) -> dict[str, Any]:
    c = rec.cell
    return {"cell_id": rec.cell_id, "repetition": rec.repetition, "variant": c.variant, "traffic": c.traffic,
            "status": rec.status, "payload_bytes": c.payload_bytes, "request_body_bytes": c.request_body_bytes,
            "target_hit_ratio": c.target_hit_ratio, "upstream_delay_ms": c.upstream_delay_ms, "mode": rec.mode,
            "users": c.users, "target_rate": c.rate, "duration_s": c.duration_s, "hot_keys": c.hot_keys,
            "cache_control": c.cache_control, "upstream_kind": rec.upstream.kind, "profile_name": c.profile_name,
            "runtime": rec.runtime.name}


def _resource_columns(rec: CellRecord, total: int) -> dict[str, Any]:
    res = rec.resources
    stats = rec.envoy_stats
    after = rec.backend_stats_after
    if after is not None and not {"entries", "bytes"} <= set(after):
        raise ResultsError(f"{rec.cell_id} rep {rec.repetition}: backend_stats_after lacks entries/bytes: "
                           f"{sorted(after)}")
    out: dict[str, Any] = {
        "memory_basis": res.memory_basis if res else None,
        **{k: _num(getattr(res, k)) if res else None for k in (
            "rss_mean_bytes", "rss_max_bytes", "memory_anon_max_bytes", "memory_peak_bytes",
            "container_memory_max_bytes", "memory_limit_bytes", "cpu_limit_cores", "cpu_seconds",
            "cpu_throttled_seconds", "backend_cpu_seconds", "backend_rss_max_bytes", "upstream_cpu_seconds")},
        "heap_allocated_bytes": _num(stats.server.get("memory_allocated")) if stats else None,
        "heap_size_bytes": _num(stats.server.get("memory_heap_size")) if stats else None,
        "buffered_body_bytes_end": _num(stats.filter_gauges.get("sp_cache.buffered_body_bytes")) if stats else None,
        "backend_entries": _num(after["entries"]) if after is not None else None,
        "backend_bytes": _num(after["bytes"]) if after is not None else None,
    }
    cpu = out["cpu_seconds"]
    out["cpu_s_per_1k_requests"] = cpu / total * 1000 if cpu is not None and total else None
    periods = res.cpu_periods if res else None
    out["cpu_throttled_share"] = (res.cpu_throttled_periods / periods
                                  if res and periods and res.cpu_throttled_periods is not None else None)
    out.update(oom_killed=rec.envoy.oom_killed, envoy_died=rec.envoy.died, envoy_phase=rec.envoy.phase,
               finding_kinds=sorted({f.kind for f in rec.findings}))
    return out


def _generator(rec: CellRecord, samples: CellSamples, rps: float | None) -> tuple[bool, str, float | None]:
    """Whether Locust, not Envoy, bounded the cell (DESIGN.md §5), why, and its CPU share."""
    workers = max(1, len(samples.files))
    cpu_fraction = samples.cpu_seconds / (samples.wall_seconds * workers) if samples.wall_seconds else None
    reasons = []
    if (rec.locust and rec.locust.cpu_warning) or samples.cpu_warning:
        reasons.append("locust CPU warning")
    if cpu_fraction is not None and cpu_fraction >= GENERATOR_CPU_LIMIT:
        reasons.append(f"locust CPU {cpu_fraction:.0%} of a core")
    if samples.duration_s < SHORT_LOAD * rec.cell.duration_s:
        reasons.append(f"load lasted {samples.duration_s:.2f} s of {rec.cell.duration_s:g} s")
    rate = rec.cell.rate
    if rate > 0 and (rps or 0) < RATE_FLOOR * rate:
        reasons.append(f"achieved {rps or 0:.0f} rps < {RATE_FLOOR:.0%} of target {rate:g}")
    return bool(reasons), "; ".join(reasons), cpu_fraction


def _expected_upstream(rec: CellRecord, counts: dict[str, int], total: int) -> int | None:
    if rec.upstream.kind != "test-app":
        return None
    if rec.cell.uses_filter:
        return counts.get("MISS", 0) + counts.get("BYPASS", 0)
    return total - counts.get("HIT", 0)


def _failed_row(entry: RunCell, rec: CellRecord) -> dict[str, Any]:
    """The single ``ALL`` row of a repetition that measured no load."""
    return {**_cell_columns(entry, rec), "latency_basis": None, "outcome": "ALL", "requests": 0, "share": None,
            **{c: None for c in LATENCY_COLUMNS}, "rps": None, "non_2xx": 0, "no_response": 0, "response_bytes": 0,
            "cell_requests": 0, "error_rate": None, "achieved_hit_ratio": None, "achieved_hit_ratio_upstream": None,
            "upstream_requests": rec.upstream_requests, "expected_upstream_requests": None,
            "upstream_mismatch": None, "hot_requests": 0, "cold_requests": 0,
            "warmup_requests": rec.warmup.requests, "store_wait_ms": rec.warmup.store_wait_ms,
            "generator_limited": False, "generator_reason": "", "locust_cpu_fraction": None,
            "locust_workers": rec.locust.workers if rec.locust else 0, "slots": 0, "missed_slots": 0,
            "schedule_lag_p50_us": None, "schedule_lag_p99_us": None, **_resource_columns(rec, 0)}


def cell_samples(rep_dir: Path, rec: CellRecord) -> CellSamples:
    """The merged samples of one measured repetition (envoy-cache's ``NONE`` relabelled MISS).

    Raises:
        ResultsError: the record names no samples file; SamplesError: a file is bad.
    """
    if rec.locust is None or not rec.locust.samples_files:
        raise ResultsError(f"{rep_dir}: cell.json is 'measured' but names no samples file")
    samples = load_samples([Path(rep_dir) / name for name in rec.locust.samples_files])
    if rec.cell.variant == "envoy-cache":
        samples.relabel("NONE", "MISS")
    return samples


def cell_rows(rep_dir: Path, entry: RunCell, rec: CellRecord) -> list[dict[str, Any]]:
    """The rows of one repetition: one per outcome seen (sorted), then ``ALL``.

    Raises:
        ResultsError / SamplesError: a measured cell without readable samples; names the file.
    """
    if rec.status == "failed":
        return [_failed_row(entry, rec)]
    samples = cell_samples(rep_dir, rec)
    counts = samples.outcome_counts()
    total = samples.requests
    duration = samples.duration_s
    rps_all = total / duration if duration > 0 else None
    limited, reason, cpu_fraction = _generator(rec, samples, rps_all)
    expected = _expected_upstream(rec, counts, total)
    upstream = rec.upstream_requests
    lag = summarize(samples.lag) if samples.slots else None
    kinds = samples.kinds
    base = {
        **_cell_columns(entry, rec), "latency_basis": samples.latency_basis,
        "cell_requests": total, "error_rate": _ratio(samples.non_2xx(), total),
        "achieved_hit_ratio": _ratio(counts.get("HIT", 0), total),
        "achieved_hit_ratio_upstream": 1 - upstream / total if upstream is not None and total else None,
        "upstream_requests": upstream, "expected_upstream_requests": expected,
        "upstream_mismatch": (upstream != expected) if upstream is not None and expected is not None else None,
        "hot_requests": sum(kinds.get("hot", {}).values()), "cold_requests": sum(kinds.get("cold", {}).values()),
        "warmup_requests": rec.warmup.requests, "store_wait_ms": rec.warmup.store_wait_ms,
        "generator_limited": limited, "generator_reason": reason, "locust_cpu_fraction": cpu_fraction,
        "locust_workers": rec.locust.workers if rec.locust else 0,
        "slots": samples.slots, "missed_slots": samples.missed_slots,
        "schedule_lag_p50_us": _num(lag["p50_us"]) if lag else None,
        "schedule_lag_p99_us": _num(lag["p99_us"]) if lag else None,
        **_resource_columns(rec, total),
    }
    rows = []
    for outcome in [*sorted(counts), "ALL"]:
        key = None if outcome == "ALL" else outcome
        n = total if key is None else counts[outcome]
        rows.append({**base, "outcome": outcome, "requests": n, "share": _ratio(n, total),
                     **{k: _num(v) for k, v in summarize(samples, key).items()},
                     "rps": n / duration if duration > 0 else None, "non_2xx": samples.non_2xx(key),
                     "no_response": samples.no_response(key), "response_bytes": samples.response_bytes(key)})
    return rows


def check_table(table: pa.Table, source: str) -> pa.Table:
    """Return ``table`` when it has exactly :data:`RESULTS_SCHEMA`'s columns and types, no null
    in a non-nullable column and no NaN anywhere.

    Raises:
        ResultsError: naming ``source`` and the first offending column.
    """
    names = set(table.schema.names)
    missing = [n for n in RESULTS_SCHEMA.names if n not in names]
    extra = [n for n in table.schema.names if n not in RESULTS_SCHEMA.names]
    if missing or extra:
        raise ResultsError(f"{source}: columns differ from the results schema: missing {missing}, unexpected {extra}")
    table = table.select(RESULTS_SCHEMA.names)
    for field in RESULTS_SCHEMA:
        col = table.column(field.name)
        if not col.type.equals(field.type):
            raise ResultsError(f"{source}: column {field.name} is {col.type}, the schema says {field.type}")
        if not field.nullable and col.null_count:
            raise ResultsError(f"{source}: column {field.name} has {col.null_count} nulls; it must always have a value")
        if pa.types.is_floating(field.type) and pc.any(pc.is_nan(col)).as_py():
            raise ResultsError(f"{source}: column {field.name} holds NaN; a missing measurement is null")
    return table.cast(RESULTS_SCHEMA)


def rows_to_table(rows: list[dict[str, Any]], source: str) -> pa.Table:
    """Rows (dicts with every schema column, no more) to a checked Arrow table.

    Raises:
        ResultsError: a row lacks a column or has one the schema does not know; names it.
    """
    expected = set(RESULTS_SCHEMA.names)
    for row in rows:
        if set(row) != expected:
            raise ResultsError(f"{source}: row of {row.get('cell_id')} lacks {sorted(expected - set(row))}, "
                               f"has unknown {sorted(set(row) - expected)}")
    return check_table(pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA), source)


def build_table(run_dir: Path) -> pa.Table:
    """The results of every repetition that ran (measured or failed), in run order.

    Raises:
        RecordError, ResultsError, SamplesError: a file is missing or malformed; names it.
    """
    run_dir = Path(run_dir)
    rows: list[dict[str, Any]] = []
    for entry, rec in finished_cells(run_dir):
        rows.extend(cell_rows(run_dir / entry.dir, entry, rec))
    if not rows:
        raise ResultsError(f"{run_dir}: no cell has run yet")
    return rows_to_table(rows, str(run_dir))


def write_table(table: pa.Table, path: Path) -> Path:
    """Check and write the table as Parquet (the schema travels with the file)."""
    pq.write_table(check_table(table, str(path)), path)
    return Path(path)


def read_table(path: Path) -> pa.Table:
    """Read a results Parquet file and check it.

    Raises:
        ResultsError: missing or unreadable file, or it does not match the schema; names it.
    """
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"{path}: no results file")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
        raise ResultsError(f"{path}: unreadable parquet: {exc}") from None
    return check_table(table, str(path))


def results_frame(run_dir: Path) -> Any:
    """:func:`build_table` as a pandas DataFrame (nulls become NaN/None there)."""
    return build_table(run_dir).to_pandas()


__all__ = ["FILTER_METRICS_SCHEMA", "FLOOR_COLUMNS", "POINT_COLUMNS", "RESULTS_SCHEMA", "RecordError", "ResultsError",
           "build_table", "cell_rows", "cell_samples", "check_table", "filter_metrics", "read_table", "results_frame",
           "rows_to_table", "write_table"]


FILTER_METRICS_SCHEMA = pa.schema([_f("cell_id", _S), _f("repetition", _I), _f("variant", _S), _f("kind", _S),
                                   _f("name", _S), _f("quantile", _S), _f("value", _F)])


def filter_metrics(run_dir: Path) -> pa.Table:
    """The filter's own metrics of every measured repetition, long format
    (:data:`FILTER_METRICS_SCHEMA`): counter changes over the measured phase, gauges at the end,
    histogram quantiles (``p50``, ``p90``, ``p99``; ``quantile`` is "" for counters and gauges).
    Repetitions without the filter contribute no row.

    Raises:
        RecordError: a record is missing or malformed.
    """
    rows: list[dict[str, Any]] = []
    for _entry, rec in finished_cells(Path(run_dir)):
        stats = rec.envoy_stats
        if stats is None:
            continue
        ident = {"cell_id": rec.cell_id, "repetition": rec.repetition, "variant": rec.cell.variant}
        for kind, values in (("counter", stats.filter_counters), ("gauge", stats.filter_gauges)):
            rows.extend({**ident, "kind": kind, "name": n, "quantile": "", "value": float(v)}
                        for n, v in sorted(values.items()))
        for name, q in sorted(stats.filter_histograms.items()):
            rows.extend({**ident, "kind": "histogram", "name": name, "quantile": k, "value": float(v)}
                        for k, v in q.model_dump().items())
    return pa.Table.from_pylist(rows, schema=FILTER_METRICS_SCHEMA)
