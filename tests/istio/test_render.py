"""Rendering: every manifest is built as data, validated (Istio schemas, Kubernetes OpenAPI
schemas, references across resources) and dumped; bad input is refused naming the field, before
anything is written."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from sp_istio_cache import pluginconfig
from sp_istio_cache.cli import app
from sp_istio_cache.istio import deploy as d
from sp_istio_cache.istio import render as r
from sp_istio_cache.istio.params import BackendParams
from sp_istio_cache.istio.validate import IstioConfigError, check_manifest
from sp_istio_cache.paths import DIST_WASM

from .conftest import TUNED

CLUSTER = "outbound|8080||sp-cache-backend.sp-system.svc.cluster.local"
AUTHORITY = "sp-cache-backend.sp-system.svc.cluster.local"
OTHER_SHA = "667216ab56aeb86c33e7e19729977ac6fa1d4f2a524ee0653f67dfdb2e716081"


def test_default_render_writes_every_manifest_and_they_validate_again(tmp_path, params, module_sha):
    rendered = r.render(params())
    written = r.write(rendered, tmp_path / "out")
    assert [p.name for p in written] == ["namespace.yaml", "backend.yaml", "authorizationpolicy.yaml",
                                         "wasmplugin.yaml", "envoyfilter.yaml", "sidecar-secret-env.yaml"]
    again = d.read_rendered(tmp_path / "out")  # schemas + references, from the files
    assert [doc["kind"] for doc in again.all_docs()] == [
        "Namespace", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget", "AuthorizationPolicy",
        "WasmPlugin", "EnvoyFilter"]
    assert again.secrets == [("default", "sp-istio-cache-keys"), ("sp-system", "sp-istio-cache-keys")]
    assert rendered.sha256 == module_sha


def test_wasmplugin_reads_its_keys_from_the_sidecar_environment(params, module_sha):
    spec = r.render(params()).resources["wasmplugin.yaml"][0]["spec"]
    assert spec["selector"] == {"matchLabels": {"sp-istio-cache/enabled": "true"}}
    assert (spec["url"], spec["sha256"]) == ("file:///var/local/lib/wasm/sp_istio_cache.wasm", module_sha)
    assert (spec["failStrategy"], spec["phase"], spec["priority"], spec["type"]) == ("FAIL_OPEN", "UNSPECIFIED_PHASE",
                                                                                     0, "HTTP")
    assert spec["vmConfig"] == {"env": [{"name": "SP_CACHE_BACKEND_KEY", "valueFrom": "HOST"},
                                        {"name": "SP_CACHE_SIGNING_KEY", "valueFrom": "HOST"}]}
    assert spec["pluginConfig"] == {**TUNED, "backend_cluster": CLUSTER, "backend_authority": AUTHORITY}
    assert "backend_key" not in spec["pluginConfig"] and "signing_key" not in spec["pluginConfig"]


def test_envoyfilter_carries_the_same_config_and_host_env_keys(params, module_sha):
    ef = r.render(params()).resources["envoyfilter.yaml"][0]
    assert ef["metadata"]["annotations"] == {"sp-istio-cache/module-sha256": module_sha}
    (patch,) = ef["spec"]["configPatches"]
    assert (patch["applyTo"], patch["match"]["context"], patch["patch"]["operation"]) == (
        "HTTP_FILTER", "SIDECAR_OUTBOUND", "INSERT_BEFORE")
    cfg = patch["patch"]["value"]["typed_config"]["config"]
    assert (cfg["failure_policy"], cfg["allow_on_headers_stop_iteration"]) == ("FAIL_OPEN", True)
    assert cfg["vm_config"]["environment_variables"] == {"host_env_keys": ["SP_CACHE_BACKEND_KEY",
                                                                           "SP_CACHE_SIGNING_KEY"]}
    assert cfg["vm_config"]["code"] == {"local": {"filename": "/var/local/lib/wasm/sp_istio_cache.wasm"}}
    assert json.loads(cfg["configuration"]["value"]) == {**TUNED, "backend_cluster": CLUSTER,
                                                         "backend_authority": AUTHORITY}


def test_sidecar_patch_takes_both_keys_from_the_secret(params):
    (patch,) = r.render(params(secret_name="mesh-keys")).resources["sidecar-secret-env.yaml"]
    assert patch == {"spec": {"template": {"spec": {"containers": [{
        "name": "istio-proxy", "image": "auto",
        "env": [{"name": "SP_CACHE_BACKEND_KEY",
                 "valueFrom": {"secretKeyRef": {"name": "mesh-keys", "key": "backend-key"}}},
                {"name": "SP_CACHE_SIGNING_KEY",
                 "valueFrom": {"secretKeyRef": {"name": "mesh-keys", "key": "signing-key"}}}],
    }]}}}}


def test_renamed_key_variables_follow_the_plugin_config(params):
    rendered = r.render(params(plugin_config={**TUNED, "signing_key_env": "MESH_HMAC"}))
    assert rendered.resources["wasmplugin.yaml"][0]["spec"]["vmConfig"]["env"][1] == {"name": "MESH_HMAC",
                                                                                     "valueFrom": "HOST"}
    env = rendered.resources["sidecar-secret-env.yaml"][0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[1]["name"] == "MESH_HMAC" and env[1]["valueFrom"]["secretKeyRef"]["key"] == "signing-key"


def test_inline_secrets_only_when_allowed(params):
    literal = {**TUNED, "signing_key": "k" * 32}
    with pytest.raises(IstioConfigError, match=r"^pluginConfig\.signing_key: a literal secret would be readable"):
        r.render(params(plugin_config=literal))
    rendered = r.render(params(plugin_config=literal, allow_inline_secrets=True))
    assert rendered.resources["wasmplugin.yaml"][0]["spec"]["vmConfig"]["env"] == [
        {"name": "SP_CACHE_BACKEND_KEY", "valueFrom": "HOST"}]  # the signing key no longer comes from the env
    assert any("keep these files out of version control" in w for w in rendered.warnings)


@pytest.mark.parametrize("strategy,istio,envoy", [("open", "FAIL_OPEN", "FAIL_OPEN"),
                                                  ("closed", "FAIL_CLOSE", "FAIL_CLOSED"),
                                                  ("reload", "FAIL_RELOAD", "FAIL_RELOAD"),
                                                  ("FAIL_CLOSE", "FAIL_CLOSE", "FAIL_CLOSED")])
def test_fail_strategy_maps_to_istio_and_envoy(params, strategy, istio, envoy):
    rendered = r.render(params(fail_strategy=strategy))
    assert rendered.resources["wasmplugin.yaml"][0]["spec"]["failStrategy"] == istio
    ef = rendered.resources["envoyfilter.yaml"][0]["spec"]["configPatches"][0]["patch"]["value"]
    assert ef["typed_config"]["config"]["failure_policy"] == envoy
    if istio == "FAIL_RELOAD":
        assert any("needs Istio >= 1.27" in w for w in rendered.warnings)


def test_external_https_backend_gets_service_entry_and_tls_no_backend_manifests(params):
    rendered = r.render(params(backend_url="https://cache.example.com"))
    assert sorted(rendered.files) == ["destinationrule.yaml", "envoyfilter.yaml", "serviceentry.yaml",
                                      "sidecar-secret-env.yaml", "wasmplugin.yaml"]
    assert rendered.resources["destinationrule.yaml"][0]["spec"] == {
        "host": "cache.example.com", "exportTo": ["."],
        "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": "cache.example.com"}}}
    se = rendered.resources["serviceentry.yaml"][0]["spec"]
    assert (se["location"], se["ports"]) == ("MESH_EXTERNAL", [{"number": 443, "name": "http-443", "protocol": "HTTP"}])
    assert rendered.plugin_config["backend_cluster"] == "outbound|443||cache.example.com"


def test_http_module_url_needs_the_stated_digest_of_the_module(params, module_sha):
    url = "https://wasm.example.com/filters/sp_istio_cache.wasm"
    with pytest.raises(IstioConfigError, match=r"^sha256: required for a https:// module URL"):
        r.render(params(url=url))
    with pytest.raises(IstioConfigError, match=r"^url: 'http:///sp_istio_cache.wasm' names no host"):
        r.render(params(url="http:///sp_istio_cache.wasm", sha256=module_sha))
    rendered = r.render(params(url=url, sha256=module_sha, ports=[80, 8080], match_mode="CLIENT_AND_SERVER"))
    patches = rendered.resources["envoyfilter.yaml"][0]["spec"]["configPatches"]
    assert [(p["match"]["context"], p["match"]["listener"]["portNumber"]) for p in patches] == [
        ("SIDECAR_OUTBOUND", 80), ("SIDECAR_OUTBOUND", 8080), ("SIDECAR_INBOUND", 80), ("SIDECAR_INBOUND", 8080)]
    remote = patches[0]["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]["remote"]
    assert remote == {"http_uri": {"uri": url, "cluster": "outbound|443||wasm.example.com", "timeout": "30s"},
                      "sha256": module_sha, "retry_policy": {"num_retries": 3}}
    assert rendered.resources["wasmplugin.yaml"][0]["spec"]["match"] == [
        {"mode": "CLIENT_AND_SERVER", "ports": [{"number": 80}, {"number": 8080}]}]


def test_oci_url_renders_only_the_wasmplugin_with_the_stated_digest(params):
    url = "oci://registry.example.com/sp-istio-cache:0.1.0"
    with pytest.raises(IstioConfigError, match=r"^sha256: required for a oci:// module URL \(the OCI image digest\)"):
        r.render(params(url=url))
    rendered = r.render(params(url=url, sha256=OTHER_SHA, image_pull_policy="Always", module=None))
    plugins = sorted(k for k in rendered.files if k.endswith("plugin.yaml") or k == "envoyfilter.yaml")
    assert plugins == ["wasmplugin.yaml"]
    spec = rendered.resources["wasmplugin.yaml"][0]["spec"]
    assert (spec["sha256"], spec["imagePullPolicy"]) == (OTHER_SHA, "Always")


@pytest.mark.parametrize("kw,field", [
    (dict(sha256="ab" * 31), "sha256: 'abab"),
    (dict(sha256="AB" * 32), "sha256: 'ABAB"),
    (dict(sha256=OTHER_SHA), f"sha256: {OTHER_SHA} is not the module's digest"),
    (dict(ports=[8080, 9090, 8080]), "match.ports: [8080] listed more than once"),
    (dict(ports=[0]), "match.ports: 0 is not a port number"),
    (dict(plugin_config={"lookup_timout_ms": 10}), "pluginConfig.lookup_timout_ms: unknown key"),
    (dict(plugin_config={"max_response_body_bytes": "1Mi"}), "pluginConfig.max_response_body_bytes"),
    (dict(selector={"app": "check out"}), "selector.matchLabels['app']"),
    (dict(selector={"-app": "checkout"}), "selector.matchLabels['-app']"),
    (dict(selector={"Example.com/app": "x"}), "selector.matchLabels['Example.com/app']"),
    (dict(selector={}), "selector.matchLabels: at least one label"),
    (dict(url="ftp://x/y.wasm"), "url"),
    (dict(phase="BEFORE_ROUTER"), "phase"),
    (dict(fail_strategy="sometimes"), "failStrategy: 'sometimes'"),
    (dict(backend_url="sp-cache-backend:8080"), "backend_url"),
    (dict(match_mode="SERVER"), "pluginConfig.traffic_direction"),
    (dict(kind="wasmplugin", plugin_config={"lookup_methods": ["GET", "POST"]}), "pluginConfig.lookup_methods"),
    (dict(kind="envoyfilter", url="oci://registry.example.com/sp-istio-cache:0.1.0", sha256=OTHER_SHA), "url"),
    (dict(secret_name=""), "secretName: '' must name a Secret"),
    (dict(secret_name="Keys_1"), "secretName: 'Keys_1'"),
    (dict(client_service_accounts=["checkout"]),
     "authorization.serviceAccounts['checkout']: expected NAMESPACE/SERVICEACCOUNT"),
    (dict(namespace="Shop"), "namespace: 'Shop' must be a DNS-1123 label"),
    (dict(trust_domain="a/b"), "trustDomain"),
    (dict(backend=BackendParams(redis_url="redis://:hunter2@redis:6379/0")), "backend.redis_url: carries a password"),
    (dict(backend=BackendParams(redis_url="http://redis:6379")), "backend.redis_url: 'http://redis:6379'"),
    (dict(backend=BackendParams(memory_limit="256MB")), "backend.memory_limit: '256MB' is not a Kubernetes quantity"),
    (dict(backend=BackendParams(image="sp istio")), "backend.image"),
    (dict(backend=BackendParams(replicas=0)), "backend.replicas"),
    (dict(backend=BackendParams(namespace_labels={"istio-injection": "en abled"})), "backend.namespaceLabels"),
])
def test_bad_input_is_refused_naming_the_field(params, kw, field):
    with pytest.raises((IstioConfigError, pluginconfig.PluginConfigError)) as info:
        r.render(params(**kw))
    assert str(info.value).startswith(field), str(info.value)


def test_cli_refusal_writes_nothing(tmp_path, module, no_tuning_output):
    out = tmp_path / "out"
    for extra, said in ((["--sha256", "abc123"], "got 6"), (["--port", "80", "--port", "80"], "listed more than once")):
        res = CliRunner().invoke(app, ["istio", "render", "--out", str(out), "--wasm", str(module), "--no-envoy-check",
                                       "--schema-defaults", *extra])
        assert res.exit_code == 1
        assert said in " ".join(res.output.split())
    assert not out.exists()


def test_cli_render_with_options(tmp_path, module, module_sha, no_tuning_output):
    tuned = tmp_path / "pc.json"
    tuned.write_text(json.dumps(TUNED))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["istio", "render", "--out", str(out), "--plugin-config", str(tuned),
                                   "--wasm", str(module), "--no-envoy-check", "--namespace", "shop",
                                   "--selector", "app=checkout", "--client-service-account", "shop/checkout",
                                   "--backend-image", "registry.local/sp-cache-backend:9", "--backend-replicas", "3",
                                   "--fail-strategy", "reload"])
    assert res.exit_code == 0, res.output
    wp = yaml.safe_load((out / "wasmplugin.yaml").read_text())
    assert (wp["metadata"]["namespace"], wp["spec"]["selector"]["matchLabels"]) == ("shop", {"app": "checkout"})
    assert (wp["spec"]["sha256"], wp["spec"]["failStrategy"]) == (module_sha, "FAIL_RELOAD")
    deployment = list(yaml.safe_load_all((out / "backend.yaml").read_text()))[1]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/sp-cache-backend:9"
    policy = yaml.safe_load((out / "authorizationpolicy.yaml").read_text())
    assert policy["spec"]["rules"][0]["from"] == [{"source": {"principals": ["cluster.local/ns/shop/sa/checkout"]}}]


def test_body_lookups_render_only_the_envoyfilter_and_remove_a_stale_wasmplugin(tmp_path, params):
    (tmp_path / "wasmplugin.yaml").write_text(f"# {r.MARK} earlier\n")
    rendered = r.render(params(plugin_config={"lookup_methods": ["GET", "HEAD", "POST"]}))
    assert "wasmplugin.yaml" not in rendered.files and "envoyfilter.yaml" in rendered.files
    assert any("allow_on_headers_stop_iteration" in w for w in rendered.warnings)
    r.write(rendered, tmp_path)
    assert not (tmp_path / "wasmplugin.yaml").exists()


def test_yaml_has_no_anchors_and_reads_back_as_rendered(params):
    rendered = r.render(params())
    assert "&id" not in rendered.files["backend.yaml"] and "*id" not in rendered.files["backend.yaml"]
    for name, text in rendered.files.items():
        assert list(yaml.safe_load_all(text)) == rendered.resources[name]


def test_schemas_refuse_fields_istio_does_not_have(params):
    wp = r.render(params()).resources["wasmplugin.yaml"][0]
    with pytest.raises(IstioConfigError, match=r"^WasmPlugin spec: .*'failurePolicy' was unexpected"):
        check_manifest({**wp, "spec": {**wp["spec"], "failurePolicy": "FAIL_OPEN"}})
    with pytest.raises(IstioConfigError, match=r"^WasmPlugin spec\.sha256: "):
        check_manifest({**wp, "spec": {**wp["spec"], "sha256": "0" * 63}})
    with pytest.raises(IstioConfigError, match=r"^WasmPlugin spec\.vmConfig\.env\[0\]\.valueFrom: 'INLINE'"):
        check_manifest({**wp, "spec": {**wp["spec"], "vmConfig": {"env": [{"name": "K", "valueFrom": "INLINE"}]}}})


def test_committed_rendering_is_the_default_rendering_of_the_current_filter(tmp_path, wasm, monkeypatch):
    """istio-configs/ is `sp-istio-cache istio render --schema-defaults --no-envoy-check` for the
    current sources (the Zig build is deterministic): a filter, schema or renderer change without a
    re-render fails here, so the checked-in sha256 and manifests never go stale."""
    monkeypatch.setattr(r, "TUNING_OUTPUT", tmp_path / "absent.json")
    res = CliRunner().invoke(app, ["istio", "render", "--out", str(tmp_path / "out"), "--schema-defaults",
                                   "--no-envoy-check", "--wasm", str(DIST_WASM)])
    assert res.exit_code == 0, res.output
    produced = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert produced == sorted(p.name for p in r.ISTIO_CONFIGS.iterdir() if p.suffix == ".yaml")
    for name in produced:
        assert (r.ISTIO_CONFIGS / name).read_text() == (tmp_path / "out" / name).read_text(), (
            f"istio-configs/{name} is stale: run `sp-istio-cache istio render --schema-defaults` and commit it")
