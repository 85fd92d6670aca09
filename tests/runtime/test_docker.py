"""The docker runtime: the filter in a container, memory limits, OOM reporting, clean-up, errors."""

from __future__ import annotations

import hashlib
import http.client
import signal
import subprocess
import sys
import textwrap
import threading
import time
from urllib.parse import urlparse

import pytest

from sp_istio_cache import envoyconf
from sp_istio_cache.httpclient import request
from sp_istio_cache.runtime import DockerRuntime, EnvoyStartError, RuntimeUnavailable, remove_leftovers
from sp_istio_cache.runtime.docker import OWNER_LABEL, RUN_LABEL, managed_containers, parse_memory, wasm_files
from sp_istio_cache.runtime.image import MANAGED_LABEL
from sp_istio_cache.services import upstream_service
from sp_istio_cache.stack import Stack, StackSpec

MiB = 2**20


def _run_containers(client, run_id: str) -> list:
    return managed_containers(client, [f"{MANAGED_LABEL}=true", f"{RUN_LABEL}={run_id}"])


# -- no engine needed ------------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [
    (None, None), (134217728, 134217728), ("64Mi", 64 * MiB), ("1Gi", 2**30), ("128M", 128_000_000),
    ("1.5Gi", 3 * 2**29), ("512k", 512_000),
])
def test_memory_limits_accept_bytes_and_quantities(value, expected):
    assert parse_memory(value) == expected


@pytest.mark.parametrize("value", ["lots", "64 MiB", "0", -5])
def test_bad_memory_limits_are_refused_by_name(value):
    with pytest.raises(ValueError, match="memory limit"):
        parse_memory(value)


def test_the_container_mounts_every_wasm_the_bootstrap_names(tmp_path):
    wasm = tmp_path / "f.wasm"
    config = envoyconf.render(envoyconf.EnvoyConfig(variant="filter", upstream_port=9, backend_port=9, wasm_path=wasm))
    assert wasm_files(config) == [wasm]
    assert wasm_files(envoyconf.render(envoyconf.EnvoyConfig(variant="baseline", upstream_port=9))) == []


def test_no_engine_is_a_clear_error_and_local_still_works(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    config = envoyconf.render(envoyconf.EnvoyConfig(variant="baseline", upstream_port=9))
    with pytest.raises(RuntimeUnavailable, match=r"^runtime=docker needs a Docker engine: .+"):
        with DockerRuntime(config, tmp_path / "d"):
            pass
    with Stack(StackSpec(variant="baseline", runtime="local"), tmp_path / "local") as stack:
        assert request(stack.listener_url + "/bytes/10").status == 200


# -- with the engine ------------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.envoy
def test_miss_then_hit_through_the_filter_in_a_container(docker_engine, make_stack):
    stack = make_stack(variant="filter", runtime="docker")
    assert stack.envoy.name == "docker"
    url = stack.listener_url + "/bytes/65536?cache_control=max-age%3D60"  # explicit freshness (RFC 9111)

    first = request(url)
    assert (first.status, first.cache, len(first.body)) == (200, "MISS", 65536)
    stack.wait_for_stores(1)
    second = request(url)
    assert (second.status, second.cache) == (200, "HIT")
    assert hashlib.sha256(second.body).digest() == hashlib.sha256(first.body).digest()
    assert stack.upstream_count("/bytes/65536") == 1

    stats = stack.filter_stats()
    assert (stats["sp_cache.hit"], stats["sp_cache.l1_hit"], stats["sp_cache.miss"], stats["sp_cache.store_sent"]) == (
        1, 1, 1, 1)
    mounts = {m["Destination"]: m for m in stack.envoy.container.attrs["Mounts"]}
    assert mounts[str(stack.spec.wasm_path)]["RW"] is False  # the module is mounted read-only
    assert mounts["/etc/envoy/envoy.yaml"]["RW"] is False


@pytest.mark.docker
@pytest.mark.envoy
def test_cpu_and_memory_limits_reach_the_container(docker_engine, tmp_path):
    config = envoyconf.render(envoyconf.EnvoyConfig(variant="baseline", upstream_port=9))
    with DockerRuntime(config, tmp_path, cpu_limit=0.5, memory_limit="128Mi", concurrency=1) as envoy:
        host = envoy.container.attrs["HostConfig"]
        assert (host["NanoCpus"], host["Memory"], host["MemorySwap"]) == (500_000_000, 128 * MiB, 128 * MiB)
        assert host["NetworkMode"] == "host"
        sample = envoy.resources()
        assert (sample["memory_limit_bytes"], sample["cpu_limit_cores"]) == (128 * MiB, 0.5)
        assert sample["cpu_periods"] > 0  # the CFS quota is in force
        assert sample["oom_killed"] is False and sample["restart_count"] == 0


@pytest.mark.docker
@pytest.mark.envoy
def test_64mib_container_under_32mib_bodies_reports_what_really_happened(docker_engine, tmp_path, record_property):
    """64 concurrent GETs of a 32 MiB body through a baseline Envoy limited to 64 MiB.

    Whatever the kernel does (OOM kill, or reclaim and throttle), the runtime must report the
    container's real state, keep answering, and stop cleanly; the workbench must not crash.
    """
    clients, size = 64, 32 * MiB
    upstream = upstream_service(tmp_path)
    upstream.start()
    try:
        config = envoyconf.render(envoyconf.EnvoyConfig(variant="baseline", upstream_port=upstream.port))
        envoy = DockerRuntime(config, tmp_path / "envoy", memory_limit="64Mi", concurrency=2)
        with envoy:
            received = _load(envoy.listener_url, f"/bytes/{size}", clients, timeout_s=60, sampler=envoy.resources)
            real = envoy.client.api.inspect_container(envoy.container.id)["State"]
            sample = envoy.resources()
            record_property("outcome", {"state": envoy.state(), "resources": sample, "received": received})

            assert envoy.oom_killed() is real["OOMKilled"]
            assert sample["oom_killed"] is real["OOMKilled"]
            assert sample["memory_limit_bytes"] == 64 * MiB
            assert sample["memory_bytes"] > 0  # the last figures survive the end of Envoy
            if real["OOMKilled"]:
                assert (envoy.exited(), sample["exit_code"], real["ExitCode"]) == (137, 137, 137)
                assert sample["running"] is False
                assert sum(1 for n in received if n == size) < clients  # clients saw it: cut bodies
            else:
                assert envoy.exited() is None and real["Running"]
                assert sample["memory_peak_bytes"] >= 0.9 * 64 * MiB or sample.get("memory_failcnt", 0) > 0
                assert received == [size] * clients
        assert envoy.exited() is not None
        assert _run_containers(docker_engine, envoy.run_id) == []
    finally:
        upstream.stop()


def _load(base_url: str, path: str, clients: int, timeout_s: float, sampler) -> list[int]:
    """``clients`` concurrent GETs reading the whole body; bytes received per client (0 on error)."""
    url = urlparse(base_url)
    received = [0] * clients

    def one(i: int) -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout_s)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            while chunk := resp.read(1 << 20):
                received[i] += len(chunk)
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        sampler()  # sample while loaded, so the last figures before an OOM kill are recent
        time.sleep(0.2)
    return received


@pytest.mark.docker
@pytest.mark.envoy
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_an_exception_inside_the_context_removes_the_container(docker_engine, tmp_path, exc):
    config = envoyconf.render(envoyconf.EnvoyConfig(variant="baseline", upstream_port=9))
    envoy = DockerRuntime(config, tmp_path)
    with pytest.raises(exc, match="test failure inside the runtime"):
        with envoy:
            assert len(_run_containers(docker_engine, envoy.run_id)) == 1
            raise exc("test failure inside the runtime")
    assert _run_containers(docker_engine, envoy.run_id) == []


@pytest.mark.docker
@pytest.mark.envoy
def test_envoy_refusing_its_config_is_a_start_error_and_leaves_nothing(docker_engine, tmp_path):
    config = envoyconf.render(envoyconf.EnvoyConfig(variant="baseline", upstream_port=9)).replace(
        "type: STATIC", "type: NOT_A_TYPE", 1)
    envoy = DockerRuntime(config, tmp_path)
    with pytest.raises(EnvoyStartError, match=r"Envoy \(docker\) exited with code 1") as info:
        with envoy:
            pass
    assert "NOT_A_TYPE" in str(info.value)  # Envoy's own complaint, from the container log
    assert _run_containers(docker_engine, envoy.run_id) == []


@pytest.mark.docker
@pytest.mark.envoy
def test_a_killed_workbench_leaves_a_container_that_remove_leftovers_removes(docker_engine, tmp_path):
    script = textwrap.dedent(f"""
        from pathlib import Path
        from sp_istio_cache import envoyconf
        from sp_istio_cache.runtime import DockerRuntime
        envoy = DockerRuntime(envoyconf.render(envoyconf.EnvoyConfig(variant="baseline", upstream_port=9)),
                              Path({str(tmp_path)!r}))
        envoy.start()
        envoy.wait_ready()
        print("ready", flush=True)
        import time; time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGKILL)  # no stop(), no context manager: a real leak
        child.wait(10)
        owner = [f"{MANAGED_LABEL}=true", f"{OWNER_LABEL}={child.pid}"]
        assert len(managed_containers(docker_engine, owner)) == 1
    finally:
        removed = remove_leftovers(docker_engine, owner_pid=child.pid)
    assert len(removed) == 1 and removed[0].startswith("sp-istio-cache-envoy-")
    assert managed_containers(docker_engine, owner) == []
