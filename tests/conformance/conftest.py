"""Fixtures for the conformance harness: the cache-tests suite (outside the repository) and a
check that nothing a test started is left running."""

from __future__ import annotations

import psutil
import pytest

from sp_istio_cache.conformance.suite import Suite, default_suite_dir


@pytest.fixture(scope="session")
def suite() -> Suite:
    """The suite at its default place (shared/cache-tests beside the checkout, or
    $SP_ISTIO_CACHE_SUITE); these tests skip, saying so, where it is absent."""
    root = default_suite_dir()
    if root is None:
        pytest.skip("the cache-tests suite is not beside this checkout (set SP_ISTIO_CACHE_SUITE)")
    return Suite(root)


def leftover_children() -> list[str]:
    """Our descendants that are node or Envoy processes (name and pid)."""
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            name = child.name()
        except psutil.Error:
            continue
        if name in ("node", "envoy") and child.status() != psutil.STATUS_ZOMBIE:
            out.append(f"{name} (pid {child.pid})")
    return out


@pytest.fixture
def no_leftovers():
    """Asserts after the test that no node or Envoy child process remains."""
    yield
    assert leftover_children() == []
