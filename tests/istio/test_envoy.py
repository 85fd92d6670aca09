"""The rendered plugin configuration in the real Envoy: it boots with the keys in the VM's
environment, a module Envoy cannot load fails the check, and `validate` reports ABI, record and
Envoy."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sp_istio_cache.cli import app
from sp_istio_cache.istio import render as r
from sp_istio_cache.istio.params import IstioParams
from sp_istio_cache.istio.validate import IstioConfigError, boot_in_envoy

from .conftest import TUNED

pytestmark = pytest.mark.envoy


@pytest.fixture
def v2_filter(wasm):
    """The built filter, when it reads plugin config v2 (filter/config.schema.json on main); the
    filter of an older build refuses v2 keys, which is a finding of its own, not of the renderer."""
    if b"signing_key_env" not in wasm.read_bytes():
        pytest.skip("the built filter predates plugin config v2 (no signing_key_env)")
    return wasm


def test_render_boots_the_real_envoy_with_the_keys_from_the_environment(v2_filter):
    rendered = r.render(IstioParams(module=v2_filter, plugin_config=dict(TUNED)), boot=True)
    assert rendered.boot.ok, rendered.boot.message
    assert any(m.startswith("sp_cache.") for m in rendered.boot.filter_metrics)
    assert "outbound|8080||sp-cache-backend.sp-system.svc.cluster.local" in rendered.boot.config_yaml
    # the keys reached the VM under the names the sidecar patch provides, never in the plugin config
    assert "SP_CACHE_SIGNING_KEY" in rendered.boot.config_yaml and "key_values" in rendered.boot.config_yaml


def test_a_module_envoy_cannot_load_fails_the_boot(tmp_path):
    import wasmtime

    module = tmp_path / "no_abi.wasm"
    module.write_bytes(wasmtime.wat2wasm("(module (memory (export \"memory\") 1))"))
    report = boot_in_envoy({"backend_cluster": "outbound|8080||sp-cache-backend.sp-system.svc.cluster.local"}, module)
    assert not report.ok
    assert "exited with code" in report.message


def test_cli_validate_reports_abi_record_and_envoy(wasm):
    res = CliRunner().invoke(app, ["validate", str(wasm)])
    assert res.exit_code == 0, res.output
    assert "proxy_abi_version_0_2_1" in res.output
    assert "record  the sha256 matches the build record" in res.output
    assert "ok: ready to deploy" in res.output


def test_cli_validate_refuses_a_bad_plugin_config(tmp_path, wasm):
    cfg = tmp_path / "pc.json"
    cfg.write_text('{"lookup_timeout_ms": 0}')
    res = CliRunner().invoke(app, ["validate", str(wasm), "--plugin-config", str(cfg)])
    assert res.exit_code == 1
    assert "lookup_timeout_ms" in res.output and "ready to deploy" not in res.output


def test_render_refuses_when_envoy_refuses(monkeypatch, params):
    from sp_istio_cache.istio import validate as v

    monkeypatch.setattr(v, "boot_in_envoy",
                        lambda cfg, wasm, vm_env: v.BootReport(ok=False, message="exited with code 1"))
    with pytest.raises(IstioConfigError, match="^pluginConfig: does not load in the real Envoy: exited with code 1"):
        r.render(params(), boot=True)
