"""Fixtures for the runtime tests: a Docker engine (or a clear skip) and a session-wide
guarantee that no container this test process started outlives the session."""

from __future__ import annotations

import os

import pytest

from sp_istio_cache.runtime import RuntimeUnavailable, remove_leftovers
from sp_istio_cache.runtime.docker import OWNER_LABEL, managed_containers
from sp_istio_cache.runtime.image import MANAGED_LABEL, docker_client


def pytest_configure(config):
    config.addinivalue_line("markers", "docker: needs a reachable Docker engine (skipped, with the cause, without one)")


def _engine():
    try:
        return docker_client()
    except RuntimeUnavailable as exc:
        return exc


def our_containers(client) -> list:
    """Managed containers started by this pytest process (other sessions' are not ours)."""
    return managed_containers(client, [f"{MANAGED_LABEL}=true", f"{OWNER_LABEL}={os.getpid()}"])


@pytest.fixture(scope="session")
def docker_engine():
    """The docker SDK client; skips the test, naming the cause, only when no engine answers."""
    engine = _engine()
    if isinstance(engine, RuntimeUnavailable):
        pytest.skip(str(engine))
    return engine


@pytest.fixture(scope="session", autouse=True)
def no_container_left_behind():
    """After the whole session (failed tests included): no managed container of ours remains.

    Leftovers are removed first and then reported as an error, so a leak fails the run
    without leaking into the next one.
    """
    yield
    engine = _engine()
    if isinstance(engine, RuntimeUnavailable):
        return
    left = [c.name for c in our_containers(engine)]
    remove_leftovers(engine, owner_pid=os.getpid())
    assert left == [], f"containers left behind by this session: {left}"
