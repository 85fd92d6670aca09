"""`sp-istio-cache compare`: per-cell ratios of the medians over repetitions (FAKE run
directories) and a non-zero exit past the tolerance."""

from __future__ import annotations

from typer.testing import CliRunner

from sp_istio_cache.analysis.compare import compare_frames
from sp_istio_cache.analysis.results import build_frame
from sp_istio_cache.cli import app

from .fakes import write_run

BASE = [400] * 900 + [900] * 100  # p50 400 µs, p99 900 µs


def _run(path, factor: float, rss: float = 50e6):
    return write_run(path, {
        "baseline": {"latencies_us": BASE, "outcome": "NONE", "rss": 50e6},
        "filter": {"latencies_us": [round(v * factor) for v in BASE], "outcome": "MISS", "rss": rss},
    }, sizes=(1024, 262144))


def compare_runs(a, b, tolerance):
    return compare_frames(build_frame(a), build_frame(b), tolerance)


def test_regression_past_tolerance_exits_1(tmp_path):
    a, b = _run(tmp_path / "a", 1.0), _run(tmp_path / "b", 1.25)
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--tolerance", "0.10"])
    assert result.exit_code == 1, result.output
    assert "2 of 4 cells regressed" in result.output
    cmp = compare_runs(a, b, 0.10)
    bad = cmp.regressions.set_index(["variant", "payload_bytes"])
    assert sorted(bad.index) == [("filter", 1024), ("filter", 262144)]
    assert bad.loc[("filter", 1024), "p50_ratio"] == 500 / 400
    assert bad.loc[("filter", 1024), "p99_ratio"] == 1125 / 900


def test_within_tolerance_exits_0(tmp_path):
    a, b = _run(tmp_path / "a", 1.0), _run(tmp_path / "b", 1.05)
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--tolerance", "0.10"])
    assert result.exit_code == 0, result.output
    assert "no regression in 4 cells" in result.output


def test_memory_growth_is_a_regression(tmp_path):
    a, b = _run(tmp_path / "a", 1.0), _run(tmp_path / "b", 1.0, rss=80e6)
    cmp = compare_runs(a, b, 0.10)
    assert list(cmp.regressions["why"]) == ["rss x1.600", "rss x1.600"]


def test_missing_run_is_a_clear_error(tmp_path):
    a = _run(tmp_path / "a", 1.0)
    result = CliRunner().invoke(app, ["compare", str(a), str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'nope'}/run.json: no run manifest" in result.output.replace("\n", "")
