"""Fixtures for the test-host suite: the filter built once per session, a fresh started host per test.

``SP_TESTHOST_CALLOUT_CONTEXT=caller`` delivers callout answers to the dispatching context instead
of the root context (Envoy's behaviour, the default); see sp_istio_cache.testhost.host.
"""

from __future__ import annotations

import os

import pytest

from sp_istio_cache.testhost import ProxyWasmHost, load_module
from sp_istio_cache.testhost.build import build_for_tests

CALLOUT_CONTEXT = os.environ.get("SP_TESTHOST_CALLOUT_CONTEXT", "root")


@pytest.fixture(scope="session")
def filter_wasm(tmp_path_factory):
    return build_for_tests(tmp_path_factory.mktemp("filter"))


@pytest.fixture(scope="session")
def filter_module(filter_wasm):
    return load_module(filter_wasm)


@pytest.fixture
def make_host(filter_module):
    """``make_host(config=None, *, start=True, **host_kw)`` -> a host whose configure succeeded."""

    def factory(config: dict | bytes | None = None, *, start: bool = True, **kw) -> ProxyWasmHost:
        kw.setdefault("callout_context", CALLOUT_CONTEXT)
        host = ProxyWasmHost(plugin_config={} if config is None else config, module=filter_module, **kw)
        if start:
            assert host.start() is True, host.log_messages()
        return host

    return factory


@pytest.fixture
def host(make_host):
    return make_host()
