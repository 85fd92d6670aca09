"""The charts are drawn from a run's files (synthetic runs with known answers)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from matplotlib.figure import Figure

from sp_istio_cache.analysis import bench_charts, charts
from sp_istio_cache.analysis.results import load_run

from .synthetic import KIB, sized_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIZES = {1 * KIB: (1500, 1200), 64 * KIB: (2500, 1800), 256 * KIB: (4000, 2000)}
HISTOGRAMS = {"sp_cache.lookup_duration_us": (300.0, 500.0, 900.0), "sp_cache.callback_duration_us": (20.0, 40.0, 90.0)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return load_run(sized_run(tmp_path_factory.mktemp("r") / "run", SIZES, jitter=0.1, histograms=HISTOGRAMS))


def test_benchmark_charts_are_written(run, tmp_path):
    paths, notes = bench_charts.write_benchmark_charts(run, tmp_path / "charts")
    assert [p.name for p in paths] == list(bench_charts.BENCHMARK_CHARTS) and notes == []
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 10_000, p


def test_a_chart_the_data_cannot_make_is_a_note_not_a_failure(tmp_path):
    only_filter = load_run(sized_run(tmp_path / "run", {1 * KIB: (1500, 1200)}))
    paths, notes = bench_charts.write_benchmark_charts(only_filter, tmp_path / "charts")
    assert "filter_histograms.png: not drawn: the filter recorded no histogram in this run" in notes[0]
    assert len(paths) == 4


def test_cdf_frame_splits_outcomes_and_merges_repetitions(run):
    cdf = bench_charts.latency_cdf_frame(run.run_dir)
    filt = cdf[(cdf["variant"] == "filter") & (cdf["payload_bytes"] == 1024)]
    assert set(filt["outcome"]) == {"HIT", "MISS"}
    # h=0: 200 MISS per repetition; h=0.9: 180 HIT + 20 MISS; 3 repetitions merged
    assert filt.groupby("outcome")["requests"].first().to_dict() == {"HIT": 540, "MISS": 660}
    for _, g in cdf.groupby(["variant", "payload_bytes", "outcome"]):
        assert g["fraction"].is_monotonic_increasing and g["fraction"].iloc[-1] == 1.0


def test_filter_histograms_are_medians_over_repetitions_per_cell(run):
    frame = bench_charts.histogram_frame(run)
    lookup = frame[(frame["name"] == "sp_cache.lookup_duration_us") & (frame["quantile"] == "p99")]
    assert set(lookup["value"]) == {900.0} and len(lookup) == 6  # 3 sizes x 2 hit ratios
    assert set(lookup["floor_p50_us_median"]) == {300.0}


def test_the_ratio_chart_needs_a_baseline(tmp_path):
    from .synthetic import Spec, write_run

    no_base = load_run(write_run(tmp_path / "run", [Spec("floor", hit=None, p50=300, p99=500), Spec("filter")]))
    with pytest.raises(charts.ChartError, match="baseline"):
        bench_charts.latency_ratio_vs_size(no_base, tmp_path / "x.png")


def test_log_latency_axis_spans_whole_decades_so_no_bar_is_cut(tmp_path):
    frame = pd.DataFrame({"size": ["1 KiB", "1 KiB", "64 KiB", "64 KiB"], "outcome": ["HIT", "MISS"] * 2,
                          "median_us": [850.0, 2300.0, 1200.0, 5400.0], "max_us": [1500.0, 4000.0, 2000.0, 12000.0]})
    path = charts.grouped_bar_chart(frame, x="size", groups="outcome", value="median_us", high="max_us",
                                    path=tmp_path / "smoke.png", log=True, title="t", ylabel="latency")
    assert path.read_bytes()[:8] == PNG_MAGIC
    ax = Figure().subplots()
    charts.latency_axis(ax, [850.0, 12000.0])
    low, high = ax.get_ylim()
    assert (low, high) == (100.0, 100000.0)
    assert math.log10(low).is_integer() and math.log10(high).is_integer()


def test_units():
    assert [charts.human_bytes(n) for n in (512, 1024, 65536, 1536, 1048576)] == \
        ["512 B", "1 KiB", "64 KiB", "1.5 KiB", "1 MiB"]
    assert [charts.human_us(v) for v in (850, 1500, 2000, 12_500, 2_000_000, float("nan"))] == \
        ["850 µs", "1.5 ms", "2 ms", "12.5 ms", "2 s", "–"]
