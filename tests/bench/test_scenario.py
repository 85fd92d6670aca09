"""Matrix files and flags: cross product in a fixed order, errors that name the file and key."""

from __future__ import annotations

import pytest

from sp_istio_cache.bench.runner import locust_argv
from sp_istio_cache.bench.scenario import Matrix, ScenarioError, load_matrix, parse_list
from sp_istio_cache.paths import REPO_ROOT


def test_variants_of_one_point_run_back_to_back():
    m = Matrix(variants=("baseline", "filter"), payload_bytes=(1024, 262144), hit_ratios=(0.0, 0.9)).validate()
    ids = [c.cell_id for c in m.cells()]
    assert ids[:4] == ["baseline-p1024-b0-h0-u10", "filter-p1024-b0-h0-u10",
                       "baseline-p1024-b0-h0.9-u10", "filter-p1024-b0-h0.9-u10"]
    assert len(ids) == 8


def test_shipped_matrices_load():
    for name in ("matrix-default.yaml", "matrix-mini.yaml"):
        m = load_matrix(REPO_ROOT / "bench" / name)
        assert m.cells()


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("payload_bytes: [1024]\nhit_ratio: [0.5]\n")
    with pytest.raises(ScenarioError, match=r"m\.yaml: unknown keys \['hit_ratio'\]"):
        load_matrix(path)


@pytest.mark.parametrize("text,message", [
    ("hit_ratios: [1.5]", "hit_ratios: must be within 0..1"),
    ("variants: [baseline, nginx]", "variants: unknown ['nginx']"),
    ("payload_bytes: [big]", "payload_bytes: expected a list of int"),
    ("users: 0", "users: must be >= 1"),
])
def test_bad_values_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_matrix(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_flags_override_and_parse():
    m = Matrix().with_overrides(payload_bytes=parse_list("1024,262144", int, "--sizes"), rate=200.0)
    assert m.payload_bytes == (1024, 262144) and m.rate == 200.0
    with pytest.raises(ScenarioError, match="--sizes: expected comma-separated int"):
        parse_list("1k", int, "--sizes")


def test_locust_command_line_has_the_scenario_as_custom_arguments(tmp_path):
    cell = Matrix(variants=("filter",), payload_bytes=(4096,), hit_ratios=(0.9,), rate=50.0,
                  duration_s=3).validate().cells()[0]
    argv = locust_argv(cell, "http://127.0.0.1:1", tmp_path / "s.json", "tok")
    joined = " ".join(argv)
    assert argv[1:3] == ["-m", "locust"]
    for part in ("--headless -H http://127.0.0.1:1", "-u 10", "-t 3s", "--payload-bytes 4096",
                 "--hit-ratio 0.9", "--rate 50", "--run-token tok", f"--samples-out {tmp_path / 's.json'}"):
        assert part in joined
