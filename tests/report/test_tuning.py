"""The size-limit choice on synthetic run directories with known answers (3 repetitions each)."""

from __future__ import annotations

import pytest

from sp_istio_cache.analysis.recommend import recommend
from sp_istio_cache.analysis.results import load_run
from sp_istio_cache.analysis.tuning import Budget, choose_limit, worst_case_memory_bytes
from sp_istio_cache.pluginconfig import validate

from .synthetic import KIB, MIB, Spec, sized_run, write_run

SIZES = {1 * KIB: (1500, 1200), 64 * KIB: (2500, 1800), 256 * KIB: (4000, 2000), 1024 * KIB: (9000, 3000)}


def budget(**kw) -> Budget:
    return Budget(**{"memory_bytes": 128 * MIB, "concurrency": 8, "p99_added_us": 2000, **kw})


@pytest.fixture(scope="module")
def sizes_run(tmp_path_factory):
    return load_run(sized_run(tmp_path_factory.mktemp("run") / "run", SIZES, jitter=0.05))


def test_latency_budget_picks_the_largest_size_within_it(sizes_run):
    # added p99 at h=0 (worst): +500, +1500, +3000, +8000 µs (±5 % over the 3 repetitions)
    choice = choose_limit(sizes_run, budget())
    assert choice.limit == 64 * KIB
    assert "the next size, 262,144 B, does not: p99 +3,000 µs (×4.00; interval 2,800–3,200 µs)" in choice.reason
    assert list(choice.table["p99_added_us"]) == [500, 1500, 3000, 8000]
    assert list(choice.table["p99_added_ci_low"]) == [425, 1375, 2800, 7550]
    assert list(choice.table["status"]) == ["pass", "pass", "fail", "fail"]
    # the choice rests on every cell up to the limit and on the size that stopped it, not beyond
    assert "filter-p262144-b0-h0-d0-u10" in choice.rests_on
    assert "baseline-p262144-b0-h0.9-d0-u10" in choice.rests_on
    assert not any("p1048576" in c for c in choice.rests_on)


def test_worst_hit_ratio_decides_not_the_average(sizes_run):
    # at h=0.9 every size is within the budget; h=0 decides (its interval must clear the budget)
    assert choose_limit(sizes_run, budget(p99_added_us=3201)).limit == 256 * KIB
    assert choose_limit(sizes_run, budget(p99_added_us=2799)).limit == 64 * KIB


def test_an_interval_straddling_the_budget_is_undecided(sizes_run):
    choice = choose_limit(sizes_run, budget(p99_added_us=3000))
    assert choice.limit == 64 * KIB
    assert choice.stop["status"] == "undecided"
    assert "interval 2,800–3,200 µs straddles the budget" in choice.reason


def test_memory_budget_binds_with_the_stated_formula(sizes_run):
    # 90 MiB filter RSS + 2 copies x 16 streams x S: 256 KiB -> 98 MiB, 1 MiB -> 122 MiB, both < 128;
    # with 20 streams 1 MiB -> 130 MiB > 128 MiB
    assert choose_limit(sizes_run, budget(p99_added_us=10_000, concurrency=16)).limit == 1024 * KIB
    choice = choose_limit(sizes_run, budget(p99_added_us=10_000, concurrency=20))
    assert choice.limit == 256 * KIB
    assert "worst case 130.0 MiB > 128 MiB" in choice.reason
    tight = budget(concurrency=20)
    assert worst_case_memory_bytes(60 * MIB, 90 * MIB, 1 * MIB, tight) == 130 * MIB
    assert worst_case_memory_bytes(60 * MIB, 50 * MIB, 1 * MIB, tight) == 100 * MIB  # no negative overhead


def test_ratio_budget(sizes_run):
    # p99 ratios at h=0 over a 1000 µs baseline: 1.5, 2.5, 4, 9 (±5 %)
    assert choose_limit(sizes_run, budget(p99_added_us=None, p99_ratio=3.0)).limit == 64 * KIB
    assert choose_limit(sizes_run, budget(p99_added_us=10_000, p99_ratio=1.6)).limit == 1 * KIB


def test_a_failing_smaller_size_cannot_be_skipped(tmp_path):
    # 64 KiB misses the budget, 256 KiB (noise) meets it: the limit stays at 1 KiB
    run = load_run(sized_run(tmp_path / "run", {1 * KIB: (1500, 1200), 64 * KIB: (5000, 1800),
                                                256 * KIB: (2000, 2000)}))
    assert choose_limit(run, budget()).limit == 1 * KIB


def test_every_size_passing_says_larger_sizes_were_not_measured(sizes_run):
    choice = choose_limit(sizes_run, budget(p99_added_us=1e6))
    assert choice.limit == 1024 * KIB and choice.stop is None
    assert "larger bodies were not measured" in choice.reason


def test_an_oom_killed_size_fails_the_memory_budget(tmp_path):
    run = load_run(sized_run(tmp_path / "run", SIZES, oom={256 * KIB}))
    choice = choose_limit(run, budget(p99_added_us=10_000))
    assert choice.limit == 64 * KIB and "Envoy was OOM-killed" in choice.reason


def test_recommend_writes_a_valid_config_and_keeps_the_unmeasured_request_default(sizes_run):
    rec = recommend(sizes_run, budget(), base_config={"lookup_timeout_ms": 150})
    assert rec.trusted and rec.verdict.codes == []
    assert rec.plugin_config == {"lookup_timeout_ms": 150, "max_response_body_bytes": 64 * KIB,
                                 "max_request_body_bytes": 65536}
    assert validate(rec.plugin_config) is rec.plugin_config
    request = rec.choice("max_request_body_bytes")
    assert not request.measured and "not measured; kept 65,536 B" in request.reason
    env = rec.envelope()
    assert (env["trusted"], env["verdict"], env["reasons"]) == (True, "accepted", [])
    assert env["plugin_config"]["max_response_body_bytes"] == 64 * KIB
    assert env["module_sha256"] == "a" * 64 and env["budget"]["concurrency"] == 8


def test_request_body_axis_uses_post_cells(tmp_path):
    specs = []
    for body, p99 in ((1 * KIB, 1200), (16 * KIB, 1800), (64 * KIB, 4000)):
        specs += [Spec("floor", payload=1024, body=body, hit=None, p50=300, p99=500),
                  Spec("baseline", payload=1024, body=body, p50=600, p99=1000),
                  Spec("filter", payload=1024, body=body, p50=700, p99=p99, rss=90 * MIB)]
    run = load_run(write_run(tmp_path / "run", specs))
    rec = recommend(run, budget())
    assert rec.choice("max_request_body_bytes").limit == 16 * KIB
    assert not rec.choice("max_response_body_bytes").measured  # only POST cells: no GET cell to size on
    assert rec.plugin_config["max_request_body_bytes"] == 16 * KIB and rec.trusted


def test_budget_rejects_nonsense():
    with pytest.raises(ValueError, match="a latency budget is needed"):
        Budget(p99_added_us=None, p99_ratio=None)
    with pytest.raises(ValueError, match="p99_ratio_budget must be above 1"):
        Budget(p99_ratio=0.5)
    assert Budget().describe() == "p99 +2,000 µs over the baseline; 128 MiB at 32 concurrent streams, 1 CPU"


def test_a_profile_run_recommends_the_limit_for_that_traffic(tmp_path):
    from .synthetic import profile_run

    run = load_run(profile_run(tmp_path / "run"))
    rec = recommend(run, budget())
    choice = rec.choice("max_response_body_bytes")
    # the largest cacheable response is 300 KiB (the 2 MiB one is no-store, the POST is not looked up)
    assert choice.limit == 512 * KIB and rec.trusted, rec.verdict.summary()
    assert choice.reason.startswith("524,288 B holds 95.0% of profile shop's requests as cacheable responses")
    shares = dict(zip(choice.table["size"], choice.table["cacheable_share"]))
    assert shares[1 * KIB] == 0.5 and shares[64 * KIB] == 0.8 and shares[512 * KIB] == 0.95
    assert rec.traffic["largest_cacheable_bytes"] == 300 * KIB and rec.traffic["largest_response_bytes"] == 2 * MIB
    # in flight = 200 requests / 1.9906 s x mean latency (0.97 x 600 µs + 0.03 x 1,800 µs = 636 µs) = 0.0639
    assert rec.traffic["observed_concurrency"] == pytest.approx(0.0639, rel=1e-3)
    assert rec.plugin_config["max_response_body_bytes"] == 512 * KIB
    assert "floor-profile-shop-u10" in set(run.cells["floor_cell"].dropna())


def test_a_profile_run_at_high_concurrency_is_held_by_the_memory_budget(tmp_path):
    from .synthetic import profile_run

    # 100 ms per request at 100 req/s: 10 in flight; 120 MiB measured + 2 x 10 x L <= 128 MiB -> L <= 256 KiB
    run = load_run(profile_run(tmp_path / "run", base_p50=100_000, base_p99=110_000, added_p99=1000,
                               filter_rss=120 * MIB))
    rec = recommend(run, budget())
    choice = rec.choice("max_response_body_bytes")
    assert choice.limit == 256 * KIB
    assert "a limit holding every cacheable response (307,200 B) would miss the memory budget" in choice.reason


ANALYSIS_PROBE = """
import json, sys
from pathlib import Path
from sp_istio_cache.analysis import bench_charts, compare, recommend, results, tuning, tuning_charts
run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
run = results.load_run(run_dir)
rec = recommend.recommend(run, tuning.Budget())
bench_charts.write_benchmark_charts(run, out / "charts")
tuning_charts.tuning_chart(rec.choices[0], tuning.Budget(), out / "tuning.png")
compare.compare_runs(run_dir, run_dir)
forbidden = ("sp_istio_cache.runtime", "sp_istio_cache.stack", "locust", "docker", "gevent")
json.dump(sorted(name for name in sys.modules if name.startswith(forbidden)), sys.stdout)
"""


def test_the_analysis_stage_imports_neither_the_runtime_nor_locust(tmp_path):
    import json
    import subprocess
    import sys

    run = sized_run(tmp_path / "run", SIZES, histograms={"sp_cache.lookup_duration_us": (300.0, 500.0, 900.0)})
    probe = subprocess.run([sys.executable, "-c", ANALYSIS_PROBE, str(run), str(tmp_path)], capture_output=True,
                           text=True, check=True)
    assert json.loads(probe.stdout) == []
    assert (tmp_path / "tuning.png").exists() and len(list((tmp_path / "charts").iterdir())) == 5
