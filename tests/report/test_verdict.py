"""Every refusal rule of the verdict, on synthetic runs with one thing wrong (and its exact reason)."""

from __future__ import annotations

import pytest

from sp_istio_cache.analysis.recommend import recommend
from sp_istio_cache.analysis.results import load_run
from sp_istio_cache.analysis.tuning import Budget
from sp_istio_cache.analysis.verdict import REASON_CODES, Rules

from .synthetic import KIB, MIB, sized_run

SIZES = {1 * KIB: (1500, 1200), 64 * KIB: (2500, 1800), 256 * KIB: (4000, 2000)}
BUDGET = Budget(memory_bytes=128 * MIB, concurrency=8, p99_added_us=2000)


def verdict_of(tmp_path, spec=SIZES, budget=BUDGET, **kw):
    rec = recommend(load_run(sized_run(tmp_path / "run", spec, **kw)), budget)
    return rec, rec.verdict


def test_a_clean_run_is_accepted(tmp_path):
    rec, verdict = verdict_of(tmp_path)
    assert verdict.accepted and rec.plugin_config["max_response_body_bytes"] == 64 * KIB
    assert verdict.summary().startswith("accepted")


def test_a_generator_limited_cell_it_rests_on_refuses(tmp_path):
    rec, verdict = verdict_of(tmp_path, limited={("baseline", 64 * KIB)})
    assert verdict.codes == ["generator_limited"]
    assert ("the load generator, not Envoy, bounded baseline-p65536-b0-h0-d0-u10 rep 2 (locust CPU warning)"
            in verdict.reasons[0].message)
    env = rec.envelope()
    assert (env["trusted"], env["verdict"]) == (False, "refused")
    assert env["reason"].startswith("refused: generator_limited: the load generator, not Envoy, bounded")


def test_a_generator_limited_cell_beyond_the_decision_does_not_matter(tmp_path):
    spec = {**SIZES, 1024 * KIB: (9000, 3000)}
    _, verdict = verdict_of(tmp_path, spec=spec, limited={("filter", 1024 * KIB)})
    assert verdict.accepted  # 256 KiB already failed: the 1 MiB cells take no part


def test_a_baseline_at_the_generator_floor_is_generator_limited(tmp_path):
    # baseline p50 600 µs vs a floor at 600 µs: the baseline measures Locust, not Envoy
    _, verdict = verdict_of(tmp_path, floor_p50=600, floor_p99=900)
    assert verdict.codes == ["generator_limited"]
    assert ("baseline-p1024-b0-h0-d0-u10 (p50 600–600 µs is not above the floor's 600–600 µs)"
            in verdict.reasons[0].message)


def test_a_run_without_a_floor_is_refused(tmp_path):
    _, verdict = verdict_of(tmp_path, floor=False)
    assert verdict.codes == ["no_floor"]
    assert verdict.reasons[0].message.startswith("no generator floor was measured for baseline-p1024-b0-h0-d0-u10")


def test_a_budget_below_the_floor_is_refused(tmp_path):
    # Locust alone takes 2,500 µs at p50: a +2,000 µs budget is below what it can resolve
    _, verdict = verdict_of(tmp_path, floor_p50=2500, floor_p99=3000, base_p50=5000, base_p99=6000,
                            spec={1 * KIB: (6500, 6200)})
    assert verdict.codes == ["budget_below_floor"]
    assert verdict.reasons[0].message.startswith("the latency budget +2,000 µs is below the generator floor's p50 "
                                                 "(2,500 µs)")


def test_wide_intervals_are_unstable(tmp_path):
    _, verdict = verdict_of(tmp_path, jitter=0.3, spec={1 * KIB: (1500, 1200), 64 * KIB: (2000, 1800),
                                                        256 * KIB: (6000, 2000)})
    assert verdict.codes == ["unstable"]
    assert "intervals wider than ±20%: filter-p1024-b0-h0-d0-u10 (p99 ratio 1.50, interval 1.05–1.95: ±30%)" \
        in verdict.reasons[0].message


def test_an_interval_straddling_the_budget_at_the_deciding_size_is_unstable(tmp_path):
    # 256 KiB: +3,000 µs ±10 % -> 2,600–3,400 straddles a 3,000 µs budget; cells themselves are within ±20 %
    _, verdict = verdict_of(tmp_path, jitter=0.1, budget=Budget(concurrency=8, p99_added_us=3000))
    assert verdict.codes == ["unstable"]
    assert verdict.reasons[0].message == (
        "the run cannot tell whether the limit should stop below 262,144 B (filter-p262144-b0-h0-d0-u10: added p99 "
        "2,600–3,400 µs straddles the budget)")


def test_an_error_rate_over_the_gate_refuses(tmp_path):
    _, verdict = verdict_of(tmp_path, errors={("filter", 1 * KIB): 10})
    assert verdict.codes == ["error_rate"]
    assert verdict.reasons[0].message == ("filter-p1024-b0-h0-d0-u10 rep 2: 5.0% of 200 requests failed (non-2xx or "
                                          "no response), over the gate's 1.0%; filter-p1024-b0-h0.9-d0-u10 rep 2: "
                                          "5.0% of 200 requests failed (non-2xx or no response), over the gate's 1.0%")


def test_too_few_repetitions_refuse(tmp_path):
    _, verdict = verdict_of(tmp_path, repetitions=2)
    assert "too_few_repetitions" in verdict.codes
    message = next(r.message for r in verdict.reasons if r.code == "too_few_repetitions")
    assert message.startswith("fewer than 3 measured repetitions: baseline-p1024-b0-h0-d0-u10 (2)")
    # the threshold is a rule: one repetition may be enough for a smoke test that says so
    rec = recommend(load_run(tmp_path / "run"), BUDGET, rules=Rules(min_repetitions=2))
    assert "too_few_repetitions" not in rec.verdict.codes


def test_no_size_meeting_the_budget_is_refused(tmp_path):
    rec, verdict = verdict_of(tmp_path, budget=Budget(concurrency=8, p99_added_us=400))
    assert verdict.codes == ["no_size_meets_budget"]
    assert verdict.reasons[0].message.startswith("max_response_body_bytes: even the smallest measured size (1,024 B) "
                                                 "does not pass the budget")
    assert rec.plugin_config["max_response_body_bytes"] == 262144  # the schema default, marked refused


def test_an_interrupted_run_is_refused(tmp_path):
    _, verdict = verdict_of(tmp_path, status="interrupted")
    assert verdict.codes == ["run_incomplete"]
    assert verdict.reasons[0].message == "the run's status is interrupted, not complete"


def test_a_module_problem_is_a_refusal(tmp_path):
    run = load_run(sized_run(tmp_path / "run", SIZES))
    rec = recommend(run, BUDGET, module_problem="module: x has sha256 b…, its build record says a…")
    assert rec.verdict.codes == ["module_mismatch"]


def test_reason_codes_are_checked():
    from sp_istio_cache.analysis.verdict import Verdict

    v = Verdict(Rules())
    with pytest.raises(ValueError, match="unknown reason code 'nope'"):
        v.add("nope", "x")
    assert len(REASON_CODES) == len(set(REASON_CODES)) == 10
    with pytest.raises(ValueError, match="max_ci_half_width"):
        Rules(max_ci_half_width=0)
