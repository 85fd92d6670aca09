"""The backend's Kubernetes manifests, the AuthorizationPolicy, and the references between them:
validated against the Kubernetes 1.30 OpenAPI schemas (kubernetes-validate, strict) and refused
with the reference named when broken."""

from __future__ import annotations

import copy

import pytest

from sp_istio_cache.istio import consistency
from sp_istio_cache.istio import render as r
from sp_istio_cache.istio.kubeschema import KUBERNETES_VERSION, KubeSchemaError, check_kube_resource
from sp_istio_cache.istio.params import BackendParams
from sp_istio_cache.istio.validate import IstioConfigError, check_manifest

POD_LABELS = {"app.kubernetes.io/name": "sp-cache-backend", "app.kubernetes.io/part-of": "sp-istio-cache"}


def _backend(rendered) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in rendered.resources["backend.yaml"]}


def test_backend_deployment_is_hardened_and_probed(params):
    deployment = _backend(r.render(params()))["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"] == POD_LABELS
    pod = deployment["spec"]["template"]["spec"]
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("sp-cache-backend", False)
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    (c,) = pod["containers"]
    assert c["image"] == "sp-istio-cache-backend:0.1.0"
    assert c["args"] == ["--host", "0.0.0.0", "--port", "8080", "--storage", "redis",
                         "--redis-url", "redis://sp-cache-redis.sp-system.svc.cluster.local:6379/0",
                         "--max-variants", "8"]  # the plugin config's max_variants
    assert c["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["resources"] == {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    assert c["env"] == [{"name": "SP_CACHE_BACKEND_KEY",
                         "valueFrom": {"secretKeyRef": {"name": "sp-istio-cache-keys", "key": "backend-key"}}}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"


def test_service_pdb_namespace(params):
    rendered = r.render(params(backend=BackendParams(namespace="cache", port=9090, replicas=1)))
    backend = _backend(rendered)
    assert backend["Service"]["spec"] == {"selector": POD_LABELS, "ports": [
        {"name": "http", "port": 9090, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}]}
    assert backend["PodDisruptionBudget"]["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": POD_LABELS}}
    (ns,) = rendered.resources["namespace.yaml"]
    assert ns["metadata"]["name"] == "cache" and ns["metadata"]["labels"]["istio-injection"] == "enabled"
    assert rendered.plugin_config["backend_cluster"] == "outbound|9090||sp-cache-backend.cache.svc.cluster.local"
    assert any("backend.replicas 1" in w for w in rendered.warnings)


def test_redis_url_from_the_secret(params):
    c = _backend(r.render(params(backend=BackendParams(redis_url_from_secret=True))))["Deployment"][
        "spec"]["template"]["spec"]["containers"][0]
    assert c["args"][-4:] == ["--redis-url", "$(SP_CACHE_REDIS_URL)", "--max-variants", "8"]
    assert c["env"][1] == {"name": "SP_CACHE_REDIS_URL",
                           "valueFrom": {"secretKeyRef": {"name": "sp-istio-cache-keys", "key": "redis-url"}}}


def test_authorization_policy_admits_the_named_service_accounts_only(params):
    rendered = r.render(params(client_service_accounts=["shop/checkout", "shop/cart"], trust_domain="mesh.example"))
    (policy,) = rendered.resources["authorizationpolicy.yaml"]
    assert policy["metadata"]["namespace"] == "sp-system"
    assert policy["spec"] == {
        "selector": {"matchLabels": POD_LABELS}, "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": ["mesh.example/ns/shop/sa/checkout",
                                                      "mesh.example/ns/shop/sa/cart"]}}],
                   "to": [{"operation": {"methods": ["POST"], "paths": ["/v1/inject", "/v1/traces", "/v1/invalidate"],
                                         "ports": ["8080"]}}]}]}
    assert not any("admits every mTLS workload" in w for w in rendered.warnings)


def test_authorization_policy_without_service_accounts_admits_the_namespace_and_says_so(params):
    rendered = r.render(params(namespace="shop"))
    assert rendered.resources["authorizationpolicy.yaml"][0]["spec"]["rules"][0]["from"] == [
        {"source": {"namespaces": ["shop"]}}]
    assert any("admits every mTLS workload of namespace 'shop'" in w for w in rendered.warnings)


def test_kubernetes_schema_is_strict_and_pinned(params):
    assert KUBERNETES_VERSION == "1.30"
    deployment = copy.deepcopy(_backend(r.render(params()))["Deployment"])
    deployment["spec"]["replica"] = 2
    with pytest.raises(KubeSchemaError, match=r"^Deployment spec: .*'replica' was unexpected.*Kubernetes 1.30"):
        check_kube_resource(deployment)
    deployment = copy.deepcopy(_backend(r.render(params()))["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"].pop("key")
    with pytest.raises(IstioConfigError, match=r"^Deployment spec\.template\.spec\.containers\.0\.env\.0\.valueFrom"
                                               r"\.secretKeyRef: 'key' is a required property"):
        check_manifest(deployment)


def _docs(rendered):
    return [copy.deepcopy(d) for name, items in rendered.resources.items() if name != "sidecar-secret-env.yaml"
            for d in items]


def _patch(rendered):
    return copy.deepcopy(rendered.resources["sidecar-secret-env.yaml"][0])


def test_consistency_refuses_a_policy_that_selects_other_pods(params):
    docs = _docs(r.render(params()))
    next(d for d in docs if d["kind"] == "AuthorizationPolicy")["spec"]["selector"]["matchLabels"] = {"app": "other"}
    with pytest.raises(IstioConfigError, match=r"^selector: AuthorizationPolicy spec\.selector\.matchLabels "
                                               r"\{'app': 'other'\} does not select the backend pods"):
        consistency.check_rendered(docs, None)


def test_consistency_refuses_a_policy_port_the_backend_does_not_listen_on(params):
    docs = _docs(r.render(params()))
    policy = next(d for d in docs if d["kind"] == "AuthorizationPolicy")
    policy["spec"]["rules"][0]["to"][0]["operation"]["ports"] = ["9999"]
    with pytest.raises(IstioConfigError, match=r"^AuthorizationPolicy .*9999 is not a port of the backend container"):
        consistency.check_rendered(docs, None)


def test_consistency_refuses_missing_secret_references(params):
    rendered = r.render(params())
    docs, patch = _docs(rendered), _patch(rendered)
    consistency.check_rendered(docs, patch)  # as rendered: fine
    with pytest.raises(IstioConfigError, match=r"^secrets: WasmPlugin sp-istio-cache: the filter reads "
                                               r"SP_CACHE_BACKEND_KEY, and no sidecar-secret-env.yaml"):
        consistency.check_rendered(docs, None)
    wp = next(d for d in docs if d["kind"] == "WasmPlugin")
    wp["spec"]["vmConfig"]["env"].pop()
    with pytest.raises(IstioConfigError, match=r"^secrets: .*reads SP_CACHE_SIGNING_KEY from its environment, but "
                                               r"the WasmPlugin does not expose it"):
        consistency.check_rendered(docs, patch)
    docs = _docs(rendered)
    patch["spec"]["template"]["spec"]["containers"][0]["env"][1] = {"name": "SP_CACHE_SIGNING_KEY", "value": "x" * 32}
    with pytest.raises(IstioConfigError, match=r"^secrets: sidecar-secret-env.yaml: SP_CACHE_SIGNING_KEY must come "
                                               r"from key 'signing-key' of a Secret"):
        consistency.check_rendered(docs, patch)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "SP_CACHE_BACKEND_KEY", "value": "k"}]
    with pytest.raises(IstioConfigError, match=r"^secrets: Deployment sp-cache-backend: env \['SP_CACHE_BACKEND_KEY'\] "
                                               r"are literal values"):
        consistency.check_rendered(docs, _patch(rendered))
