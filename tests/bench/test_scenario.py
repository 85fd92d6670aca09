"""The matrix model: one definition for YAML, flags and notebooks; the run order; refusals that
name the file (or flag) and the key before anything runs; the Locust command line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sp_istio_cache.bench.cellrun import cell_spec
from sp_istio_cache.bench.locustrun import Distribution, locust_argv
from sp_istio_cache.bench.scenario import Matrix, ScenarioError, field_flags, load_matrix, matrix_from
from sp_istio_cache.cli import app
from sp_istio_cache.paths import REPO_ROOT


def test_repetitions_interleave_across_variants_with_the_floor_once_per_size():
    m = matrix_from({"variants": "baseline,filter", "payload_bytes": "1024,4096", "hit_ratios": "0,0.9",
                     "repetitions": 2}, "flags")
    order = [f"{c.cell_id}#{rep}" for c, rep in m.schedule()]
    assert order[:10] == [
        "floor-p1024-b0-u10#1", "baseline-p1024-b0-h0-d0-u10#1", "filter-p1024-b0-h0-d0-u10#1",
        "floor-p1024-b0-u10#2", "baseline-p1024-b0-h0-d0-u10#2", "filter-p1024-b0-h0-d0-u10#2",
        "baseline-p1024-b0-h0.9-d0-u10#1", "filter-p1024-b0-h0.9-d0-u10#1",
        "baseline-p1024-b0-h0.9-d0-u10#2", "filter-p1024-b0-h0.9-d0-u10#2"]
    assert len(order) == 2 * (1 + 2 + 2) * 2  # per size: floor + 2 variants x 2 hit ratios, twice
    floor = m.cells()[0]
    assert floor.variant == "floor" and floor.payload_bytes == 1024 and floor.target_hit_ratio is None
    assert cell_spec(floor).direct_response_bytes == 1024 and cell_spec(floor).variant == "floor"


def test_upstream_delay_is_an_axis_and_reaches_the_locust_arguments(tmp_path):
    m = matrix_from({"variants": ["filter"], "payload_bytes": [1024], "hit_ratios": [0.9],
                     "upstream_delay_ms": "0,20", "repetitions": 1}, "flags")
    ids = [c.cell_id for c in m.cells()]
    assert ids == ["floor-p1024-b0-u10", "filter-p1024-b0-h0.9-d0-u10", "filter-p1024-b0-h0.9-d20-u10"]
    argv = " ".join(locust_argv(m.cells()[2], "http://127.0.0.1:1", tmp_path / "s.json", "tok"))
    assert "--upstream-delay-ms 20" in argv and "--cache-control max-age=600" in argv


def test_shipped_matrices_load():
    for name in ("matrix-default.yaml", "matrix-mini.yaml"):
        assert load_matrix(REPO_ROOT / "bench" / name).cells()


@pytest.mark.parametrize("text,message", [
    ("hit_ratio: [0.5]", "unknown key 'hit_ratio'"),
    ("hit_ratios: [1.5]", "hit_ratios: Input should be less than or equal to 1"),
    ("hit_ratios: [0.5, 0.5]", "hit_ratios: 0.5 listed twice"),
    ("variants: [baseline, nginx]", "variants: Input should be 'baseline', 'filter-off', 'filter' or 'envoy-cache'"),
    ("payload_bytes: [big]", "payload_bytes: Input should be a valid integer"),
    ("payload_bytes: [100000000000]", "payload_bytes: Input should be less than or equal to 67108864"),
    ("users: 0", "users: Input should be greater than or equal to 1"),
    ("cache_control: public", "cache_control: 'public' states no freshness"),
    ("runtime_options: {cpu_limit: 1}", "runtime_options ['cpu_limit'] need runtime: docker"),
    ("runtime: podman", "runtime: unknown 'podman'; known: docker, local"),
    ("{runtime: docker, runtime_options: {memory_limit: lots}}", "runtime_options.memory_limit: memory limit 'lots'"),
    ("{profile: p.csv, payload_bytes: [1024]}", "payload_bytes shape the test upstream's synthetic traffic"),
    ("upstream: http://example.com/api", "upstream: 'http://example.com/api': give only scheme, host and port"),
    ("plugin_config: {max_response_body_bytes: -1}", "plugin_config: plugin config $.max_response_body_bytes"),
])
def test_bad_values_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_matrix(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_flags_name_the_flag_and_nothing_runs(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["bench", "--hit-ratios", "0.5,0.5", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "flags: --hit-ratios: 0.5 listed twice" in result.output
    assert not out.exists()
    result = CliRunner().invoke(app, ["bench", "--sizes", "1k", "--out", str(out)])
    assert result.exit_code == 2 and "flags: --sizes: Input should be a valid integer" in result.output


def test_flags_override_the_file_key_by_key(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("runtime: docker\nruntime_options: {cpu_limit: 1, memory_limit: 128Mi}\npayload_bytes: [1024]\n")
    m = matrix_from({"runtime_options": {"cpu_limit": 2.0}, "rate": "200"}, "flags",
                    base=__import__("yaml").safe_load(path.read_text()))
    assert m.runtime_options.cpu_limit == 2.0 and m.runtime_options.memory_limit == "128Mi"
    assert m.runtime_options.memory_limit_bytes() == 128 * 2**20 and m.rate == 200.0
    cell = m.cells()[1]
    spec = cell_spec(cell)
    assert spec.runtime == "docker" and spec.runtime_options == {"cpu_limit": 2.0, "memory_limit": "128Mi"}


def test_help_lists_every_option_of_the_model():
    result = CliRunner().invoke(app, ["bench", "--help"], terminal_width=200)
    assert result.exit_code == 0
    flags = field_flags()
    assert len(flags) == len(Matrix.model_fields) - 1 + 3  # runtime_options is three flags
    for flag in flags.values():
        assert flag in result.output, flag


def test_filter_cells_get_their_config_from_the_matrix_not_a_default_ttl():
    m = matrix_from({"variants": "filter", "payload_bytes": "1048576", "hit_ratios": "0.9",
                     "request_body_bytes": "100", "plugin_config": {"lookup_timeout_ms": 50}}, "flags")
    cell = m.cells()[1]
    cfg = cell.effective_plugin_config()
    assert cfg == {"lookup_timeout_ms": 50, "max_response_body_bytes": 1048576,
                   "lookup_methods": ["GET", "HEAD", "POST"]}
    assert "default_ttl_seconds" not in cfg
    assert cell.cache_control == "max-age=600"
    assert m.cells()[0].effective_plugin_config() is None  # the floor has no filter


def test_distributed_locust_command_lines(tmp_path):
    cell = matrix_from({"variants": "baseline", "payload_bytes": "4096", "hit_ratios": "0.9", "rate": 50,
                        "duration_s": 3}, "flags").cells()[1]
    local = locust_argv(cell, "http://127.0.0.1:1", tmp_path / "s.json", "tok", dist=Distribution(processes=2))
    joined = " ".join(local)
    assert local[1:3] == ["-m", "locust"]
    for part in ("--headless -H http://127.0.0.1:1", "-u 10", "-t 3s", "--payload-bytes 4096", "--hit-ratio 0.9",
                 "--rate 50", "--users-total 10", "--run-token tok", "--processes 2"):
        assert part in joined, part
    remote = " ".join(locust_argv(cell, "http://h:1", tmp_path / "s.json", "tok",
                                  dist=Distribution(processes=1, expect_workers=3, master_bind_port=5600)))
    assert "--master --expect-workers 3" in remote and "--master-bind-port 5600" in remote
    assert "--processes" not in remote
