"""The Istio resources, built as data: WasmPlugin, EnvoyFilter, ServiceEntry, DestinationRule,
AuthorizationPolicy. Field names and meanings from Istio's API reference
(https://istio.io/latest/docs/reference/config/), the Envoy Wasm filter fields from Envoy 1.40's
``envoy.extensions.wasm.v3`` API. Nothing here validates: ``validate.check_resource`` does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .params import FAIL_STRATEGIES, IstioParams
from .validate import IstioConfigError

#: labels of every rendered resource (``deploy status|remove`` select on them)
RESOURCE_LABELS = {"app.kubernetes.io/part-of": "sp-istio-cache", "app.kubernetes.io/managed-by": "sp-istio-cache"}
#: Wasm filter name, root id and VM id in Envoy
FILTER_NAME = "sp_istio_cache"
#: the typed_config type of Envoy's Wasm HTTP filter (envoy.extensions.filters.http.wasm.v3.Wasm)
WASM_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
#: annotation carrying the module's sha256 on the WasmPlugin / EnvoyFilter (``deploy`` re-checks it;
#: an EnvoyFilter loading a file:// module has no sha256 field of its own)
MODULE_SHA256_ANNOTATION = "sp-istio-cache/module-sha256"
#: the protocol paths the filter calls on the backend (docs/protocol.md)
BACKEND_PATHS = ("/v1/inject", "/v1/traces", "/v1/invalidate")
_CONTEXTS = {"CLIENT": ["SIDECAR_OUTBOUND"], "SERVER": ["SIDECAR_INBOUND"],
             "CLIENT_AND_SERVER": ["SIDECAR_OUTBOUND", "SIDECAR_INBOUND"]}


def metadata(name: str, namespace: str, labels: dict[str, str] | None = None,
             sha256: str | None = None) -> dict[str, Any]:
    """``metadata`` with the sp-istio-cache labels (plus ``labels``) and, for a filter resource,
    the module digest annotation."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {**(labels or {}), **RESOURCE_LABELS}}
    if sha256:
        meta["annotations"] = {MODULE_SHA256_ANNOTATION: sha256}
    return meta


def istio_cluster_name(host: str, port: int) -> str:
    """``outbound|PORT||HOST``: the cluster Istio builds for a service host and port."""
    return f"outbound|{port}||{host}"


@dataclass(frozen=True)
class Backend:
    """The cache backend as the sidecar sees it."""

    scheme: str
    host: str
    port: int

    @property
    def cluster(self) -> str:
        return istio_cluster_name(self.host, self.port)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def location(self) -> str:
        return "MESH_INTERNAL" if self.host.endswith((".svc", ".svc.cluster.local")) else "MESH_EXTERNAL"


def parse_backend_url(url: str) -> Backend:
    """``http(s)://host[:port]`` -> Backend (port defaults 80/443).

    Raises:
        IstioConfigError: naming ``backend_url``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IstioConfigError(f"backend_url: {url!r} must be http://HOST[:PORT] or https://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query:
        raise IstioConfigError(f"backend_url: {url!r} must not carry a path or query (the filter sends /v1/inject "
                               "and /v1/traces itself)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise IstioConfigError(f"backend_url: {exc}") from None
    return Backend(parts.scheme, parts.hostname.lower(), port)


def module_code(url: str, sha256: str | None) -> dict[str, Any]:
    """How the EnvoyFilter's ``vm_config.code`` fetches the module for ``url``.

    Raises:
        IstioConfigError: oci:// (Envoy cannot pull OCI images; only the WasmPlugin path can).
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        return {"local": {"filename": parts.path}}
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise IstioConfigError(f"url: {url!r} names no host to fetch the module from")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return {"remote": {"http_uri": {"uri": url, "cluster": istio_cluster_name(parts.hostname, port),
                                        "timeout": "30s"},
                           "sha256": sha256, "retry_policy": {"num_retries": 3}}}
    raise IstioConfigError(f"url: {url!r}: the EnvoyFilter variant can load file:// and http(s):// modules only; "
                           "Envoy cannot pull oci:// images (use the WasmPlugin variant)")


def wasm_plugin(p: IstioParams, sha256: str | None, config: dict[str, Any], env_keys: list[str]) -> dict[str, Any]:
    """The WasmPlugin. ``env_keys``: environment variables of the istio-proxy container the VM may
    read (``vmConfig.env`` ``valueFrom: HOST``; Envoy ``vm_config.environment_variables.host_env_keys``)."""
    match: dict[str, Any] = {"mode": p.match_mode}
    if p.ports:
        match["ports"] = [{"number": port} for port in p.ports]
    spec: dict[str, Any] = {"selector": {"matchLabels": dict(p.selector)}, "url": p.url}
    if sha256:
        spec["sha256"] = sha256
    spec.update(imagePullPolicy=p.image_pull_policy, phase=p.phase, priority=p.priority,
                failStrategy=p.istio_fail_strategy, type="HTTP", match=[match])
    if env_keys:
        spec["vmConfig"] = {"env": [{"name": key, "valueFrom": "HOST"} for key in env_keys]}
    spec["pluginConfig"] = config
    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": metadata(p.name, p.namespace, sha256=sha256), "spec": spec}


def envoy_filter(p: IstioParams, sha256: str | None, config: dict[str, Any], env_keys: list[str]) -> dict[str, Any]:
    """The EnvoyFilter alternative: the raw Envoy Wasm filter inserted before the router, one patch
    per (traffic direction, port). It sets ``allow_on_headers_stop_iteration``, which a WasmPlugin cannot."""
    vm_config: dict[str, Any] = {"vm_id": FILTER_NAME, "runtime": "envoy.wasm.runtime.v8",
                                 "code": module_code(p.url, sha256)}
    if env_keys:
        vm_config["environment_variables"] = {"host_env_keys": list(env_keys)}
    wasm = {"name": FILTER_NAME, "root_id": FILTER_NAME, "vm_config": vm_config,
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": json.dumps(config, separators=(",", ":"))},
            "failure_policy": FAIL_STRATEGIES[p.istio_fail_strategy],
            "allow_on_headers_stop_iteration": True}
    patches = []
    for context in _CONTEXTS[p.match_mode]:
        ports: list[int | None] = [*p.ports] or [None]  # None: every port
        for port in ports:
            listener: dict[str, Any] = {} if port is None else {"portNumber": port}
            listener["filterChain"] = {"filter": {"name": "envoy.filters.network.http_connection_manager",
                                                  "subFilter": {"name": "envoy.filters.http.router"}}}
            patches.append({"applyTo": "HTTP_FILTER", "match": {"context": context, "listener": listener},
                            "patch": {"operation": "INSERT_BEFORE", "value": {
                                "name": FILTER_NAME,
                                "typed_config": {"@type": WASM_FILTER_TYPE, "config": wasm}}}})
    return {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": metadata(p.name, p.namespace, sha256=sha256),
            "spec": {"workloadSelector": {"labels": dict(p.selector)}, "configPatches": patches}}


def service_entry(p: IstioParams, backend: Backend) -> dict[str, Any]:
    """Makes an external backend host known to the sidecar (so Envoy has the cluster the filter
    calls). Protocol HTTP: the filter speaks plain HTTP/1.1 to the sidecar's cluster; for https
    the DestinationRule originates TLS on this port."""
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": metadata(f"{p.name}-backend", p.namespace),
            "spec": {"hosts": [backend.host], "exportTo": ["."], "location": backend.location,
                     "resolution": "DNS",
                     "ports": [{"number": backend.port, "name": f"http-{backend.port}", "protocol": "HTTP"}]}}


def destination_rule(p: IstioParams, backend: Backend) -> dict[str, Any]:
    """TLS origination (mode SIMPLE) from the sidecar to an https backend."""
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": metadata(f"{p.name}-backend", p.namespace),
            "spec": {"host": backend.host, "exportTo": ["."],
                     "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": backend.host}}}}


def client_principals(p: IstioParams) -> list[str]:
    """mTLS peer identities of the filter's workloads: ``<trust domain>/ns/<ns>/sa/<sa>``
    (AuthorizationPolicy ``source.principals``; Istio derives them from the peer certificate).

    Raises:
        IstioConfigError: an entry that is not ``NAMESPACE/SERVICEACCOUNT``.
    """
    out = []
    for entry in p.client_service_accounts:
        ns, slash, sa = entry.partition("/")
        if not slash or not ns or not sa or "/" in sa:
            raise IstioConfigError(f"authorization.serviceAccounts[{entry!r}]: expected NAMESPACE/SERVICEACCOUNT "
                                   "(the service account the selected workloads run as)")
        out.append(f"{p.trust_domain}/ns/{ns}/sa/{sa}")
    return out


def authorization_policy(p: IstioParams) -> dict[str, Any]:
    """ALLOW only the filter's calls from the filter's workloads to the backend's pods.

    Istio matches the *source* of a request by its mTLS identity (principal, namespace), never by
    pod labels, so the WasmPlugin selector cannot be reused: the principals of the selected
    workloads' service accounts are named instead, or their namespace when none is given. Every
    other request to the backend (another namespace, a pod outside the mesh with no mTLS identity,
    a method or path the filter never sends) is denied with 403 by the backend's sidecar.
    """
    principals = client_principals(p)
    source = {"principals": principals} if principals else {"namespaces": [p.namespace]}
    b = p.backend
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": metadata(b.name, b.namespace),
            "spec": {"selector": {"matchLabels": dict(b.pod_labels)}, "action": "ALLOW",
                     "rules": [{"from": [{"source": source}],
                                "to": [{"operation": {"methods": ["POST"], "paths": list(BACKEND_PATHS),
                                                      "ports": [str(b.port)]}}]}]}}
