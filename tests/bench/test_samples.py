"""Microsecond percentiles from HdrHistogram samples files, checked against brute force."""

from __future__ import annotations

import json
import random

import pytest

from sp_istio_cache.analysis.results import build_frame
from sp_istio_cache.bench.keys import is_hot, request_path
from sp_istio_cache.bench.samples import (
    SampleRecorder,
    SamplesError,
    brute_force_percentile,
    load_samples,
    outcome_of,
    summarize,
)

from .fakes import write_run

PCTS = {"p50_us": 50.0, "p90_us": 90.0, "p99_us": 99.0, "p999_us": 99.9}


def test_percentiles_equal_brute_force_to_the_microsecond(tmp_path):
    rng = random.Random(7)
    values = [rng.randint(150, 30_000) for _ in range(20_011)]  # below 32 768 µs: kept exactly
    rec = SampleRecorder()
    for v in values:
        rec.record(v, outcome="MISS", status=200)
    rec.write(tmp_path / "samples.json")
    got = summarize(load_samples([tmp_path / "samples.json"]).histogram())
    for key, p in PCTS.items():
        assert got[key] == brute_force_percentile(values, p), key
    assert got["max_us"] == max(values) and got["min_us"] == min(values)


def test_known_samples_give_known_percentiles(tmp_path):
    rec = SampleRecorder()
    for v in range(1, 1001):  # 1..1000 µs
        rec.record(v, outcome="HIT", status=200)
    rec.write(tmp_path / "s.json")
    got = summarize(load_samples([tmp_path / "s.json"]).histogram("HIT"))
    assert (got["p50_us"], got["p90_us"], got["p99_us"], got["p999_us"], got["max_us"]) == (500, 900, 990, 999, 1000)


def test_large_values_within_hdr_precision(tmp_path):
    values = [1_234_567, 2_000_003, 45_678_901]
    rec = SampleRecorder()
    for v in values:
        rec.record(v, outcome="MISS", status=200)
    rec.write(tmp_path / "s.json")
    got = summarize(load_samples([tmp_path / "s.json"]).histogram())
    assert got["max_us"] == pytest.approx(45_678_901, rel=1e-4)
    assert got["p50_us"] == pytest.approx(2_000_003, rel=1e-4)


def test_files_of_several_processes_merge_by_outcome_and_status(tmp_path):
    a, b = SampleRecorder(), SampleRecorder()
    for v in (100, 200, 300):
        a.record(v, outcome="HIT", status=200, kind="hot")
    b.record(5000, outcome="MISS", status=200, kind="cold")
    b.record(700, outcome="HIT", status=200, kind="hot")
    b.record(900, outcome="NONE", status=0, kind="cold")
    a.write(tmp_path / "samples.json")
    b.write(tmp_path / "samples.worker-2.json")
    cell = load_samples(sorted(tmp_path.glob("samples*.json")))
    assert cell.requests == 6
    assert cell.outcome_counts() == {"HIT": 4, "MISS": 1, "NONE": 1}
    assert cell.kinds == {"hot": {"HIT": 4}, "cold": {"MISS": 1, "NONE": 1}}
    assert summarize(cell.histogram("HIT"))["max_us"] == 700
    assert cell.non_2xx() == 1 and cell.non_2xx("HIT") == 0


@pytest.mark.parametrize("content,message", [
    ("", "is empty"),
    ("{not json", "is not JSON"),
    (json.dumps({"schema": "other"}), "has schema 'other'"),
])
def test_bad_samples_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "samples.json"
    path.write_text(content)
    with pytest.raises(SamplesError, match=message) as info:
        load_samples([path])
    assert str(path) in str(info.value)


def test_a_missing_key_is_an_error_naming_file_and_key(tmp_path):
    rec = SampleRecorder()
    rec.record(100, outcome="HIT", status=200)
    doc = rec.as_json()
    del doc["slots"]
    path = tmp_path / "samples.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SamplesError, match=rf"{path}: slots: missing"):
        load_samples([path])


def test_summarize_takes_what_load_samples_returns(tmp_path):
    """Issue 14: summarize(load_samples(...)) raised AttributeError."""
    rec = SampleRecorder()
    for us in (100, 200, 300, 400):
        rec.record(us, outcome="HIT" if us < 300 else "MISS", status=200)
    rec.write(tmp_path / "samples.json")
    cell = load_samples([tmp_path / "samples.json"])
    assert summarize(cell)["p50_us"] == 200 and summarize(cell)["max_us"] == 400
    assert summarize(cell, "MISS")["min_us"] == 300


def test_missing_samples_file_names_the_file(tmp_path):
    with pytest.raises(SamplesError, match=str(tmp_path / "nope.json")):
        load_samples([tmp_path / "nope.json"])


def test_sub_millisecond_difference_between_variants_is_visible(tmp_path):
    """310 µs vs 455 µs: Locust's own stats would print 0 ms for both; the table keeps them apart."""
    write_run(tmp_path, {
        "baseline": {"latencies_us": [310] * 500 + [320] * 10, "outcome": "NONE"},
        "filter-off": {"latencies_us": [455] * 500 + [470] * 10, "outcome": "BYPASS"},
    })
    frame = build_frame(tmp_path)
    rows = frame[frame["outcome"] == "ALL"].set_index("variant")
    assert rows.loc["baseline", "p50_us"] == 310
    assert rows.loc["filter-off", "p50_us"] == 455
    assert rows.loc["filter-off", "p99_us"] == 470
    assert rows.loc["filter-off", "p50_ratio"] == pytest.approx(455 / 310)
    assert rows.loc["baseline", "p50_ratio"] == 1.0
    assert not rows["upstream_mismatch"].any()


def test_outcome_from_headers():
    assert outcome_of({"x-sp-cache": "hit"}) == "HIT"
    assert outcome_of({"age": "3"}) == "HIT"  # Envoy's own cache
    assert outcome_of({}) == "NONE"
    assert outcome_of(None) == "NONE"


@pytest.mark.parametrize("h", [0.0, 0.1, 0.5, 0.9, 0.95, 1.0])
def test_hot_share_is_exact_in_any_window(h):
    for start in (0, 7, 123):
        hot = sum(is_hot(i, h) for i in range(start, start + 200))
        assert abs(hot - 200 * h) <= 1


def test_request_path_encodes_cache_control():
    assert request_path(1024, "hot-3", seed="1", cache_control="max-age=600") == \
        "/bytes/1024?seed=1&cache_control=max-age%3D600&k=hot-3"
    assert request_path(1024, "hot-3", cache_control="max-age=60", delay_ms=25) == \
        "/bytes/1024?seed=1&cache_control=max-age%3D60&delay_ms=25&k=hot-3"
