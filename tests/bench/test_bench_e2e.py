"""The benchmark engine on the real stack: the 2 x 2 mini matrix, Envoy's own cache, a stall."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from sp_istio_cache.bench.runner import run_matrix
from sp_istio_cache.bench.scenario import Matrix, load_matrix
from sp_istio_cache.paths import REPO_ROOT

pytestmark = pytest.mark.envoy

REQUIRED_COLUMNS = {
    "variant", "payload_bytes", "request_body_bytes", "target_hit_ratio", "achieved_hit_ratio",
    "achieved_hit_ratio_upstream", "outcome", "requests", "p50_us", "p90_us", "p99_us", "p999_us",
    "max_us", "rps", "rss_mean_bytes", "rss_max_bytes", "cpu_seconds", "generator_limited",
    "upstream_mismatch", "non_2xx", "p50_ratio", "p99_ratio", "missed_slots",
}


def _our_processes(root) -> list[str]:
    """Live processes whose command line mentions a path under ``root``."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(root) in cmd:
            found.append(f"{p.info['pid']} {cmd[:120]}")
    return found


@pytest.fixture(scope="module")
def mini(tmp_path_factory, wasm_module):
    out = tmp_path_factory.mktemp("mini")
    matrix = load_matrix(REPO_ROOT / "bench" / "matrix-mini.yaml")
    result = run_matrix(matrix, out, wasm_path=wasm_module, progress=False)
    return result


@pytest.fixture(scope="module")
def wasm_module():
    from sp_istio_cache.stack import ensure_wasm

    return ensure_wasm()


def test_mini_matrix_table_has_every_cell_and_column(mini):
    frame = mini.frame
    assert REQUIRED_COLUMNS <= set(frame.columns)
    all_rows = frame[frame["outcome"] == "ALL"]
    assert len(all_rows) == 12
    assert sorted(set(all_rows["payload_bytes"])) == [1024, 262144]
    assert sorted(set(all_rows["target_hit_ratio"])) == [0.0, 0.9]
    assert (all_rows["requests"] > 100).all()
    assert (all_rows["non_2xx"] == 0).all()
    for name in ("results.parquet", "results.csv", "run.json"):
        assert (mini.out_dir / name).stat().st_size > 0
    run = json.loads((mini.out_dir / "run.json").read_text())
    assert run["status"] == "complete"
    env = run["environment"]
    assert env["envoy_version"].startswith("") and "1.40" in env["envoy_version"]
    assert len(env["wasm_sha256"]) == 64 and env["cpu_cores"] >= 1


def test_baseline_filter_off_filter_side_by_side(mini):
    all_rows = mini.frame[mini.frame["outcome"] == "ALL"]
    for (size, ratio), point in all_rows.groupby(["payload_bytes", "target_hit_ratio"]):
        assert list(point["variant"]) == ["baseline", "filter-off", "filter"], (size, ratio)
        base = point[point["variant"] == "baseline"].iloc[0]
        assert base["p50_ratio"] == 1.0 and base["p99_ratio"] == 1.0
        assert point["p50_ratio"].notna().all() and point["p99_ratio"].notna().all()


def test_filter_cells_reach_the_target_hit_ratio(mini):
    rows = mini.frame[(mini.frame["outcome"] == "ALL") & (mini.frame["variant"] == "filter")]
    assert len(rows) == 4
    for _, r in rows.iterrows():
        assert abs(r["achieved_hit_ratio"] - r["target_hit_ratio"]) <= 0.05, r["cell_id"]
        assert abs(r["achieved_hit_ratio_upstream"] - r["target_hit_ratio"]) <= 0.05, r["cell_id"]


def test_upstream_counts_agree_with_miss_plus_bypass(mini):
    frame = mini.frame
    for cell_id, cell in frame.groupby("cell_id"):
        counts = dict(zip(cell["outcome"], cell["requests"]))
        variant = cell["variant"].iloc[0]
        upstream = cell["upstream_requests"].iloc[0]
        if variant == "filter":
            assert upstream == counts.get("MISS", 0) + counts.get("BYPASS", 0), cell_id
        elif variant == "filter-off":
            assert set(counts) == {"BYPASS", "ALL"} and upstream == counts["BYPASS"], cell_id
        else:
            assert set(counts) == {"NONE", "ALL"} and upstream == counts["NONE"], cell_id
        assert not cell["upstream_mismatch"].any(), cell_id


def test_latencies_are_microseconds_not_rounded_milliseconds(mini):
    all_rows = mini.frame[mini.frame["outcome"] == "ALL"]
    assert (all_rows["p50_us"] % 1000 != 0).sum() >= 10
    assert (all_rows["p50_us"] <= all_rows["p99_us"]).all() and (all_rows["p99_us"] <= all_rows["max_us"]).all()


def test_resources_are_sampled(mini):
    all_rows = mini.frame[mini.frame["outcome"] == "ALL"]
    assert (all_rows["rss_mean_bytes"] > 10 * 2**20).all()
    assert (all_rows["rss_max_bytes"] >= all_rows["rss_mean_bytes"]).all()
    assert (all_rows["cpu_seconds"] > 0).all()
    # the runtime's own resources() (psutil inside LocalRuntime): RSS basis, no container columns
    assert (all_rows["runtime"] == "local").all() and (all_rows["memory_basis"] == "process_rss").all()
    assert (all_rows["memory_anon_max_bytes"] > 0).all()
    assert (all_rows["memory_anon_max_bytes"] < all_rows["rss_max_bytes"]).all()
    for name in ("container_memory_max_bytes", "memory_limit_bytes", "cpu_limit_cores", "cpu_throttled_seconds"):
        assert all_rows[name].isna().all(), name
    assert not all_rows["oom_killed"].any() and not all_rows["envoy_died"].any()
    filt = all_rows[all_rows["variant"] == "filter"]
    assert (filt["backend_entries"] > 0).all()


def test_no_process_outlives_the_run(mini):
    assert _our_processes(mini.out_dir) == []


def test_envoy_cache_anchor_hit_ratio_from_age_header(tmp_path):
    m = Matrix(variants=("envoy-cache",), payload_bytes=(1024,), hit_ratios=(0.9,), duration_s=2).validate()
    frame = run_matrix(m, tmp_path, progress=False).frame
    counts = dict(zip(frame["outcome"], frame["requests"]))
    row = frame[frame["outcome"] == "ALL"].iloc[0]
    assert set(counts) == {"HIT", "MISS", "ALL"}
    assert abs(row["achieved_hit_ratio"] - 0.9) <= 0.05
    assert row["upstream_requests"] == counts["MISS"] and not row["upstream_mismatch"]
    assert _our_processes(tmp_path) == []


def test_stalled_upstream_shows_in_p99_and_missed_slots(tmp_path):
    """SIGSTOP the upstream for 2 s in a 10 s fixed-rate cell."""
    def stall(stack, cell):
        time.sleep(3)
        pid = stack.upstream.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(2)
        finally:
            os.kill(pid, signal.SIGCONT)

    m = Matrix(variants=("baseline",), payload_bytes=(1024,), hit_ratios=(0.0,), rate=100, users=10,
               duration_s=10).validate()
    frame = run_matrix(m, tmp_path, progress=False, during=stall).frame
    row = frame[frame["outcome"] == "ALL"].iloc[0]
    assert row["latency_basis"] == "intended"
    assert row["p99_us"] >= 1_000_000
    assert row["max_us"] >= 1_800_000
    assert row["slots"] >= 900 and row["missed_slots"] >= 100
    assert not row["upstream_mismatch"] and row["non_2xx"] == 0
    assert _our_processes(tmp_path) == []
