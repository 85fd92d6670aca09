"""The charts module writes the expected PNG files from synthetic results."""

from __future__ import annotations

import pytest

from sp_istio_cache.analysis import charts
from sp_istio_cache.analysis.tuning import Budget, choose_limit

from .synthetic import MIB, run_dir, table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_benchmark_charts_are_written(tmp_path):
    run, frame = run_dir(tmp_path / "run")
    paths = charts.write_benchmark_charts(frame, run, tmp_path / "charts")
    assert [p.name for p in paths] == list(charts.BENCHMARK_CHARTS)
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 10_000, p


def test_cdf_frame_splits_outcomes_from_the_samples(tmp_path):
    run, _ = run_dir(tmp_path / "run", sizes=(1024,), hit_ratios=(0.9,))
    cdf = charts.latency_cdf_frame(run)
    filt = cdf[cdf["variant"] == "filter"]
    assert set(filt["outcome"]) == {"HIT", "MISS"}
    counts = filt.groupby("outcome")["requests"].first().to_dict()
    assert counts == {"HIT": 180, "MISS": 20}
    for _, g in cdf.groupby(["variant", "outcome"]):
        assert g["fraction"].is_monotonic_increasing and g["fraction"].iloc[-1] == 1.0


def test_tuning_chart_is_written(tmp_path):
    frame = table({1024: (1500, 1200), 65536: (2500, 1800), 262144: (4000, 2000)})
    b = Budget(memory_bytes=128 * MIB, concurrency=8, p99_added_us=2000)
    choice = choose_limit(frame, b)
    path = charts.tuning_chart(choice.table, limit=choice.limit, memory_budget_bytes=b.memory_bytes,
                               p99_added_budget_us=2000, p99_ratio_budget=None, concurrency=8,
                               path=tmp_path / "tuning.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_a_run_without_baseline_cannot_chart_ratios(tmp_path):
    run, frame = run_dir(tmp_path / "run", variants=("filter",))
    with pytest.raises(charts.ChartError, match="baseline"):
        charts.latency_ratio_vs_size(frame, tmp_path / "x.png")


def test_human_bytes():
    assert [charts.human_bytes(n) for n in (512, 1024, 65536, 1536, 1048576)] == \
        ["512 B", "1 KiB", "64 KiB", "1.5 KiB", "1 MiB"]
