"""Real-Envoy fixtures: stacks shared by a module (tests use distinct paths and count deltas), the
rule stack run with Envoy's ``allow_on_headers_stop_iteration`` both on and off (Istio's WasmPlugin
leaves it off), and a check that nothing started by the tests outlives the session."""

from __future__ import annotations

import psutil
import pytest

from sp_istio_cache.stack import Stack, StackSpec

#: (allow_on_headers_stop_iteration, id): the workbench's setting, and Istio's WasmPlugin's
STOP_ITERATION = [pytest.param(True, id="stop-iteration"), pytest.param(False, id="istio-no-stop-iteration")]


@pytest.fixture(scope="module")
def module_stacks(tmp_path_factory, wasm):
    """Factory: ``module_stacks(**StackSpec fields)`` starts a Stack kept for the whole module
    (or parameter group); every one is stopped when the module ends."""
    started: list[Stack] = []
    root = tmp_path_factory.mktemp("stacks")

    def factory(**spec_kw) -> Stack:
        stack = Stack(StackSpec(wasm_path=wasm, **spec_kw), root / f"stack{len(started)}")
        started.append(stack)
        return stack.start()

    yield factory
    for stack in reversed(started):
        stack.cleanup()


@pytest.fixture(scope="module", params=STOP_ITERATION)
def allow_stop_iteration(request) -> bool:
    return request.param


@pytest.fixture(scope="module")
def rule_stack(module_stacks, allow_stop_iteration) -> Stack:
    """The default plugin config (safe RFC 9111 defaults) behind Envoy, with
    ``allow_on_headers_stop_iteration`` on and off."""
    return module_stacks(allow_on_headers_stop_iteration=allow_stop_iteration)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running():
    """After the session: no process started by a test (Envoy, backend, upstream, Redis) runs."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    alive = []
    for proc in me.children(recursive=True):
        try:
            if proc.pid not in before and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {' '.join(proc.cmdline()[:4])}")
        except psutil.NoSuchProcess:
            continue
    assert not alive, "left running: " + "; ".join(alive)
