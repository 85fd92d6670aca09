"""The benchmark engine on the real stack (Envoy, backend, test upstream, Locust on loopback):
repetitions and the floor, ground truth, Envoy's own stats, parts that die mid-cell, the failure
gate, an external upstream, a profile imported from a real Envoy access log, two Locust workers.
Cells are short (1-2 s, 2-4 users): these check behaviour, never performance."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest
import yaml
from typer.testing import CliRunner

from sp_istio_cache import envoyconf
from sp_istio_cache.bench import envoystats
from sp_istio_cache.bench.gate import check_run
from sp_istio_cache.bench.identity import sha256_file
from sp_istio_cache.bench.profile import load_profile
from sp_istio_cache.bench.profile_import import import_profile
from sp_istio_cache.bench.records import finished_cells, read_run
from sp_istio_cache.bench.runner import run_matrix
from sp_istio_cache.bench.scenario import matrix_from
from sp_istio_cache.bench.table import build_table
from sp_istio_cache.cli import app
from sp_istio_cache.httpclient import request
from sp_istio_cache.runtime import LocalRuntime
from sp_istio_cache.services import upstream_service

pytestmark = pytest.mark.envoy


def _our_processes(root) -> list[str]:
    """Live processes whose command line mentions a path under ``root``."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(root) in cmd:
            found.append(f"{p.info['pid']} {cmd[:120]}")
    return found


def _matrix(**kw):
    base = {"duration_s": 1, "users": 2, "repetitions": 1}
    if "profile" not in kw and "upstream" not in kw:
        base["hot_keys"] = 8
    return matrix_from({**base, **kw}, "test")


def _all_rows(run_dir):
    frame = build_table(run_dir).to_pandas()
    return frame, frame[frame["outcome"] == "ALL"]


@pytest.fixture(scope="module")
def mini(tmp_path_factory, wasm):
    out = tmp_path_factory.mktemp("mini")
    m = _matrix(variants="baseline,filter-off,filter", payload_bytes="1024", hit_ratios="0.9", repetitions=2)
    return run_matrix(m, out, wasm_path=wasm, progress="none")


def test_repetitions_run_interleaved_with_the_floor_and_every_record_reads(mini, wasm):
    run = read_run(mini.out_dir)
    assert run.status == "complete" and run.findings == []
    assert [(c.variant, c.repetition) for c in run.cells] == [
        ("floor", 1), ("baseline", 1), ("filter-off", 1), ("filter", 1),
        ("floor", 2), ("baseline", 2), ("filter-off", 2), ("filter", 2)]
    assert all(c.status == "measured" for c in run.cells)
    assert run.environment.wasm_sha256 == sha256_file(wasm) and "1.40" in run.environment.envoy_version
    assert len(finished_cells(mini.out_dir)) == 8
    assert run.parameters["repetitions"] == 2 and run.parameters["cache_control"] == "max-age=600"


def test_ground_truth_and_envoy_counters_agree_with_the_samples(mini):
    frame, rows = _all_rows(mini.out_dir)
    assert len(rows) == 8 and (rows["requests"] > 20).all() and (rows["non_2xx"] == 0).all()
    for (cell_id, rep), cell in frame.groupby(["cell_id", "repetition"]):
        counts = dict(zip(cell["outcome"], cell["requests"]))
        upstream = cell["upstream_requests"].iloc[0]
        variant = cell["variant"].iloc[0]
        if variant == "floor":
            assert set(counts) == {"NONE", "ALL"} and cell["upstream_kind"].iloc[0] == "none"
            assert upstream is None or upstream != upstream  # null: there is no upstream to count
            continue
        expected = {"filter": counts.get("MISS", 0) + counts.get("BYPASS", 0),
                    "filter-off": counts.get("BYPASS"), "baseline": counts.get("NONE")}[variant]
        assert upstream == expected, (cell_id, rep)
    for _entry, rec in finished_cells(mini.out_dir):
        if rec.cell.variant == "floor":
            assert rec.envoy_stats.clusters == {}
            continue
        # Envoy's own count of requests to the upstream cluster = the upstream's own count
        assert rec.envoy_stats.clusters["upstream"]["upstream_rq_total"] == rec.upstream_requests, rec.cell_id
        cell = frame[(frame["cell_id"] == rec.cell_id) & (frame["repetition"] == rec.repetition)]
        counts = dict(zip(cell["outcome"], cell["requests"]))
        if rec.cell.variant == "filter-off":
            assert rec.envoy_stats.filter_counters["sp_cache.bypass_disabled"] == counts["BYPASS"]
        elif rec.cell.variant == "filter":
            assert rec.envoy_stats.filter_counters["sp_cache.hit"] == counts["HIT"]
            assert "sp_cache.store_dropped" in rec.envoy_stats.filter_counters
            assert rec.plugin_config is not None and "default_ttl_seconds" not in rec.plugin_config
            for name, q in rec.envoy_stats.filter_histograms.items():
                assert name.startswith("sp_cache.") and q.p50 <= q.p90 <= q.p99, name
        else:
            assert rec.envoy_stats.filter_counters == {} and rec.envoy_stats.filter_histograms == {}
    filt = rows[rows["variant"] == "filter"]
    assert ((filt["achieved_hit_ratio"] - 0.9).abs() <= 0.05).all()
    assert (rows["cpu_seconds"] > 0).all() and (rows["rss_max_bytes"] > 5 * 2**20).all()


def test_no_process_outlives_the_run(mini):
    assert _our_processes(mini.out_dir) == []


def test_histogram_quantiles_cover_the_measured_phase_only(make_stack):
    stack = make_stack(variant="baseline")
    before = envoystats.read_values(stack.envoy, "Counters")
    for _ in range(20):
        assert request(stack.listener_url + "/bytes/64?delay_ms=20").status == 200
    envoystats.read_values(stack.envoy, "Counters")  # merges what recorded since `before`
    time.sleep(envoystats.MERGE_WAIT_S)
    got = envoystats.read_histograms(stack.envoy, prefix="cluster.upstream.upstream_rq_time")
    q = got["cluster.upstream.upstream_rq_time"]  # Envoy records it in ms
    assert 20 <= q.p50 <= q.p90 <= q.p99 < 1000
    assert envoystats.delta(envoystats.read_values(stack.envoy, "Counters"), before,
                            "cluster.upstream.upstream_rq_total") == 20
    time.sleep(envoystats.MERGE_WAIT_S)
    # no request since the last merge: the histogram is left out, not reported as zeros
    assert envoystats.read_histograms(stack.envoy, prefix="cluster.upstream.upstream_rq_time") == {}


def test_parts_that_die_mid_cell_are_findings_and_the_run_goes_on(tmp_path, wasm):
    killed: list[str] = []

    def kill(stack, cell):
        if cell.variant == "floor" or cell.variant in killed:
            return
        killed.append(cell.variant)
        time.sleep(0.6)
        part = stack.backend.proc.pid if cell.variant == "filter" else stack.envoy.pid
        os.kill(part, signal.SIGKILL)

    m = _matrix(variants="filter,baseline", payload_bytes="1024", hit_ratios="0.9", repetitions=2, duration_s=2)
    result = run_matrix(m, tmp_path, wasm_path=wasm, progress="none", during=kill)
    run = read_run(tmp_path)
    assert run.status == "complete" and [c.status for c in run.cells] == ["measured"] * 6
    recs = {(rec.cell.variant, rec.repetition): rec for _, rec in finished_cells(tmp_path)}
    backend = {f.kind: f for f in recs[("filter", 1)].findings}
    assert "backend_died" in backend and 0.3 < backend["backend_died"].at_s < 3
    assert backend["backend_died"].detail == "backend exited with code -9"
    envoy = {f.kind: f for f in recs[("baseline", 1)].findings}
    assert recs[("baseline", 1)].envoy.died and recs[("baseline", 1)].envoy.exit_code == -9
    assert envoy["envoy_died"].detail == "Envoy exited with code -9" and envoy["envoy_died"].phase == "load"
    assert recs[("filter", 2)].findings == [] and recs[("baseline", 2)].findings == []
    assert any("backend_died" in line for line in result.manifest.findings)
    gate = [f.cell_id for f in check_run(tmp_path, 0.01)]
    assert gate == ["baseline-p1024-b0-h0.9-d0-u2"]  # Envoy gone: its requests failed; the filter failed open
    assert _our_processes(tmp_path) == []


def test_gate_exit_names_the_cell_whose_every_request_failed(tmp_path):
    with socket_port() as closed:
        out = tmp_path / "run"
        result = CliRunner().invoke(app, [
            "bench", "--upstream", f"http://127.0.0.1:{closed}", "--variants", "baseline", "--duration", "1",
            "--users", "2", "--repetitions", "1", "--progress", "lines", "--out", str(out)], terminal_width=300)
    assert result.exit_code == 1, result.output
    assert "1 cell repetition(s) failed the gate (--max-error-rate 0.01)" in result.output
    assert "baseline-profile-root-d0-u2 rep 1: every request failed" in result.output
    assert "statuses [503]" in result.output
    assert "[1/2] floor-profile-root-u2 rep 1 measured" in result.output  # one line per cell off a terminal
    assert _our_processes(out) == []


class socket_port:
    """A loopback port nothing listens on (bound, never accepted, closed on exit)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


def test_an_external_upstream_with_a_profile(tmp_path, wasm):
    service = upstream_service(tmp_path / "svc")
    (tmp_path / "svc").mkdir()
    service.start()
    try:
        profile = tmp_path / "shop.csv"
        profile.write_text("method,path,weight\nGET,/bytes/512?cache_control=max-age%3D60,3\n"
                           "GET,/bytes/4096?cache_control=max-age%3D60,1\n")
        out = tmp_path / "run"
        result = CliRunner().invoke(app, [
            "bench", "--upstream", service.url, "--profile", str(profile), "--variants", "baseline,filter",
            "--duration", "1", "--users", "2", "--repetitions", "1", "--wasm", str(wasm), "--out", str(out)],
            terminal_width=300)
        assert result.exit_code == 0, result.output
        served = service.get_json("/__stats")["by_path"]
    finally:
        service.stop()
    frame, rows = _all_rows(out)
    assert list(rows["cell_id"]) == ["floor-profile-shop-u2", "baseline-profile-shop-d0-u2",
                                     "filter-profile-shop-d0-u2"]
    assert list(rows["upstream_kind"]) == ["none", "external", "external"]
    assert rows["upstream_requests"].isna().all() and rows["achieved_hit_ratio_upstream"].isna().all()
    filt = rows[rows["variant"] == "filter"].iloc[0]
    assert filt["achieved_hit_ratio"] > 0.9  # two keys, both stored in the warm-up: measured, not steered
    base = rows[rows["variant"] == "baseline"].iloc[0]
    assert base["achieved_hit_ratio"] == 0 and base["non_2xx"] == 0
    assert set(served) == {"/bytes/512", "/bytes/4096"} and sum(served.values()) >= base["requests"]
    assert read_run(out).profile == "profile.json" and load_profile(out / "profile.json").name == "shop"


def test_a_profile_imported_from_a_real_envoy_access_log_drives_a_bench(tmp_path, wasm):
    work = tmp_path / "log"
    work.mkdir()
    up = upstream_service(work)
    up.start()
    try:
        doc = yaml.safe_load(envoyconf.render(envoyconf.EnvoyConfig(variant="baseline", upstream_port=up.port)))
        hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["access_log"] = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(work / "access.log")}}]  # Envoy's default format
        with LocalRuntime(yaml.safe_dump(doc), work) as envoy:
            for path, n in (("/bytes/300?cache_control=max-age%3D60", 3),
                            ("/bytes/2000?cache_control=max-age%3D60", 1)):
                for _ in range(n):
                    assert request(envoy.listener_url + path).status == 200
            assert request(envoy.listener_url + "/bytes/10", method="POST", body=b"hello").status == 200
    finally:
        up.stop()
    profile = import_profile(work / "access.log", name="access")
    assert [(r.method, r.path, r.request_body_bytes, r.response_body_bytes, r.status, r.weight)
            for r in profile.rows] == [("GET", "/bytes/300?cache_control=max-age%3D60", 0, 300, 200, 3.0),
                                       ("GET", "/bytes/2000?cache_control=max-age%3D60", 0, 2000, 200, 1.0),
                                       ("POST", "/bytes/10", 5, 10, 200, 1.0)]
    result = CliRunner().invoke(app, ["profile", "import", str(work / "access.log"),
                                      "--out", str(tmp_path / "access.csv")])
    assert result.exit_code == 0 and "3 requests kinds from 5 requests" in result.output
    m = _matrix(variants="filter", profile=str(tmp_path / "access.csv"))
    run_matrix(m, tmp_path / "run", wasm_path=wasm, progress="none")
    frame, rows = _all_rows(tmp_path / "run")
    assert list(rows["cell_id"]) == ["floor-profile-access-u2", "filter-profile-access-d0-u2"]
    assert list(rows["payload_bytes"].isna()) == [False, True] and rows["payload_bytes"].iloc[0] == 300
    cell = frame[frame["variant"] == "filter"]
    counts = dict(zip(cell["outcome"], cell["requests"]))
    assert counts["HIT"] > 0 and counts["BYPASS"] > 0  # the GETs hit, the POST is not looked up by default
    assert cell["upstream_requests"].iloc[0] == counts.get("MISS", 0) + counts["BYPASS"]
    sent = json.loads(next((tmp_path / "run" / "cells").glob("filter-*/rep-1/requests.json")).read_text())
    assert [(r["method"], r["path"].split("?")[0], r["body_bytes"], r["weight"]) for r in sent] == \
        [("GET", "/bytes/300", 0, 3.0), ("GET", "/bytes/2000", 0, 1.0), ("POST", "/bytes/10", 5, 1.0)]
    assert _our_processes(tmp_path) == []


def test_two_locust_workers_write_samples_of_the_same_schema(tmp_path):
    m = _matrix(variants="baseline", payload_bytes="1024", hit_ratios="0", processes=2, users=4, duration_s=2)
    run_matrix(m, tmp_path, progress="none")
    for entry, rec in finished_cells(tmp_path):
        assert rec.locust.samples_files == ["samples.worker-0.json", "samples.worker-1.json"], rec.cell_id
        assert rec.locust.workers == 2 and rec.findings == []
        docs = [json.loads((tmp_path / entry.dir / n).read_text()) for n in rec.locust.samples_files]
        assert [d["worker"] for d in docs] == ["0", "1"] and all(d["requests"] > 0 for d in docs)
    frame, rows = _all_rows(tmp_path)
    assert list(rows["locust_workers"]) == [2, 2] and (rows["non_2xx"] == 0).all()
    assert rows["upstream_requests"].iloc[1] == rows["requests"].iloc[1]  # every worker's requests counted
    assert _our_processes(tmp_path) == []


def test_envoy_cache_anchor_hit_ratio_from_age_header(tmp_path):
    run_matrix(_matrix(variants="envoy-cache", payload_bytes="1024", hit_ratios="0.9"), tmp_path, progress="none")
    frame, rows = _all_rows(tmp_path)
    cell = frame[frame["variant"] == "envoy-cache"]
    counts = dict(zip(cell["outcome"], cell["requests"]))
    row = rows[rows["variant"] == "envoy-cache"].iloc[0]
    assert set(counts) == {"HIT", "MISS", "ALL"}
    assert abs(row["achieved_hit_ratio"] - 0.9) <= 0.05
    assert row["upstream_requests"] == counts["MISS"] and not row["upstream_mismatch"]


def test_stalled_upstream_shows_in_p99_and_missed_slots(tmp_path):
    """SIGSTOP the upstream for 1.5 s in a 5 s fixed-rate cell."""
    def stall(stack, cell):
        if cell.variant == "floor":
            return
        time.sleep(1.5)
        pid = stack.upstream.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(1.5)
        finally:
            os.kill(pid, signal.SIGCONT)

    m = _matrix(variants="baseline", payload_bytes="1024", hit_ratios="0", rate=100, users=4, duration_s=5)
    run_matrix(m, tmp_path, progress="none", during=stall)
    frame, rows = _all_rows(tmp_path)
    row = rows[rows["variant"] == "baseline"].iloc[0]
    assert row["latency_basis"] == "intended"
    assert row["p99_us"] >= 1_000_000 and row["max_us"] >= 1_300_000
    assert row["slots"] >= 450 and row["missed_slots"] >= 100
    assert not row["upstream_mismatch"] and row["non_2xx"] == 0
    assert _our_processes(tmp_path) == []
