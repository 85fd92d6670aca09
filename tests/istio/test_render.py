"""Rendering: the manifests parse, validate, carry the plugin config verbatim, and bad input is
refused with a message naming the field (before anything is written)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from sp_istio_cache import pluginconfig
from sp_istio_cache.cli import app
from sp_istio_cache.istio import render as r
from sp_istio_cache.istio.validate import IstioConfigError, check_manifest, check_manifest_file

from .conftest import TUNED

SHA = "667216ab56aeb86c33e7e19729977ac6fa1d4f2a524ee0653f67dfdb2e716081"
CLUSTER = "outbound|8080||sp-cache-backend.sp-system.svc.cluster.local"


def test_default_render_writes_valid_manifests(tmp_path, no_tuning_output):
    rendered = r.render(r.IstioParams(sha256=SHA))
    written = r.write(rendered, tmp_path)
    assert sorted(p.name for p in written) == ["envoyfilter.yaml", "serviceentry.yaml", "wasmplugin.yaml"]
    for path in written:
        (doc,) = check_manifest_file(path)
        assert doc["metadata"] == {"name": doc["metadata"]["name"], "namespace": "default",
                                   "labels": {"app.kubernetes.io/name": "sp-istio-cache",
                                              "app.kubernetes.io/managed-by": "sp-istio-cache"}}

    wp = yaml.safe_load((tmp_path / "wasmplugin.yaml").read_text())
    spec = wp["spec"]
    assert (wp["apiVersion"], wp["kind"]) == ("extensions.istio.io/v1alpha1", "WasmPlugin")
    assert spec["selector"] == {"matchLabels": {"sp-istio-cache/enabled": "true"}}
    assert spec["url"] == "file:///var/local/lib/wasm/sp_istio_cache.wasm"
    assert spec["sha256"] == SHA
    assert (spec["failStrategy"], spec["phase"], spec["priority"], spec["type"]) == ("FAIL_OPEN", "UNSPECIFIED_PHASE", 0, "HTTP")
    assert spec["match"] == [{"mode": "CLIENT"}]
    expected = {**{k: v for k, v in pluginconfig.defaults().items() if k not in r.DEPLOYMENT_KEYS},
                "backend_cluster": CLUSTER, "backend_authority": "sp-cache-backend.sp-system.svc.cluster.local"}
    assert spec["pluginConfig"] == expected

    ef = yaml.safe_load((tmp_path / "envoyfilter.yaml").read_text())
    (patch,) = ef["spec"]["configPatches"]
    assert ef["spec"]["workloadSelector"] == {"labels": {"sp-istio-cache/enabled": "true"}}
    assert patch["applyTo"] == "HTTP_FILTER"
    assert patch["match"]["context"] == "SIDECAR_OUTBOUND"
    assert patch["match"]["listener"]["filterChain"]["filter"]["subFilter"] == {"name": "envoy.filters.http.router"}
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    cfg = patch["patch"]["value"]["typed_config"]["config"]
    assert cfg["allow_on_headers_stop_iteration"] is True
    assert cfg["failure_policy"] == "FAIL_OPEN"
    assert cfg["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert cfg["vm_config"]["code"] == {"local": {"filename": "/var/local/lib/wasm/sp_istio_cache.wasm"}}
    assert json.loads(cfg["configuration"]["value"]) == expected

    se = yaml.safe_load((tmp_path / "serviceentry.yaml").read_text())
    assert se["spec"]["hosts"] == ["sp-cache-backend.sp-system.svc.cluster.local"]
    assert se["spec"]["ports"] == [{"number": 8080, "name": "http-8080", "protocol": "HTTP"}]


def test_committed_default_rendering_is_valid():
    """The files checked in under istio-configs/ pass the same schemas."""
    for name in ("wasmplugin.yaml", "envoyfilter.yaml", "serviceentry.yaml"):
        check_manifest_file(r.ISTIO_CONFIGS / name)


def test_committed_default_rendering_matches_the_current_filter(tmp_path, no_tuning_output, module_sha):
    """istio-configs/ is what `sp-istio-cache istio render` gives for the current sources (the Zig
    build is deterministic): a filter or schema change without a re-render fails here, so the
    checked-in sha256 and pluginConfig never go stale."""
    written = r.write(r.render(r.IstioParams(sha256=module_sha)), tmp_path)
    for path in written:
        assert (r.ISTIO_CONFIGS / path.name).read_text() == path.read_text(), (
            f"istio-configs/{path.name} is stale: run `sp-istio-cache istio render` and commit it")


def test_https_backend_adds_destination_rule_with_tls_origination(no_tuning_output):
    rendered = r.render(r.IstioParams(sha256=SHA, backend_url="https://cache.example.com"))
    dr = rendered.resources["destinationrule.yaml"]
    assert dr["spec"] == {"host": "cache.example.com", "exportTo": ["."],
                          "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": "cache.example.com"}}}
    se = rendered.resources["serviceentry.yaml"]["spec"]
    assert (se["location"], se["ports"][0]["number"]) == ("MESH_EXTERNAL", 443)
    assert rendered.plugin_config["backend_cluster"] == "outbound|443||cache.example.com"


def test_http_module_url_is_fetched_remotely_with_sha256(no_tuning_output):
    rendered = r.render(r.IstioParams(sha256=SHA, url="https://wasm.example.com/filters/sp_istio_cache.wasm",
                                      ports=[80, 8080], match_mode="CLIENT_AND_SERVER"))
    patches = rendered.resources["envoyfilter.yaml"]["spec"]["configPatches"]
    assert [(p["match"]["context"], p["match"]["listener"]["portNumber"]) for p in patches] == [
        ("SIDECAR_OUTBOUND", 80), ("SIDECAR_OUTBOUND", 8080), ("SIDECAR_INBOUND", 80), ("SIDECAR_INBOUND", 8080)]
    remote = patches[0]["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]["remote"]
    assert remote["http_uri"]["uri"] == "https://wasm.example.com/filters/sp_istio_cache.wasm"
    assert remote["http_uri"]["cluster"] == "outbound|443||wasm.example.com"
    assert remote["sha256"] == SHA
    assert rendered.resources["wasmplugin.yaml"]["spec"]["match"] == [
        {"mode": "CLIENT_AND_SERVER", "ports": [{"number": 80}, {"number": 8080}]}]


def test_tuning_output_appears_verbatim(tuning_output):
    rendered = r.render(r.IstioParams(sha256=SHA))
    assert any(str(tuning_output) in w for w in rendered.warnings)
    wp_config = rendered.resources["wasmplugin.yaml"]["spec"]["pluginConfig"]
    assert {k: wp_config[k] for k in TUNED} == TUNED
    assert set(wp_config) == set(TUNED) | set(r.DEPLOYMENT_KEYS)
    assert list(wp_config)[:len(TUNED)] == list(TUNED)  # the tuning file's own order
    ef_config = rendered.resources["envoyfilter.yaml"]["spec"]["configPatches"][0]["patch"]["value"][
        "typed_config"]["config"]["configuration"]["value"]
    assert json.loads(ef_config) == wp_config


def test_cli_render_uses_a_given_tuning_file_verbatim(tmp_path, wasm, module_sha):
    tuned = tmp_path / "recommended_plugin_config.json"
    tuned.write_text(json.dumps(TUNED))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["istio", "render", "--out", str(out), "--plugin-config", str(tuned),
                                   "--wasm", str(wasm), "--no-envoy-check", "--namespace", "shop",
                                   "--selector", "app=checkout"])
    assert res.exit_code == 0, res.output
    wp = yaml.safe_load((out / "wasmplugin.yaml").read_text())
    assert wp["metadata"]["namespace"] == "shop"
    assert wp["spec"]["selector"]["matchLabels"] == {"app": "checkout"}
    assert wp["spec"]["sha256"] == module_sha
    assert {k: wp["spec"]["pluginConfig"][k] for k in TUNED} == TUNED


def test_tuning_run_backend_names_are_replaced_by_the_mesh_ones(no_tuning_output):
    rendered = r.render(r.IstioParams(sha256=SHA, plugin_config={**TUNED, "backend_cluster": "sp_cache_backend"}))
    assert rendered.plugin_config["backend_cluster"] == CLUSTER
    assert any("pluginConfig.backend_cluster" in w for w in rendered.warnings)


@pytest.mark.parametrize("params,error,field", [
    (dict(sha256="ab" * 31), IstioConfigError, "sha256"),
    (dict(sha256="AB" * 32), IstioConfigError, "sha256"),
    (dict(sha256=SHA, plugin_config={"lookup_timout_ms": 10}), pluginconfig.PluginConfigError,
     "pluginConfig.lookup_timout_ms: unknown key"),
    (dict(sha256=SHA, plugin_config={"max_response_body_bytes": "1Mi"}), pluginconfig.PluginConfigError,
     "pluginConfig.max_response_body_bytes"),
    (dict(sha256=SHA, selector={"app": "check out"}), IstioConfigError, "selector.matchLabels['app']"),
    (dict(sha256=SHA, selector={"-app": "checkout"}), IstioConfigError, "selector.matchLabels['-app']"),
    (dict(sha256=SHA, selector={"Example.com/app": "x"}), IstioConfigError, "selector.matchLabels['Example.com/app']"),
    (dict(sha256=SHA, selector={}), IstioConfigError, "selector.matchLabels"),
    (dict(sha256=SHA, url="ftp://x/y.wasm"), IstioConfigError, "url"),
    (dict(sha256=None), IstioConfigError, "sha256"),
    (dict(sha256=SHA, phase="BEFORE_ROUTER"), IstioConfigError, "phase"),
    (dict(sha256=SHA, ports=[0]), IstioConfigError, "match.ports"),
    (dict(sha256=SHA, backend_url="sp-cache-backend:8080"), IstioConfigError, "backend_url"),
    (dict(sha256=SHA, match_mode="SERVER"), IstioConfigError, "pluginConfig.traffic_direction"),
    (dict(sha256=SHA, kind="wasmplugin", plugin_config={"lookup_methods": ["GET", "POST"]}), IstioConfigError,
     "pluginConfig.lookup_methods"),
    (dict(sha256=SHA, kind="envoyfilter", url="oci://registry.example.com/sp-istio-cache:0.1.0"), IstioConfigError, "url"),
])
def test_bad_parameters_are_refused_naming_the_field(no_tuning_output, params, error, field):
    with pytest.raises(error) as info:
        r.render(r.IstioParams(**params))
    assert str(info.value).startswith(field), str(info.value)


def test_cli_refusal_writes_nothing(tmp_path, wasm):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["istio", "render", "--out", str(out), "--sha256", "abc123", "--no-envoy-check"])
    assert res.exit_code == 1
    assert "sha256" in res.output and "got 6" in res.output
    assert not out.exists()


def test_body_lookups_render_only_the_envoyfilter(tmp_path, no_tuning_output):
    (tmp_path / "wasmplugin.yaml").write_text("# Rendered by `sp-istio-cache istio render` earlier\n")
    rendered = r.render(r.IstioParams(sha256=SHA, plugin_config={"lookup_methods": ["GET", "HEAD", "POST"]}))
    assert "wasmplugin.yaml" not in rendered.files and "envoyfilter.yaml" in rendered.files
    assert any("allow_on_headers_stop_iteration" in w for w in rendered.warnings)
    r.write(rendered, tmp_path)
    assert not (tmp_path / "wasmplugin.yaml").exists()  # a stale alternative is not left beside it


def test_oci_url_renders_only_the_wasmplugin_and_may_omit_the_digest(no_tuning_output):
    rendered = r.render(r.IstioParams(sha256=None, url="oci://registry.example.com/sp-istio-cache:0.1.0",
                                      image_pull_policy="Always"))
    assert sorted(rendered.files) == ["serviceentry.yaml", "wasmplugin.yaml"]
    spec = rendered.resources["wasmplugin.yaml"]["spec"]
    assert "sha256" not in spec and spec["imagePullPolicy"] == "Always"


def test_schema_refuses_a_field_istio_does_not_have():
    doc = yaml.safe_load((r.ISTIO_CONFIGS / "wasmplugin.yaml").read_text())
    doc["spec"]["failurePolicy"] = "FAIL_OPEN"
    with pytest.raises(IstioConfigError, match=r"^WasmPlugin spec: .*'failurePolicy' was unexpected"):
        check_manifest(doc)
    doc = yaml.safe_load((r.ISTIO_CONFIGS / "wasmplugin.yaml").read_text())
    doc["spec"]["sha256"] = "0" * 63
    with pytest.raises(IstioConfigError, match=r"^WasmPlugin spec\.sha256: "):
        check_manifest(doc)
