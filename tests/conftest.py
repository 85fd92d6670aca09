"""Shared fixtures: the built filter module and real stacks on loopback (always stopped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sp_istio_cache.stack import Stack, StackSpec, ensure_wasm


@pytest.fixture(scope="session")
def wasm() -> Path:
    """The filter module, built once per session when missing or stale."""
    return ensure_wasm()


@pytest.fixture
def make_stack(tmp_path, wasm):
    """Factory: ``make_stack(variant=..., plugin_config=...)`` starts a Stack; all are stopped at teardown."""
    started: list[Stack] = []

    def factory(**spec_kw) -> Stack:
        spec = StackSpec(wasm_path=wasm, **spec_kw)
        stack = Stack(spec, tmp_path / f"stack{len(started)}")
        started.append(stack)
        return stack.start()

    yield factory
    for stack in reversed(started):
        stack.cleanup()
