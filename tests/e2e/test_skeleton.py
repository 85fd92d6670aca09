"""The first whole slice through the real Envoy: miss, store, hit; and clear failures."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from sp_istio_cache import envoyconf
from sp_istio_cache.httpclient import request
from sp_istio_cache.runtime import EnvoyStartError, LocalRuntime
from tests.support import pid_alive

pytestmark = pytest.mark.envoy


def test_miss_store_hit_is_byte_identical(make_stack):
    stack = make_stack(variant="filter")
    path = "/bytes/65536?cache_control=max-age%3D60"  # explicit freshness: nothing else is stored

    first = request(stack.listener_url + path)
    assert (first.status, first.cache, len(first.body)) == (200, "MISS", 65536)
    assert stack.upstream_count("/bytes/65536") == 1
    stack.wait_for_stores(1)

    second = request(stack.listener_url + path)
    assert (second.status, second.cache) == (200, "HIT")
    assert hashlib.sha256(second.body).hexdigest() == hashlib.sha256(first.body).hexdigest()
    assert second.header("content-type") == first.header("content-type") == "application/octet-stream"
    assert second.header("content-length") == "65536"
    assert stack.upstream_count("/bytes/65536") == 1

    stats = stack.filter_stats()
    assert (stats["sp_cache.hit"], stats["sp_cache.l1_hit"], stats["sp_cache.store_sent"]) == (1, 1, 1)
    backend = stack.backend_stats()
    assert (backend["entries"], backend["stores"], backend["lookups"]) == (1, 1, 1)  # the hit: no callout


def test_stack_stop_leaves_no_process(make_stack):
    stack = make_stack(variant="filter")
    pids = [stack.envoy.pid, stack.backend.proc.pid, stack.upstream.proc.pid]
    assert all(pid_alive(p) for p in pids)
    stack.stop()
    assert [p for p in pids if pid_alive(p)] == []


@pytest.mark.parametrize("plugin_config,key", [
    ({"backend_cluster": "sp_cache_backend", "lookup_timout_ms": 10}, "lookup_timout_ms"),
    ({"backend_cluster": "sp_cache_backend", "max_response_body_bytes": "big"}, "max_response_body_bytes"),
])
def test_broken_plugin_config_fails_envoy_naming_the_key(tmp_path, wasm, plugin_config, key):
    config = envoyconf.render(envoyconf.EnvoyConfig(
        variant="filter", upstream_port=9, backend_port=9, wasm_path=wasm,
        plugin_config=plugin_config, validate_plugin_config=False))
    runtime = LocalRuntime(config, tmp_path)
    with pytest.raises(EnvoyStartError) as info:
        with runtime:
            pass
    message = str(info.value)
    assert "exited with code" in message
    assert key in message
    assert runtime.exited() is not None


def test_missing_envoy_binary_is_a_clear_error(tmp_path):
    config = envoyconf.render(envoyconf.EnvoyConfig(variant="baseline", upstream_port=9))
    with pytest.raises(EnvoyStartError, match="Envoy binary not found at /nonexistent/envoy"):
        with LocalRuntime(config, tmp_path, envoy_path="/nonexistent/envoy"):
            pass


def test_smoke_command_prints_a_passing_verdict():
    out = subprocess.run([sys.executable, "-m", "sp_istio_cache.cli", "smoke", "--size", "4096"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "smoke PASS: GET /bytes/4096 -> MISS (200), then HIT (200); body 4096 B identical" in out.stdout


def test_up_prints_addresses_and_down_stops_everything(tmp_path):
    env = {**os.environ, "SP_ISTIO_CACHE_STATE_DIR": str(tmp_path / "state")}
    cli = [sys.executable, "-m", "sp_istio_cache.cli"]
    try:
        up = subprocess.run([*cli, "up"], capture_output=True, text=True, timeout=120, env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        lines = dict(line.split(None, 1) for line in up.stdout.splitlines() if line.split(None, 1)[0] in
                     ("listener", "admin", "backend", "upstream"))
        assert set(lines) == {"listener", "admin", "backend", "upstream"}
        reply = request(lines["listener"].strip() + "/bytes/10")
        assert (reply.status, reply.cache, len(reply.body)) == (200, "MISS", 10)
        import json
        pids = json.loads((tmp_path / "state" / "stack.json").read_text())["pids"]
        again = subprocess.run([*cli, "up"], capture_output=True, text=True, timeout=60, env=env)
        assert again.returncode == 1 and "a stack is already up" in again.stderr
    finally:
        down = subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=60, env=env)
    assert down.returncode == 0 and down.stdout.startswith("stopped: envoy (pid ")
    assert [p for p in pids.values() if p and pid_alive(p)] == []


def test_a_corrupt_state_file_is_reported_and_cleared_by_down(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "stack.json").write_text('{"pids": {')
    env = {**os.environ, "SP_ISTIO_CACHE_STATE_DIR": str(state)}
    cli = [sys.executable, "-m", "sp_istio_cache.cli"]
    logs = subprocess.run([*cli, "logs"], capture_output=True, text=True, timeout=60, env=env)
    assert logs.returncode == 1
    assert f"state file {state / 'stack.json'} is unreadable" in logs.stderr
    assert "run `sp-istio-cache down` to clear it" in logs.stderr
    down = subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=60, env=env)
    assert (down.returncode, down.stdout.strip()) == (0, "no stack was up")
    assert not (state / "stack.json").exists()
