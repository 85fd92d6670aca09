"""The size-limit choice on synthetic results tables with known answers."""

from __future__ import annotations

import pytest

from sp_istio_cache.analysis.tuning import (Budget, GeneratorLimitedError, NoSizeMeetsBudgetError, choose_limit,
                                            recommend, worst_case_memory_bytes)
from sp_istio_cache.pluginconfig import validate

from .synthetic import MIB, row, table

KIB = 1024
SIZES = {1 * KIB: (1500, 1200), 64 * KIB: (2500, 1800), 256 * KIB: (4000, 2000), 1024 * KIB: (9000, 3000)}


def budget(**kw) -> Budget:
    return Budget(**{"memory_bytes": 128 * MIB, "concurrency": 8, "p99_added_us": 2000, **kw})


def test_latency_budget_picks_the_largest_size_within_it():
    # added p99 at h=0 (worst): +500, +1500, +3000, +8000 µs -> 64 KiB is the last within +2000
    choice = choose_limit(table(SIZES), budget())
    assert choice.limit == 64 * KIB
    assert "262,144 B, misses it: p99 +3,000 µs" in choice.reason
    assert list(choice.table["p99_added_us"]) == [500, 1500, 3000, 8000]


def test_worst_hit_ratio_decides_not_the_average():
    # at h=0.9 every size is within budget; h=0 decides
    assert choose_limit(table(SIZES), budget(p99_added_us=2999)).limit == 64 * KIB
    assert choose_limit(table(SIZES), budget(p99_added_us=3000)).limit == 256 * KIB


def test_memory_budget_binds_with_the_stated_formula():
    # 90 MiB filter RSS + 2 copies x 16 streams x S: 256 KiB -> 98 MiB, 1 MiB -> 122 MiB, both < 128;
    # with 20 streams 1 MiB -> 130 MiB > 128 MiB
    loose = budget(p99_added_us=10_000, concurrency=16)
    assert choose_limit(table(SIZES), loose).limit == 1024 * KIB
    tight = budget(p99_added_us=10_000, concurrency=20)
    choice = choose_limit(table(SIZES), tight)
    assert choice.limit == 256 * KIB
    assert "worst case 130.0 MiB > 128 MiB" in choice.reason
    assert worst_case_memory_bytes(60 * MIB, 90 * MIB, 1 * MIB, tight) == 130 * MIB
    assert worst_case_memory_bytes(60 * MIB, 50 * MIB, 1 * MIB, tight) == 100 * MIB  # no negative overhead


def test_ratio_budget():
    # p99 ratios at h=0 over a 1000 µs baseline: 1.5, 2.5, 4, 9
    assert choose_limit(table(SIZES), budget(p99_added_us=None, p99_ratio=3.0)).limit == 64 * KIB
    assert choose_limit(table(SIZES), budget(p99_added_us=10_000, p99_ratio=1.6)).limit == 1 * KIB


def test_a_failing_smaller_size_cannot_be_skipped():
    # 64 KiB misses the budget, 256 KiB (noise) meets it: the limit stays at 1 KiB
    spec = {1 * KIB: (1500, 1200), 64 * KIB: (5000, 1800), 256 * KIB: (2000, 2000)}
    assert choose_limit(table(spec), budget()).limit == 1 * KIB


def test_generator_limited_cells_are_never_used_the_choice_stops_below_them():
    # 64 KiB would meet the budget, but its baseline cell was generator-limited: not proven
    choice = choose_limit(table(SIZES, limited={("baseline", 64 * KIB)}), budget())
    assert choice.limit == 1 * KIB
    assert "65,536 B, could not be judged" in choice.reason and "baseline-p65536-b0-h0-u10" in choice.reason
    # nothing proven at all: refused
    with pytest.raises(GeneratorLimitedError, match="filter-p1024"):
        choose_limit(table(SIZES, limited={("filter", 1 * KIB)}), budget())


def test_generator_limited_cell_beyond_the_first_failing_size_does_not_matter():
    # 256 KiB already fails; a limited 1 MiB cell does not take part in the decision
    assert choose_limit(table(SIZES, limited={("filter", 1024 * KIB)}), budget()).limit == 64 * KIB


def test_nothing_meeting_the_budget_is_an_error_naming_the_smallest_size():
    with pytest.raises(NoSizeMeetsBudgetError, match=r"smallest measured size \(1,024 B\).*p99 \+500 µs"):
        choose_limit(table(SIZES), budget(p99_added_us=100))
    with pytest.raises(NoSizeMeetsBudgetError, match="worst case"):
        choose_limit(table(SIZES), budget(memory_bytes=64 * MIB))


def test_every_size_meeting_the_budget_says_larger_sizes_were_not_measured():
    choice = choose_limit(table(SIZES), budget(p99_added_us=1e6))
    assert choice.limit == 1024 * KIB
    assert "larger bodies were not measured" in choice.reason


def test_recommend_writes_a_valid_config_and_keeps_unmeasured_request_default():
    rec = recommend(table(SIZES), budget(), base_config={"lookup_timeout_ms": 150})
    assert rec.plugin_config == {"lookup_timeout_ms": 150, "max_response_body_bytes": 64 * KIB,
                                 "max_request_body_bytes": 65536}
    assert validate(rec.plugin_config) is rec.plugin_config
    assert not rec.request.measured and "not measured" in rec.request.reason
    doc = rec.as_dict()
    assert doc["budget"]["concurrency"] == 8 and doc["response"]["limit"] == 64 * KIB


def test_request_body_axis_uses_post_cells():
    import pandas as pd

    from sp_istio_cache.analysis.results import add_baseline_ratios

    base = table(SIZES)
    rows = []
    for body, p99 in ((4 * KIB, 1800), (16 * KIB, 2500), (64 * KIB, 6000)):
        rows.append(row("baseline", 1 * KIB, 0.0, 1000, body=body))
        rows.append(row("filter", 1 * KIB, 0.0, p99, body=body, rss=90 * MIB))
    derived = ["p50_ratio", "p99_ratio", "rps_ratio", "rss_over_baseline_bytes", "cpu_s_per_1k_over_baseline"]
    frame = pd.concat([base.drop(columns=derived), pd.DataFrame(rows)], ignore_index=True)
    rec = recommend(add_baseline_ratios(frame), budget())
    assert rec.plugin_config["max_request_body_bytes"] == 16 * KIB
    assert rec.plugin_config["max_response_body_bytes"] == 64 * KIB  # POST cells do not enter this axis


def test_budget_needs_a_latency_bound():
    with pytest.raises(ValueError, match="latency budget"):
        Budget(memory_bytes=MIB, concurrency=1)


def test_an_oom_killed_filter_cell_fails_the_memory_budget():
    # budget admits up to 256 KiB on latency (+3000 µs); the 256 KiB filter cell was OOM-killed
    frame = table(SIZES)
    frame["oom_killed"] = (frame["variant"] == "filter") & (frame["payload_bytes"] == 256 * KIB)
    choice = choose_limit(frame, budget(p99_added_us=3000))
    assert choice.limit == 64 * KIB
    assert list(choice.table["meets_memory"]) == [True, True, False, True]
