"""Fixtures for the test-host suite: the filter built once per session, a fresh started model per test."""

from __future__ import annotations

import pytest

from sp_istio_cache.testhost import EnvoyModel, load_module
from sp_istio_cache.testhost.build import build_for_tests

from ._cache import TIERS, Cache, tier_config
from ._support import BACKEND_KEY
from ._support import config as default_config


def pytest_collection_modifyitems(config, items):
    """``soak``-marked tests (minutes long) run only when selected: ``pytest -m soak``."""
    if "soak" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="full soak: run with -m soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def filter_wasm(tmp_path_factory):
    return build_for_tests(tmp_path_factory.mktemp("filter"))


@pytest.fixture(scope="session")
def filter_module(filter_wasm):
    return load_module(filter_wasm)


@pytest.fixture
def make_host(filter_module):
    """``make_host(config=None, *, start=True, **model_kw)`` -> an EnvoyModel whose configure succeeded.
    ``config`` None: :func:`._support.config` (the signing key the filter requires, the backend key)."""

    def factory(config: dict | bytes | None = None, *, start: bool = True, **kw) -> EnvoyModel:
        host = EnvoyModel(plugin_config=default_config() if config is None else config, module=filter_module, **kw)
        if start:
            assert host.start() is True, host.log_messages()
        return host

    return factory


@pytest.fixture
def host(make_host):
    return make_host()


@pytest.fixture(params=["thread", "process"])
def backend_port(request, tmp_path):
    """The real cache backend (protocol v2, requiring ``_support.BACKEND_KEY``) on a loopback port:
    its aiohttp app (memory storage) in a thread, or ``python -m sp_istio_cache.backend`` (SQLite)
    as a process, stopped after the test."""
    from sp_istio_cache.backend.app import create_app
    from sp_istio_cache.backend.storage import create_storage
    from tests.support import running, service_process

    if request.param == "thread":
        with running(create_app(create_storage("memory"), key=BACKEND_KEY, evict_interval=0)) as client:
            yield client.port
        return
    args = ["--port", "0", "--storage", "sqlite", "--db", str(tmp_path / "cache.sqlite"), "--evict-interval", "0",
            "--key", BACKEND_KEY]
    with service_process("sp_istio_cache.backend", args, tmp_path / "backend.port",
                         tmp_path / "backend.log") as (_, client):
        yield client.port


@pytest.fixture(params=TIERS)
def tier(request) -> str:
    """Where a stored entry is served from: ``l1`` (shared data, no callout) or ``backend``
    (``l1_max_bytes: 0``: the lookup answer carries the entry)."""
    return request.param


@pytest.fixture
def make_cache(make_host, tier):
    """``make_cache(**config_overrides, model=dict(...))`` -> a :class:`._cache.Cache` on ``tier``."""

    def factory(model: dict | None = None, **overrides) -> Cache:
        return Cache(make_host(tier_config(tier, **overrides), **(model or {})))

    return factory
