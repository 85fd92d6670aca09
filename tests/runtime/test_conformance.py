"""One contract, two runtimes: the same checks run against ``local`` and ``docker``."""

from __future__ import annotations

import time

import pytest

from sp_istio_cache.httpclient import request
from sp_istio_cache.runtime.docker import RUN_LABEL
from sp_istio_cache.stack import Stack, StackSpec
from tests.support import pid_alive

pytestmark = pytest.mark.envoy


@pytest.fixture(params=["local", "docker"])
def runtime_name(request):
    if request.param == "docker":
        request.getfixturevalue("docker_engine")  # skips, naming the cause, without an engine
    return request.param


def test_baseline_envoy_serves_reports_and_stops_cleanly(runtime_name, tmp_path, record_property):
    stack = Stack(StackSpec(variant="baseline", runtime=runtime_name), tmp_path)
    t0 = time.monotonic()
    with stack:
        record_property("start_to_ready_s", round(time.monotonic() - t0, 3))
        envoy = stack.envoy
        assert envoy.name == runtime_name
        assert envoy.exited() is None
        assert envoy.listener_url.startswith("http://127.0.0.1:")

        reply = request(stack.listener_url + "/bytes/4096")
        assert (reply.status, len(reply.body)) == (200, 4096)
        assert reply.cache is None  # no filter in the baseline
        assert stack.upstream_count("/bytes/4096") == 1

        stats = envoy.stats()
        assert stats["server.live"] == 1
        assert stats["cluster.upstream.upstream_rq_200"] == 1

        sample = envoy.resources()
        record_property("resources", sample)
        assert sample["running"] is True
        assert sample["memory_bytes"] > 1 * 2**20
        assert sample["memory_anon_bytes"] > 1 * 2**20
        assert sample["cpu_seconds"] > 0
        assert sample["memory_peak_bytes"] >= sample["memory_anon_bytes"]
        assert "starting main dispatch loop" in envoy.logs()
        pid = envoy.pid
        assert pid and pid_alive(pid)
        run_id = getattr(envoy, "run_id", None)

    assert envoy.exited() is not None
    assert not pid_alive(pid)
    after = envoy.resources()
    assert after["running"] is False and after["memory_bytes"] == pytest.approx(sample["memory_bytes"], rel=0.5)
    assert "starting main dispatch loop" in envoy.logs()  # logs survive the stop
    if runtime_name == "docker":
        engine = envoy.client
        assert engine.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"}) == []
