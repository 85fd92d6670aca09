"""The rendered plugin configuration in the real Envoy: it boots, and the equivalent sidecar
config serves miss -> hit against the real backend and upstream."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from sp_istio_cache import envoyconf
from sp_istio_cache.cli import app
from sp_istio_cache.httpclient import request
from sp_istio_cache.istio import render as r
from sp_istio_cache.istio.validate import IstioConfigError, boot_in_envoy, equivalent_envoy_config
from sp_istio_cache.runtime import LocalRuntime
from sp_istio_cache.services import backend_service, upstream_service

from .conftest import TUNED

pytestmark = pytest.mark.envoy


def test_render_boots_the_real_envoy_with_the_tuned_plugin_config(tuning_output, wasm, module_sha):
    rendered = r.render(r.IstioParams(sha256=module_sha), wasm_for_boot=wasm)
    assert rendered.boot.ok, rendered.boot.message
    assert {"sp_cache.hit", "sp_cache.miss", "sp_cache.store_sent"} <= set(rendered.boot.filter_metrics)
    # the Envoy got the plugin config byte for byte, backend cluster named as in the mesh
    expected_json = rendered.resources["envoyfilter.yaml"]["spec"]["configPatches"][0]["patch"]["value"][
        "typed_config"]["config"]["configuration"]["value"]
    assert "outbound|8080||sp-cache-backend.sp-system.svc.cluster.local" in rendered.boot.config_yaml
    assert rendered.plugin_config["max_response_body_bytes"] == TUNED["max_response_body_bytes"]
    assert expected_json  # rendered and validated


def test_a_module_envoy_cannot_load_fails_the_boot(tmp_path):
    import wasmtime

    module = tmp_path / "no_abi.wasm"
    module.write_bytes(wasmtime.wat2wasm("(module (memory (export \"memory\") 1))"))
    report = boot_in_envoy({"backend_cluster": "outbound|8080||sp-cache-backend.sp-system.svc.cluster.local"}, module)
    assert not report.ok
    assert "exited with code" in report.message


def test_equivalent_envoy_config_serves_miss_then_hit(tmp_path, tuning_output, wasm, module_sha):
    """The exact pluginConfig of the WasmPlugin (Istio cluster name included) in the workbench's
    equivalent bootstrap, with the real backend behind `outbound|8080||...`."""
    config = r.render(r.IstioParams(sha256=module_sha)).plugin_config
    upstream, backend = upstream_service(tmp_path), backend_service(tmp_path, storage="memory")
    envoy = None
    try:
        upstream.start()
        backend.start()
        envoy = LocalRuntime(equivalent_envoy_config(config, wasm, upstream_port=upstream.port,
                                                     backend_port=backend.port), tmp_path / "envoy")
        envoy.start()
        envoy.wait_ready()
        url = envoy.listener_url + "/bytes/4096"
        first = request(url)
        assert (first.status, first.cache, len(first.body)) == (200, "MISS", 4096)
        for _ in range(100):  # the store is asynchronous
            if backend.get_json("/stats")["stores"] >= 1:
                break
            __import__("time").sleep(0.05)
        second = request(url)
        assert (second.status, second.cache) == (200, "HIT")
        assert hashlib.sha256(second.body).digest() == hashlib.sha256(first.body).digest()
        assert upstream.get_json("/__stats")["by_path"]["/bytes/4096"] == 1
    finally:
        for part in (envoy, backend, upstream):
            if part is not None:
                part.stop()


def test_stack_with_the_rendered_plugin_config_serves_miss_then_hit(make_stack, tuning_output, module_sha):
    """The same through the workbench Stack; only the backend cluster name is the Stack's own."""
    config = r.render(r.IstioParams(sha256=module_sha)).plugin_config
    stack = make_stack(variant="filter", storage="memory",
                       plugin_config={**config, "backend_cluster": envoyconf.BACKEND_CLUSTER})
    url = stack.listener_url + "/bytes/2048"
    assert request(url).cache == "MISS"
    stack.wait_for_stores(1)
    assert request(url).cache == "HIT"
    assert stack.upstream_count("/bytes/2048") == 1


def test_cli_validate_reports_abi_sha256_and_envoy(tmp_path, wasm, module_sha):
    cfg = tmp_path / "pc.json"
    cfg.write_text('{"max_response_body_bytes": 262144}')
    res = CliRunner().invoke(app, ["validate", str(wasm), "--plugin-config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert f"sha256  {module_sha}" in res.output
    assert "proxy_abi_version_0_2_1" in res.output
    assert "ok: ready to deploy" in res.output


def test_cli_validate_refuses_a_bad_plugin_config(tmp_path, wasm):
    cfg = tmp_path / "pc.json"
    cfg.write_text('{"lookup_timeout_ms": 0}')
    res = CliRunner().invoke(app, ["validate", str(wasm), "--plugin-config", str(cfg)])
    assert res.exit_code == 1
    assert "lookup_timeout_ms" in res.output


def test_render_refuses_when_envoy_refuses(tmp_path, monkeypatch, no_tuning_output, module_sha):
    from sp_istio_cache.istio import validate as v

    monkeypatch.setattr(v, "boot_in_envoy", lambda cfg, wasm: v.BootReport(ok=False, message="exited with code 1"))
    with pytest.raises(IstioConfigError, match="^pluginConfig: does not load in the real Envoy"):
        r.render(r.IstioParams(sha256=module_sha), wasm_for_boot=tmp_path / "x.wasm")
