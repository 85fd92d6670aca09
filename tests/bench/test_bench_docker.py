"""The benchmark under runtime=docker: limits reach every cell, the container's memory and CPU
throttling reach the table, an OOM-killed Envoy is a finding and the run goes on, nothing is
left behind. Plus the runtime fields of a matrix and the sampler's one code path (offline)."""

from __future__ import annotations

import os

import psutil
import pytest

from sp_istio_cache.bench.gate import check_run
from sp_istio_cache.bench.records import finished_cells, read_run
from sp_istio_cache.bench.runner import run_matrix
from sp_istio_cache.bench.sampler import ResourceSampler
from sp_istio_cache.bench.scenario import matrix_from
from sp_istio_cache.bench.table import build_table

MiB = 2**20


# -- offline: the sampler's one code path (FAKE runtimes replaying resources() figures) ---------
class _FakeEnvoy:
    """FAKE Envoy runtime whose ``resources()`` replays docker-like figures; no admin API."""

    admin_url = None

    def __init__(self, samples):
        self.samples = list(samples)
        self.calls = 0

    def resources(self):
        self.calls += 1
        return self.samples.pop(0) if len(self.samples) > 1 else self.samples[0]


class _FakeStack:
    def __init__(self, envoy, runtime):
        self.envoy = envoy
        self.backend = None
        self.upstream = None
        self.uses_filter = False
        self.spec = type("Spec", (), {"runtime": runtime})()


def _docker_sample(mem, usage, cpu, throttled, *, running=True, oom=False):
    return {"memory_bytes": mem, "memory_usage_bytes": usage, "memory_anon_bytes": mem - 1000,
            "memory_peak_bytes": 90 * MiB, "cpu_seconds": cpu, "cpu_periods": int(cpu * 100),
            "cpu_throttled_periods": int(throttled * 50), "cpu_throttled_seconds": throttled,
            "memory_limit_bytes": 256 * MiB, "cpu_limit_cores": 1.0, "running": running,
            "oom_killed": oom, "restart_count": 0, "exit_code": None if running else 137}


def test_sampler_summarises_the_runtime_figures_not_a_pid():
    envoy = _FakeEnvoy([_docker_sample(20 * MiB, 30 * MiB, 1.0, 0.1),
                        _docker_sample(40 * MiB, 60 * MiB, 2.5, 0.4),
                        _docker_sample(30 * MiB, 50 * MiB, 3.0, 0.6)])
    sampler = ResourceSampler(_FakeStack(envoy, "docker"), interval_s=60)
    with sampler:
        sampler.sample()
    s = sampler.summary
    assert envoy.calls == 3  # start, one sample, the last look
    assert s.memory_basis == "container_working_set"
    assert s.rss_max_bytes == 40 * MiB and s.rss_mean_bytes == 35 * MiB
    assert s.container_memory_max_bytes == 60 * MiB
    assert s.memory_limit_bytes == 256 * MiB and s.cpu_limit_cores == 1.0
    assert s.cpu_seconds == pytest.approx(2.0) and s.cpu_throttled_seconds == pytest.approx(0.5)
    assert s.envoy_running_at_end is True and sampler.errors == [] and sampler.findings() == []


def test_sampler_keeps_the_last_figures_of_an_oom_killed_envoy():
    envoy = _FakeEnvoy([_docker_sample(20 * MiB, 30 * MiB, 1.0, 0.0),
                        _docker_sample(250 * MiB, 256 * MiB, 1.5, 0.2),
                        _docker_sample(250 * MiB, 256 * MiB, 1.5, 0.2, running=False, oom=True)])
    sampler = ResourceSampler(_FakeStack(envoy, "docker"), interval_s=60)
    with sampler:
        sampler.sample()
    s = sampler.summary
    assert s.envoy_running_at_end is False and sampler.envoy_died_at_s is not None
    assert s.rss_max_bytes == 250 * MiB  # the dead Envoy's repeated last sample is not averaged in
    assert s.rss_mean_bytes == 250 * MiB


def test_sampler_local_figures_leave_the_docker_columns_null():
    local = [{"memory_bytes": 30 * MiB, "cpu_seconds": 1.0, "memory_anon_bytes": 10 * MiB, "running": True},
             {"memory_bytes": 32 * MiB, "cpu_seconds": 1.4, "memory_anon_bytes": 12 * MiB, "running": True}]
    sampler = ResourceSampler(_FakeStack(_FakeEnvoy(local), "local"), interval_s=60)
    with sampler:
        pass
    s = sampler.summary
    assert s.memory_basis == "process_rss" and s.rss_max_bytes == 32 * MiB
    assert s.memory_anon_max_bytes == 12 * MiB and s.cpu_seconds == pytest.approx(0.4)
    for name in ("container_memory_max_bytes", "memory_limit_bytes", "cpu_limit_cores", "cpu_throttled_seconds"):
        assert getattr(s, name) is None, name


class _BrokenEnvoy:
    """FAKE runtime whose resources() fails: the failure is recorded, never swallowed."""

    admin_url = None

    def resources(self):
        raise ConnectionError("engine went away")


def test_a_failed_sample_is_recorded_and_the_cell_goes_on():
    sampler = ResourceSampler(_FakeStack(_BrokenEnvoy(), "docker"), interval_s=60)
    with sampler:
        sampler.sample()
    assert sampler.summary.samples == 0 and sampler.summary.rss_max_bytes is None
    [finding] = sampler.findings()
    assert finding.kind == "sampler_error" and finding.counts == {"failed_samples": 3}
    assert finding.detail == "envoy.resources: ConnectionError: engine went away"


# -- on this machine's Docker engine -------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    """The docker SDK client; skips, naming the cause, only when no Docker engine answers."""
    from sp_istio_cache.runtime import RuntimeUnavailable
    from sp_istio_cache.runtime.image import docker_client

    try:
        return docker_client()
    except RuntimeUnavailable as exc:
        pytest.skip(f"no Docker engine answers: {exc}")


def _our_containers(engine) -> list[str]:
    """Managed containers started by this pytest process (a concurrent session's are not ours)."""
    from sp_istio_cache.runtime.docker import OWNER_LABEL, managed_containers
    from sp_istio_cache.runtime.image import MANAGED_LABEL

    return [c.name for c in managed_containers(engine, [f"{MANAGED_LABEL}=true", f"{OWNER_LABEL}={os.getpid()}"])]


@pytest.fixture(scope="module")
def docker_mini(engine, tmp_path_factory, wasm):
    out = tmp_path_factory.mktemp("docker-mini")
    m = matrix_from({"variants": "baseline,filter", "payload_bytes": "1024", "hit_ratios": "0.9", "duration_s": 2,
                     "users": 4, "repetitions": 1, "runtime": "docker",
                     "runtime_options": {"cpu_limit": 1.0, "memory_limit": "256Mi"}}, "test")
    run_matrix(m, out, wasm_path=wasm, progress="none")
    return out


@pytest.mark.envoy
def test_docker_mini_matrix_reports_container_memory_and_throttling(docker_mini):
    frame = build_table(docker_mini).to_pandas()
    rows = frame[frame["outcome"] == "ALL"].set_index("variant")
    assert list(rows.index) == ["floor", "baseline", "filter"]
    for variant, r in rows.iterrows():
        assert r["runtime"] == "docker" and r["memory_basis"] == "container_working_set", variant
        assert r["memory_limit_bytes"] == 268435456 and r["cpu_limit_cores"] == 1.0, variant
        assert 5 * MiB < r["rss_mean_bytes"] <= r["rss_max_bytes"] <= r["container_memory_max_bytes"], variant
        assert r["memory_anon_max_bytes"] > 0 and r["cpu_seconds"] > 0, variant
        assert r["cpu_throttled_seconds"] >= 0 and 0 <= r["cpu_throttled_share"] <= 1, variant
        assert not r["oom_killed"] and not r["envoy_died"], variant
        assert r["requests"] > 20 and r["non_2xx"] == 0, variant
    f = rows.loc["filter"]
    assert abs(f["achieved_hit_ratio"] - 0.9) <= 0.05 and not f["upstream_mismatch"]
    counts = frame[frame["variant"] == "filter"].set_index("outcome")["requests"]
    assert f["upstream_requests"] == counts.get("MISS", 0) + counts.get("BYPASS", 0)
    b = rows.loc["baseline"]
    assert b["upstream_requests"] == b["requests"]
    # the Wasm VM and the cache's buffers cost memory the container's figure shows
    assert f["rss_max_bytes"] > b["rss_max_bytes"]


@pytest.mark.envoy
def test_run_json_and_every_cell_record_the_runtime(docker_mini):
    run = read_run(docker_mini)
    assert run.status == "complete" and run.findings == []
    assert run.parameters["runtime"] == "docker"
    assert run.parameters["runtime_options"] == {"cpu_limit": 1.0, "memory_limit": "256Mi", "image": None}
    for _, rec in finished_cells(docker_mini):
        assert rec.runtime.model_dump() == {"name": "docker", "options": {"cpu_limit": 1.0, "memory_limit": "256Mi"},
                                            "envoy_path": None}
        assert rec.envoy.died is False


@pytest.mark.envoy
def test_docker_run_leaves_no_container_and_no_envoy(docker_mini, engine):
    assert _our_containers(engine) == []
    left = [p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"])
            if str(docker_mini) in " ".join(p.info["cmdline"] or [])]
    assert left == []


@pytest.mark.envoy
def test_an_oom_killed_envoy_is_a_finding_and_the_run_goes_on(engine, tmp_path):
    """6 MiB is less than Envoy needs to start: the kernel OOM-kills it in every cell (measured:
    exit 137, ``OOMKilled`` true, about 1 s a cell). Every cell is recorded; nothing raises."""
    m = matrix_from({"variants": "baseline", "payload_bytes": "1024", "hit_ratios": "0,0.9", "duration_s": 1,
                     "repetitions": 1, "runtime": "docker", "runtime_options": {"memory_limit": "6Mi"}}, "test")
    result = run_matrix(m, tmp_path, progress="none")
    rows = build_table(tmp_path).to_pandas()
    assert len(rows) == 3 and (rows["outcome"] == "ALL").all() and (rows["status"] == "failed").all()
    assert rows["oom_killed"].all() and rows["envoy_died"].all() and (rows["envoy_phase"] == "start").all()
    assert (rows["requests"] == 0).all() and rows["p50_us"].isna().all()
    run = read_run(tmp_path)
    assert run.status == "complete" and [c.status for c in run.cells] == ["failed"] * 3
    for _, rec in finished_cells(tmp_path):
        assert rec.envoy.exit_code == 137 and {f.kind for f in rec.findings} >= {"envoy_died", "stack_start_failed"}
    assert sum("envoy_died" in line and "OOM-killed" in line for line in result.manifest.findings) == 3
    assert len(check_run(tmp_path)) == 3
    assert _our_containers(engine) == []
