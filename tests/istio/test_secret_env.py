"""The secret path of docs/deploy.md, in the real Envoy 1.40: a variable of the Envoy process (in
the mesh: the istio-proxy container's, from the Secret) reaches the Wasm VM when
``vm_config.environment_variables.host_env_keys`` names it (Istio: ``vmConfig.env`` ``valueFrom:
HOST``), and no other variable does. The guest is a FAKE (tests/istio/fake_env_guest.wat) that
echoes its WASI environment in a response header."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import wasmtime
import yaml

from sp_istio_cache import envoyconf
from sp_istio_cache.httpclient import request
from sp_istio_cache.istio.validate import equivalent_envoy_config
from sp_istio_cache.runtime import LocalRuntime
from sp_istio_cache.services import upstream_service

pytestmark = pytest.mark.envoy


@pytest.fixture
def env_guest(tmp_path) -> Path:
    path = tmp_path / "fake_env_guest.wasm"
    path.write_bytes(wasmtime.wat2wasm(Path(__file__).with_name("fake_env_guest.wat").read_text()))
    return path


def _with_vm_env(config_yaml: str, environment_variables: dict) -> str:
    doc = yaml.safe_load(config_yaml)
    for f in doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
        if f["name"] == "envoy.filters.http.wasm":
            f["typed_config"]["config"]["vm_config"]["environment_variables"] = environment_variables
    return yaml.safe_dump(doc, sort_keys=False)


def _environ_seen(tmp_path, make_config) -> list[str]:
    """Start the upstream, then Envoy with ``make_config(upstream_port)``; the VM's environment."""
    upstream = upstream_service(tmp_path)
    envoy = None
    try:
        upstream.start()
        envoy = LocalRuntime(make_config(upstream.port), tmp_path / "envoy", concurrency=1)
        envoy.start()
        envoy.wait_ready()
        reply = request(envoy.listener_url + "/bytes/8")
        assert reply.status == 200
        value = reply.header("x-fake-environ")
        assert value is not None, "the fake guest did not run"
        return value.split(";") if value else []
    finally:
        if envoy is not None:
            envoy.stop()
        upstream.stop()


def test_host_env_keys_expose_exactly_the_named_process_variables(tmp_path, env_guest, monkeypatch):
    signing, backend = secrets.token_hex(32), secrets.token_hex(16)
    monkeypatch.setenv("SP_CACHE_SIGNING_KEY", signing)
    monkeypatch.setenv("SP_CACHE_BACKEND_KEY", backend)
    monkeypatch.setenv("SP_CACHE_NOT_LISTED", "must-not-leak")
    def config(port: int) -> str:
        base = envoyconf.render(envoyconf.EnvoyConfig(variant="filter", upstream_port=port, backend_port=9,
                                                      wasm_path=env_guest))
        return _with_vm_env(base, {"host_env_keys": ["SP_CACHE_BACKEND_KEY", "SP_CACHE_SIGNING_KEY"]})

    assert sorted(_environ_seen(tmp_path, config)) == [f"SP_CACHE_BACKEND_KEY={backend}",
                                                       f"SP_CACHE_SIGNING_KEY={signing}"]


def test_without_host_env_keys_the_vm_sees_no_environment(tmp_path, env_guest, monkeypatch):
    monkeypatch.setenv("SP_CACHE_SIGNING_KEY", secrets.token_hex(32))
    def config(port: int) -> str:
        return envoyconf.render(envoyconf.EnvoyConfig(variant="filter", upstream_port=port, backend_port=9,
                                                      wasm_path=env_guest))

    assert _environ_seen(tmp_path, config) == []


def test_the_boot_check_gives_the_vm_its_keys_as_key_values(tmp_path, env_guest):
    """`istio render`'s Envoy check (validate.equivalent_envoy_config) hands the filter throwaway
    keys under the same names the sidecar provides."""
    keys = {"SP_CACHE_BACKEND_KEY": "b" * 32, "SP_CACHE_SIGNING_KEY": "s" * 64}
    def config(port: int) -> str:
        cluster = "outbound|8080||sp-cache-backend.sp-system.svc.cluster.local"
        return equivalent_envoy_config({"backend_cluster": cluster}, env_guest, upstream_port=port, vm_env=keys)

    assert sorted(_environ_seen(tmp_path, config)) == [f"{k}={v}" for k, v in sorted(keys.items())]
