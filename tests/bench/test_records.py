"""The run files and what is computed from them, offline (FAKE run directories, tests/bench/fakes.py):
schemas checked at write and read, the results rows, ratios within a repetition, medians with
their interval, the failure gate, the filter's own metrics."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from sp_istio_cache.bench.gate import check_run
from sp_istio_cache.bench.records import RecordError, json_schemas, read_cell, read_run
from sp_istio_cache.bench.repetitions import median_ci, median_rows, ratios_to_baseline, summarize_repetitions
from sp_istio_cache.bench.table import (
    RESULTS_SCHEMA,
    ResultsError,
    build_table,
    check_table,
    filter_metrics,
    read_table,
    write_table,
)
from sp_istio_cache.paths import REPO_ROOT

from .fakes import write_run

DRIFT = {  # the machine got 3x slower in repetition 2: both variants alike
    "floor": {"reps": [[100] * 50, [300] * 50]},
    "baseline": {"reps": [[1000] * 50, [3000] * 50]},
    "filter": {"reps": [[1100] * 50, [3300] * 50], "outcome": "HIT",
               "histograms": {"sp_cache.lookup_duration_us": (40.0, 90.0, 120.0)},
               "counters": {"sp_cache.hit": 50, "sp_cache.store_dropped": 2, "sp_cache.lookup_timeout": 1}},
}


def test_a_cell_record_missing_a_key_names_the_file_and_the_key(tmp_path):
    write_run(tmp_path, {"baseline": {"latencies_us": [500] * 10}})
    cell_json = next(tmp_path.glob("cells/*/rep-1/cell.json"))
    doc = json.loads(cell_json.read_text())
    del doc["upstream_requests"]
    doc["resources"]["rss_max_bytes"] = "lots"
    cell_json.write_text(json.dumps(doc))
    with pytest.raises(RecordError) as info:
        read_cell(cell_json.parent)
    assert str(info.value).startswith(f"{cell_json}: does not match its schema")
    assert "upstream_requests: missing" in str(info.value)
    assert "resources.rss_max_bytes" in str(info.value)
    with pytest.raises(RecordError, match="no run manifest"):
        read_run(tmp_path / "nope")


def test_rows_have_the_schema_and_a_failed_repetition_has_one_empty_row(tmp_path):
    write_run(tmp_path, {"baseline": {"reps": [[500] * 10, []], "failed": None},
                         "filter": {"latencies_us": [], "failed": "stack did not start: boom"}}, repetitions=2)
    table = build_table(tmp_path)
    assert table.schema.equals(RESULTS_SCHEMA)
    rows = table.to_pylist()
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 2 and {r["outcome"] for r in failed} == {"ALL"}
    assert all(r["requests"] == 0 and r["p50_us"] is None and r["error_rate"] is None for r in failed)
    base = [r for r in rows if r["variant"] == "baseline" and r["repetition"] == 1 and r["outcome"] == "ALL"][0]
    assert base["requests"] == 10 and base["p50_us"] == 500 and base["error_rate"] == 0.0
    assert base["upstream_requests"] == 10 and base["upstream_mismatch"] is False
    assert base["container_memory_max_bytes"] is None and base["finding_kinds"] == []


def test_the_schema_is_checked_when_written_and_read(tmp_path):
    write_run(tmp_path, {"baseline": {"latencies_us": [500] * 10}})
    table = build_table(tmp_path)
    path = write_table(table, tmp_path / "results.parquet")
    assert read_table(path).equals(table)
    with pytest.raises(ResultsError, match="missing \\['users'\\]"):
        check_table(table.drop_columns(["users"]), "t")
    col = table.schema.get_field_index("p50_us")
    with pytest.raises(ResultsError, match="column p50_us holds NaN"):
        check_table(table.set_column(col, "p50_us", pa.array([float("nan")] * len(table))), "t")
    col = table.schema.get_field_index("users")
    with pytest.raises(ResultsError, match="column users has 2 nulls"):
        check_table(table.set_column(col, "users", pa.array([None] * len(table), pa.int64())), "t")
    with pytest.raises(ResultsError, match="no results file"):
        read_table(tmp_path / "none.parquet")


def test_ratios_are_taken_within_a_repetition_and_the_floor_is_attached(tmp_path):
    write_run(tmp_path, DRIFT, repetitions=2)
    rows = ratios_to_baseline(build_table(tmp_path).to_pandas())
    filt = rows[(rows["variant"] == "filter") & (rows["outcome"] == "ALL")].set_index("repetition")
    assert list(filt["p50_ratio"]) == pytest.approx([1.1, 1.1])  # not 3.3 or 0.37 across repetitions
    assert list(filt["floor_p50_us"]) == [100, 300]
    summary = summarize_repetitions(rows).set_index(["cell_id", "outcome"])
    f = summary.loc[("filter-p1024-b0-h0-d0-u10", "ALL")]
    assert f["repetitions"] == 2
    assert f["p50_ratio_median"] == pytest.approx(1.1)
    assert (f["p50_ratio_ci_low"], f["p50_ratio_ci_high"]) == pytest.approx((1.1, 1.1))
    assert f["p50_us_median"] == 2200 and (f["p50_us_ci_low"], f["p50_us_ci_high"]) == (1100, 3300)
    assert f["p50_us_ci_level"] == 0.5
    medians = median_rows(rows).set_index(["cell_id", "outcome"])
    assert medians.loc[("baseline-p1024-b0-h0-d0-u10", "ALL"), "p50_us"] == 2000
    assert medians.loc[("baseline-p1024-b0-h0-d0-u10", "ALL"), "repetitions"] == 2


@pytest.mark.parametrize("values,expected", [
    ([3.0, 1.0, 2.0], (2.0, 1.0, 3.0, 0.75)),                     # n = 3: [min, max] covers 75 %
    ([4.0, 1.0, 3.0, 2.0], (2.5, 1.0, 4.0, 0.875)),
    (list(range(10)), (4.5, 1.0, 8.0, 1 - 22 / 1024)),            # n = 10: [x(2), x(9)], 97.85 %
    (list(range(20)), (9.5, 5.0, 14.0, 1 - 2 * 21700 / 2**20)),   # n = 20: [x(6), x(15)], 95.86 %
])
def test_order_statistic_interval_of_the_median(values, expected):
    assert median_ci(values) == pytest.approx(expected)


def test_gate_names_repetitions_over_the_error_rate_and_those_that_measured_nothing(tmp_path):
    write_run(tmp_path, {
        "baseline": {"latencies_us": [500] * 100, "statuses": [200] * 95 + [503] * 5},
        "filter-off": {"latencies_us": [500] * 10, "statuses": [0] * 10},
        "filter": {"latencies_us": [], "failed": "warm-up stores did not land"},
        "envoy-cache": {"latencies_us": [500] * 100, "statuses": [200] * 100},
    })
    lines = [f.line() for f in check_run(tmp_path, 0.01)]
    assert lines == [
        "baseline-p1024-b0-h0-d0-u10 rep 1: 5.0% of 100 requests failed (non-2xx or no response), over "
        "--max-error-rate 0.01",
        "filter-off-p1024-b0-h0-d0-u10 rep 1: every request failed (10 requests, statuses [0])",
        "filter-p1024-b0-h0-d0-u10 rep 1: measured nothing: warm-up stores did not land",
    ]
    assert [f.cell_id for f in check_run(tmp_path, 0.10)] == ["filter-off-p1024-b0-h0-d0-u10",
                                                               "filter-p1024-b0-h0-d0-u10"]


def test_filter_metrics_long_table_has_counters_and_histograms_and_nothing_for_other_cells(tmp_path):
    write_run(tmp_path, DRIFT, repetitions=1)
    rows = [r for r in filter_metrics(tmp_path).to_pylist() if r["variant"] == "filter"]
    got = {(r["kind"], r["name"], r["quantile"]): r["value"] for r in rows}
    assert got == {("counter", "sp_cache.hit", ""): 50.0, ("counter", "sp_cache.store_dropped", ""): 2.0,
                   ("counter", "sp_cache.lookup_timeout", ""): 1.0,
                   ("histogram", "sp_cache.lookup_duration_us", "p50"): 40.0,
                   ("histogram", "sp_cache.lookup_duration_us", "p90"): 90.0,
                   ("histogram", "sp_cache.lookup_duration_us", "p99"): 120.0}


def test_docs_list_every_field_and_column():
    doc = (REPO_ROOT / "docs" / "bench-files.md").read_text()
    for name in RESULTS_SCHEMA.names:
        assert f"`{name}`" in doc, name
    for schema in json_schemas().values():
        for name in schema["properties"]:
            assert f"`{name}`" in doc, name


def test_the_readers_import_neither_the_runtime_nor_locust(tmp_path):
    import subprocess
    import sys

    write_run(tmp_path, DRIFT, repetitions=2)
    code = ("import sys\nfrom sp_istio_cache.bench import table, repetitions, gate\n"
            f"table.build_table({str(tmp_path)!r}); repetitions.run_summary({str(tmp_path)!r}); "
            f"gate.check_run({str(tmp_path)!r}); table.filter_metrics({str(tmp_path)!r})\n"
            "print(sorted(m for m in sys.modules if m.startswith(('sp_istio_cache.runtime', 'sp_istio_cache.stack', "
            "'locust', 'docker', 'gevent'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
