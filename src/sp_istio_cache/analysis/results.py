"""The tidy results table: one row per cell × outcome (HIT, MISS, BYPASS, NONE, and ALL).

Built offline from a run directory (``run.json`` + ``cells/<id>/cell.json`` + ``samples*.json``),
so an old run can be re-tabled without re-running load. Saved as ``results.parquet`` and
``results.csv`` (pandas writers).

Columns (latencies in µs, sizes in bytes, CPU in seconds, rates in requests/s):

- cell: ``cell_id``, ``variant``, ``payload_bytes``, ``request_body_bytes``, ``target_hit_ratio``,
  ``mode`` (closed | rate), ``users``, ``target_rate``, ``duration_s``, ``hot_keys``,
  ``latency_basis`` (service: send → response; intended: scheduled slot → response);
- per outcome: ``outcome``, ``requests``, ``share`` (of the cell's requests), ``p50_us``,
  ``p90_us``, ``p99_us``, ``p999_us``, ``max_us``, ``mean_us``, ``min_us``, ``rps``, ``non_2xx``;
- ground truth: ``cell_requests``, ``achieved_hit_ratio`` (HIT / requests, from the response
  headers), ``achieved_hit_ratio_upstream`` (1 − upstream requests / requests),
  ``upstream_requests``, ``expected_upstream_requests``, ``upstream_mismatch``,
  ``hot_requests``, ``cold_requests``, ``warmup_requests``, ``store_wait_ms``;
- honesty: ``generator_limited``, ``generator_reason``, ``locust_cpu_fraction``, ``slots``,
  ``missed_slots``, ``schedule_lag_p50_us``/``schedule_lag_p99_us`` (fixed rate: how late
  requests left after their due time);
- resources: ``rss_mean_bytes``, ``rss_max_bytes``, ``heap_allocated_max_bytes``,
  ``heap_size_max_bytes``, ``buffered_body_bytes_max``, ``backend_entries``, ``backend_bytes``,
  ``cpu_seconds`` (Envoy), ``cpu_s_per_1k_requests``, ``backend_cpu_seconds``,
  ``upstream_cpu_seconds``; ``memory_basis`` says what ``rss_*`` measured: ``process_rss``
  (local: the Envoy process RSS) or ``container_working_set`` (docker: cgroup usage minus
  inactive file cache, what ``docker stats`` and the kubelet show); ``memory_anon_max_bytes``
  (anonymous memory, one meaning under both runtimes); ``memory_peak_bytes`` (the runtime's own
  peak: local ``VmHWM``; docker the cgroup ``max_usage`` since the container started, page cache
  of the binary included);
- runtime: ``runtime`` (local | docker), ``container_memory_max_bytes`` (highest raw cgroup
  usage, the figure the limit is enforced on), ``memory_limit_bytes``, ``cpu_limit_cores``,
  ``cpu_throttled_seconds`` (CFS throttled time during the cell), ``cpu_throttled_share``
  (throttled CFS periods / periods), all NaN for local; ``oom_killed`` (the kernel's OOM killer
  ended Envoy), ``envoy_died`` (Envoy ended during the cell, for any reason), ``envoy_phase``
  (start | warm-up | load: where; empty when alive). A cell whose Envoy died before Locust ran has
  one ``ALL`` row with ``requests`` 0 and NaN latencies;
- against the baseline cell of the same (payload, body, hit ratio, load): ``p50_ratio``,
  ``p99_ratio``, ``rps_ratio`` (this row over the baseline's ALL row), ``rss_over_baseline_bytes``,
  ``cpu_s_per_1k_over_baseline`` (this cell minus the baseline: the buffering overhead).

Outcome of a response: ``x-sp-cache`` for the filter variants; for ``envoy-cache`` a response with
``Age`` is a HIT and one without a MISS; ``baseline`` responses are ``NONE``. The upstream check:
filter variants must see MISS + BYPASS upstream requests; the others requests − HIT (every
response that was not served from a cache reached the upstream).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..bench import manifest
from ..jsondoc import read_document
from ..bench.samples import CellSamples, load_samples, summarize

#: columns that identify a cell apart from its variant (the baseline is matched on these)
POINT_COLUMNS = ["payload_bytes", "request_body_bytes", "target_hit_ratio", "mode", "users", "target_rate"]
CELL_COLUMNS = ["variant", *POINT_COLUMNS]
FILTER_VARIANTS = ("filter", "filter-off")
GENERATOR_CPU_LIMIT = 0.90
RATE_FLOOR = 0.90


class ResultsError(ValueError):
    """A run or cell directory is missing or malformed; the message names the path."""


def _read_cell(cell_dir: Path) -> dict[str, Any]:
    return read_document(cell_dir / "cell.json", "sp-istio-cache/cell/1",
                         missing="missing (the cell did not finish)", error=ResultsError)


def _generator(doc: dict[str, Any], samples: CellSamples, rps: float) -> tuple[bool, str, float]:
    processes = max(1, len(samples.files))
    cpu_fraction = samples.cpu_seconds / (samples.wall_seconds * processes) if samples.wall_seconds else math.nan
    reasons = []
    if doc.get("locust_cpu_warning") or samples.cpu_warning:
        reasons.append("locust CPU warning")
    if cpu_fraction >= GENERATOR_CPU_LIMIT:
        reasons.append(f"locust CPU {cpu_fraction:.0%} of a core")
    rate = doc["cell"]["rate"]
    if rate > 0 and rps < RATE_FLOOR * rate:
        reasons.append(f"achieved {rps:.0f} rps < {RATE_FLOOR:.0%} of target {rate:g}")
    return bool(reasons), "; ".join(reasons), cpu_fraction


def cell_rows(cell_dir: Path) -> list[dict[str, Any]]:
    """The rows of one measured cell (one per outcome seen, then ``ALL``).

    Raises:
        ResultsError / SamplesError: missing or malformed files; the message names them.
    """
    cell_dir = Path(cell_dir)
    doc = _read_cell(cell_dir)
    files = sorted(cell_dir.glob("samples*.json"))
    if not files and (doc.get("envoy") or {}).get("died") and doc.get("resources") is None:
        return [_died_row(doc)]
    if not files:
        raise ResultsError(f"{cell_dir}: no samples*.json")
    samples = load_samples(files)
    cell = doc["cell"]
    variant = cell["variant"]
    if variant == "envoy-cache":
        samples.relabel("NONE", "MISS")
    counts = samples.outcome_counts()
    total = samples.requests
    if total == 0:
        raise ResultsError(f"{cell_dir}: Locust recorded no request")
    hits = counts.get("HIT", 0)
    if variant in FILTER_VARIANTS:
        expected = counts.get("MISS", 0) + counts.get("BYPASS", 0)
    else:
        expected = total - hits
    upstream = int(doc["upstream_requests"])
    duration = samples.duration_s
    rps_all = total / duration if duration > 0 else math.nan
    limited, reason, cpu_fraction = _generator(doc, samples, rps_all)
    base = {
        "cell_id": doc["cell_id"], "variant": variant, "payload_bytes": cell["payload_bytes"],
        "request_body_bytes": cell["request_body_bytes"], "target_hit_ratio": cell["target_hit_ratio"],
        "mode": doc["mode"], "users": cell["users"], "target_rate": cell["rate"],
        "duration_s": cell["duration_s"], "hot_keys": cell["hot_keys"],
        "latency_basis": samples.latency_basis,
        "cell_requests": total,
        "achieved_hit_ratio": hits / total,
        "achieved_hit_ratio_upstream": 1 - upstream / total,
        "upstream_requests": upstream,
        "expected_upstream_requests": expected,
        "upstream_mismatch": upstream != expected,
        "hot_requests": sum(samples.kinds.get("hot", {}).values()),
        "cold_requests": sum(samples.kinds.get("cold", {}).values()),
        "warmup_requests": doc["warmup_requests"],
        "store_wait_ms": doc["store_wait_ms"],
        "generator_limited": limited,
        "generator_reason": reason,
        "locust_cpu_fraction": cpu_fraction,
        "slots": samples.slots,
        "missed_slots": samples.missed_slots,
        "schedule_lag_p50_us": summarize(samples.lag)["p50_us"] if samples.slots else math.nan,
        "schedule_lag_p99_us": summarize(samples.lag)["p99_us"] if samples.slots else math.nan,
        **_resource_columns(doc, total),
    }
    rows = []
    for outcome in [*sorted(counts), "ALL"]:
        key = None if outcome == "ALL" else outcome
        n = total if key is None else counts[outcome]
        rows.append({**base, "outcome": outcome, "requests": n, "share": n / total,
                     **summarize(samples.histogram(key)),
                     "rps": n / duration if duration > 0 else math.nan,
                     "non_2xx": samples.non_2xx(key)})
    return rows


def _resource_columns(doc: dict[str, Any], total: int) -> dict[str, Any]:
    """The resource and runtime columns of a cell (older cell.json files: local, NaN for the new)."""
    res = doc.get("resources") or {}
    fate = doc.get("envoy") or {}
    runtime = (doc.get("runtime") or {}).get("name") or doc["cell"].get("runtime", "local")
    nan = math.nan

    def get(key: str) -> float:
        value = res.get(key)
        return nan if value is None else float(value)

    periods = get("cpu_periods")
    cpu = get("cpu_seconds")
    return {
        "rss_mean_bytes": get("rss_mean_bytes"),
        "rss_max_bytes": get("rss_max_bytes"),
        "memory_basis": res.get("memory_basis") or ("container_working_set" if runtime == "docker"
                                                     else "process_rss"),
        "memory_anon_max_bytes": get("memory_anon_max_bytes"),
        "memory_peak_bytes": get("memory_peak_bytes"),
        "heap_allocated_max_bytes": get("heap_allocated_max_bytes"),
        "heap_size_max_bytes": get("heap_size_max_bytes"),
        "buffered_body_bytes_max": get("buffered_body_bytes_max"),
        "backend_entries": get("backend_entries"),
        "backend_bytes": get("backend_bytes"),
        "cpu_seconds": cpu,
        "cpu_s_per_1k_requests": cpu / total * 1000 if total else nan,
        "backend_cpu_seconds": get("backend_cpu_seconds"),
        "upstream_cpu_seconds": get("upstream_cpu_seconds"),
        "runtime": runtime,
        "container_memory_max_bytes": get("container_memory_max_bytes"),
        "memory_limit_bytes": get("memory_limit_bytes"),
        "cpu_limit_cores": get("cpu_limit_cores"),
        "cpu_throttled_seconds": get("cpu_throttled_seconds"),
        "cpu_throttled_share": get("cpu_throttled_periods") / periods if periods and periods > 0 else nan,
        "oom_killed": bool(fate.get("oom_killed", res.get("oom_killed", False))),
        "envoy_died": bool(fate.get("died", False)),
        "envoy_phase": fate.get("phase") or "",
    }


def _died_row(doc: dict[str, Any]) -> dict[str, Any]:
    """The single ``ALL`` row of a cell whose Envoy died before Locust ran."""
    cell = doc["cell"]
    nan = math.nan
    opts = (doc.get("runtime") or {}).get("options") or cell.get("runtime_options") or {}
    row = {
        "cell_id": doc["cell_id"], "variant": cell["variant"], "payload_bytes": cell["payload_bytes"],
        "request_body_bytes": cell["request_body_bytes"], "target_hit_ratio": cell["target_hit_ratio"],
        "mode": doc["mode"], "users": cell["users"], "target_rate": cell["rate"],
        "duration_s": cell["duration_s"], "hot_keys": cell["hot_keys"],
        "latency_basis": "", "cell_requests": 0, "achieved_hit_ratio": nan,
        "achieved_hit_ratio_upstream": nan, "upstream_requests": 0, "expected_upstream_requests": 0,
        "upstream_mismatch": False, "hot_requests": 0, "cold_requests": 0,
        "warmup_requests": doc.get("warmup_requests", 0), "store_wait_ms": doc.get("store_wait_ms", nan),
        "generator_limited": False, "generator_reason": "", "locust_cpu_fraction": nan, "slots": 0,
        "missed_slots": 0, "schedule_lag_p50_us": nan, "schedule_lag_p99_us": nan,
        **_resource_columns(doc, 0),
        "outcome": "ALL", "requests": 0, "share": nan, "rps": nan, "non_2xx": 0,
        **{k: nan for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us", "min_us")},
    }
    from ..runtime.docker import parse_memory

    if math.isnan(row["memory_limit_bytes"]) and opts.get("memory_limit") is not None:
        row["memory_limit_bytes"] = float(parse_memory(opts["memory_limit"]))
    if math.isnan(row["cpu_limit_cores"]) and opts.get("cpu_limit") is not None:
        row["cpu_limit_cores"] = float(opts["cpu_limit"])
    return row


def add_baseline_ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``p50_ratio``, ``p99_ratio``, ``rps_ratio``, ``rss_over_baseline_bytes`` and
    ``cpu_s_per_1k_over_baseline``: each row against the ``baseline`` ALL row of the same point
    (NaN when the run has no such baseline)."""
    frame = frame.copy()
    base = frame[(frame["variant"] == "baseline") & (frame["outcome"] == "ALL")]
    base = base[POINT_COLUMNS + ["p50_us", "p99_us", "rps", "rss_mean_bytes", "cpu_s_per_1k_requests"]]
    base = base.rename(columns={c: f"_base_{c}" for c in ["p50_us", "p99_us", "rps", "rss_mean_bytes",
                                                          "cpu_s_per_1k_requests"]})
    merged = frame.merge(base, on=POINT_COLUMNS, how="left", validate="many_to_one")
    merged["p50_ratio"] = merged["p50_us"] / merged["_base_p50_us"]
    merged["p99_ratio"] = merged["p99_us"] / merged["_base_p99_us"]
    merged["rps_ratio"] = merged["rps"] / merged["_base_rps"]
    merged["rss_over_baseline_bytes"] = merged["rss_mean_bytes"] - merged["_base_rss_mean_bytes"]
    merged["cpu_s_per_1k_over_baseline"] = (merged["cpu_s_per_1k_requests"]
                                            - merged["_base_cpu_s_per_1k_requests"])
    return merged.drop(columns=[c for c in merged.columns if c.startswith("_base_")])


def build_frame(run_dir: Path) -> pd.DataFrame:
    """The results table of every finished cell of a run, in run order.

    Raises:
        ResultsError / SamplesError / FileNotFoundError: the run or a finished cell is malformed.
    """
    run_dir = Path(run_dir)
    run = manifest.read(run_dir)
    rows: list[dict[str, Any]] = []
    for entry in run["cells"]:
        if entry.get("status") == "done":
            rows.extend(cell_rows(run_dir / entry["dir"]))
    if not rows:
        raise ResultsError(f"{run_dir}: no finished cell")
    frame = add_baseline_ratios(pd.DataFrame(rows))
    lead = ["cell_id", *CELL_COLUMNS, "outcome", "requests", "share", "p50_us", "p90_us", "p99_us",
            "p999_us", "max_us", "rps", "achieved_hit_ratio", "achieved_hit_ratio_upstream",
            "p50_ratio", "p99_ratio"]
    return frame[lead + [c for c in frame.columns if c not in lead]]


def write_results(run_dir: Path) -> pd.DataFrame:
    """Build the table and write ``results.parquet`` and ``results.csv`` into ``run_dir``."""
    frame = build_frame(run_dir)
    frame.to_parquet(Path(run_dir) / "results.parquet", index=False)
    frame.to_csv(Path(run_dir) / "results.csv", index=False)
    return frame


def load_results(run: Path) -> pd.DataFrame:
    """Read a run's table: ``run`` is a run directory or a ``results.parquet`` file.

    Raises:
        ResultsError: no such file, or it lacks the key columns; the message names the path.
    """
    path = Path(run)
    if path.is_dir() or path.suffix != ".parquet":
        path = path / "results.parquet"
    if not path.exists():
        raise ResultsError(f"{path}: no results (run `sp-istio-cache bench` first)")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
        raise ResultsError(f"{path}: unreadable parquet: {exc}") from None
    missing = [c for c in [*CELL_COLUMNS, "outcome", "p50_us", "p99_us", "rps"] if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path}: missing columns {missing}")
    return frame
