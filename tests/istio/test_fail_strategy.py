"""What each --fail-strategy does in the real Envoy 1.40 when the Wasm VM traps.

The guest is a FAKE (tests/istio/fake_trap_guest.wat, compiled with wasmtime.wat2wasm): a
proxy-wasm 0.2.1 module that traps on a request carrying ``x-fake-trap`` and marks every response
it sees with ``x-fake-guest: seen``. One Envoy worker (``--concurrency 1``), so one VM: the statuses
are exact. The figures here are the ones docs/deploy.md reports.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import wasmtime
from typer.testing import CliRunner

from sp_istio_cache import envoyconf
from sp_istio_cache.cli import app
from sp_istio_cache.httpclient import request
from sp_istio_cache.runtime import LocalRuntime
from sp_istio_cache.services import upstream_service

FAKE_WAT = Path(__file__).with_name("fake_trap_guest.wat")
TRAP = {"x-fake-trap": "1"}
PATH = "/bytes/16"


@pytest.fixture(scope="module")
def fake_guest(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fake") / "fake_trap_guest.wasm"
    path.write_bytes(wasmtime.wat2wasm(FAKE_WAT.read_text()))
    return path


@pytest.fixture
def envoy_with(tmp_path, fake_guest):
    """Factory: an Envoy (1 worker) with the fake guest under ``fail_strategy``, in front of the
    real upstream test app. Returns (listener URL, runtime, upstream); everything is stopped."""
    started = []

    def start(fail_strategy: str):
        upstream = upstream_service(tmp_path)
        started.append(upstream)
        upstream.start()
        config = envoyconf.render(envoyconf.EnvoyConfig(
            variant="filter", upstream_port=upstream.port, backend_port=9, wasm_path=fake_guest,
            fail_strategy=fail_strategy))
        envoy = LocalRuntime(config, tmp_path / "envoy", concurrency=1)
        started.append(envoy)
        envoy.start()
        envoy.wait_ready()
        return envoy.listener_url + PATH, envoy, upstream

    yield start
    for part in reversed(started):
        part.stop()


def _outcome(url: str, headers: dict[str, str] | None = None) -> tuple[int, str | None, int]:
    reply = request(url, headers=headers)
    return reply.status, reply.header("x-fake-guest"), len(reply.body)


def _upstream_count(upstream) -> int:
    return int(upstream.get_json("/__stats")["by_path"].get(PATH, 0))


pytestmark = pytest.mark.envoy


def test_fail_open_503_then_bypasses_the_plugin_until_restart(envoy_with):
    url, envoy, upstream = envoy_with("open")
    assert _outcome(url) == (200, "seen", 16)
    assert _outcome(url, TRAP) == (503, None, 0)  # the request in flight when the VM traps
    after = [_outcome(url) for _ in range(3)]
    time.sleep(1.5)  # longer than FAIL_RELOAD's 1 s backoff: nothing comes back under FAIL_OPEN
    later = [_outcome(url) for _ in range(3)] + [_outcome(url, TRAP)]
    assert after + later == [(200, None, 16)] * 7  # upstream answers, the plugin no longer runs
    assert _upstream_count(upstream) == 1 + 7
    assert envoy.stats()["wasm.sp_istio_cache.vm_reload_success"] == 0


def test_fail_closed_503_for_every_request_until_restart(envoy_with):
    url, envoy, upstream = envoy_with("closed")
    assert _outcome(url) == (200, "seen", 16)
    assert _outcome(url, TRAP) == (503, None, 0)
    after = [_outcome(url) for _ in range(3)]
    time.sleep(1.5)
    later = [_outcome(url) for _ in range(3)]
    assert after + later == [(503, None, 0)] * 6
    assert _upstream_count(upstream) == 1  # nothing reached the upstream after the trap
    assert envoy.stats()["wasm.sp_istio_cache.vm_reload_success"] == 0


def test_fail_reload_503_during_the_backoff_then_a_new_vm_serves(envoy_with):
    url, envoy, upstream = envoy_with("reload")
    assert _outcome(url) == (200, "seen", 16)
    assert _outcome(url, TRAP) == (503, None, 0)
    assert [_outcome(url) for _ in range(3)] == [(503, None, 0)] * 3  # within the 1 s reload backoff
    deadline, recovered = time.monotonic() + 10, None
    while time.monotonic() < deadline:
        recovered = _outcome(url)
        if recovered[0] == 200:
            break
        time.sleep(0.2)
    assert recovered == (200, "seen", 16)  # a fresh VM runs the plugin again
    stats = envoy.stats()
    assert stats["wasm.sp_istio_cache.vm_reload_success"] == 1
    assert stats["wasm.sp_istio_cache.vm_reload_backoff"] >= 3
    assert _upstream_count(upstream) == 2  # the first request and the one that found the new VM
    # a second trap starts the cycle again
    assert _outcome(url, TRAP) == (503, None, 0)
    assert _outcome(url) == (503, None, 0)


@pytest.mark.parametrize("strategy,policy", [("open", "FAIL_OPEN"), ("closed", "FAIL_CLOSED"),
                                              ("reload", "FAIL_RELOAD")])
def test_strategy_maps_to_envoy_failure_policy(fake_guest, strategy, policy):
    config = envoyconf.render(envoyconf.EnvoyConfig(variant="filter", upstream_port=1, backend_port=9,
                                                    wasm_path=fake_guest, fail_strategy=strategy))
    assert f"failure_policy: {policy}\n" in config


def test_unknown_strategy_is_refused_everywhere(fake_guest):
    with pytest.raises(ValueError, match="fail strategy 'sometimes'"):
        envoyconf.render(envoyconf.EnvoyConfig(variant="filter", upstream_port=1, wasm_path=fake_guest,
                                               fail_strategy="sometimes"))
    res = CliRunner().invoke(app, ["bench", "--fail-strategy", "sometimes"])
    assert res.exit_code == 2  # the bench refuses before anything runs
    said = " ".join(res.output.split())
    assert "--fail-strategy: Input should be 'open', 'closed' or 'reload' (got 'sometimes')" in said
    for command in (["smoke"], ["up"]):
        res = CliRunner().invoke(app, [*command, "--fail-strategy", "sometimes"])
        assert res.exit_code == 1
        assert "--fail-strategy 'sometimes': choose one of open, closed, reload" in " ".join(res.output.split())
