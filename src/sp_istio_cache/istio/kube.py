"""The Kubernetes side, built as data: the cache backend (Namespace, ServiceAccount, Deployment,
Service, PodDisruptionBudget) and the patch that gives each filter workload's istio-proxy
container its keys from a Secret. Validated by ``kubeschema`` against the Kubernetes OpenAPI
schemas; secrets are only ever *referenced* (``secretKeyRef``), never written here."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .. import __version__
from .mesh import RESOURCE_LABELS, metadata
from .params import BACKEND_KEY_ENV, REDIS_URL_ENV, SECRET_BACKEND_KEY, SECRET_REDIS_URL, BackendParams, IstioParams
from .validate import IstioConfigError

HEALTH_PATH = "/healthz"
#: the container Istio injects; a container of this name in the pod spec is merged into it
#: (https://istio.io/latest/docs/setup/additional-setup/sidecar-injection/#customizing-injection)
PROXY_CONTAINER = "istio-proxy"


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    """An environment variable taken from key ``key`` of Secret ``secret``."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def namespace(b: BackendParams) -> dict[str, Any]:
    """The backend's Namespace, labelled for sidecar injection."""
    meta = metadata(b.namespace, b.namespace, b.namespace_labels)
    del meta["namespace"]
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def service_account(b: BackendParams) -> dict[str, Any]:
    """The backend's own identity (its mTLS principal); no API token (the backend never calls the API)."""
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(b.name, b.namespace, b.pod_labels),
            "automountServiceAccountToken": False}


def redis_argument(b: BackendParams) -> str:
    """``--redis-url`` value: the URL, or ``$(SP_CACHE_REDIS_URL)`` (expanded by the kubelet from
    the Secret) with ``redis_url_from_secret``.

    Raises:
        IstioConfigError: a URL that is not redis(s)://, or that carries a password.
    """
    if b.redis_url_from_secret:
        return f"$({REDIS_URL_ENV})"
    parts = urlsplit(b.redis_url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise IstioConfigError(f"backend.redis_url: {b.redis_url!r} must be redis://HOST[:PORT][/DB] or rediss://...")
    if parts.password is not None:
        raise IstioConfigError("backend.redis_url: carries a password, which would be a literal in the Deployment; "
                               f"put the URL in key {SECRET_REDIS_URL!r} of the Secret and use --redis-url-from-secret")
    return b.redis_url


def _resources(b: BackendParams) -> dict[str, Any]:
    limits = {"memory": b.memory_limit}
    if b.cpu_limit:
        limits["cpu"] = b.cpu_limit
    return {"requests": {"cpu": b.cpu_request, "memory": b.memory_request}, "limits": limits}


def deployment(b: BackendParams, secret: str, max_variants: int) -> dict[str, Any]:
    """The backend Deployment, keeping ``max_variants`` variants per key (the filter's value):
    non-root, read-only root filesystem, no capabilities, seccomp RuntimeDefault; probes on
    ``/healthz``; the backend key from ``secret`` (env ``SP_CACHE_BACKEND_KEY``); ``--storage
    redis`` so every replica shares one store. The pod template's ``prometheus.io/*`` annotations
    let Istio merge the backend's ``/metrics`` into the sidecar's scrape endpoint (port 15020), so
    Prometheus never needs to pass the AuthorizationPolicy."""
    env = [secret_env(BACKEND_KEY_ENV, secret, SECRET_BACKEND_KEY)]
    if b.redis_url_from_secret:
        env.append(secret_env(REDIS_URL_ENV, secret, SECRET_REDIS_URL))
    probe = {"httpGet": {"path": HEALTH_PATH, "port": "http"}, "timeoutSeconds": 2, "failureThreshold": 3}
    container = {
        "name": "backend", "image": b.image, "imagePullPolicy": b.image_pull_policy,
        "args": ["--host", "0.0.0.0", "--port", str(b.port), "--storage", "redis", "--redis-url", redis_argument(b),
                 "--max-variants", str(max_variants)],
        "env": env,
        "ports": [{"name": "http", "containerPort": b.port, "protocol": "TCP"}],
        "readinessProbe": {**probe, "periodSeconds": 5},
        "livenessProbe": {**probe, "initialDelaySeconds": 5, "periodSeconds": 10},
        "resources": _resources(b),
        "securityContext": {"runAsNonRoot": True, "runAsUser": b.run_as_user, "runAsGroup": b.run_as_user,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_meta = {"labels": dict(b.pod_labels),
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(b.port),
                                "prometheus.io/path": "/metrics"}}
    pod_spec = {"serviceAccountName": b.name, "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
                "terminationGracePeriodSeconds": 30}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": metadata(b.name, b.namespace, {**b.pod_labels, "app.kubernetes.io/version": __version__}),
            "spec": {"replicas": b.replicas, "revisionHistoryLimit": 5,
                     "selector": {"matchLabels": dict(b.pod_labels)},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                     "template": {"metadata": pod_meta, "spec": pod_spec}}}


def service(b: BackendParams) -> dict[str, Any]:
    """The backend Service; port name ``http`` (and ``appProtocol``) tells Istio it is HTTP."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(b.name, b.namespace, b.pod_labels),
            "spec": {"selector": dict(b.pod_labels),
                     "ports": [{"name": "http", "port": b.port, "targetPort": "http", "protocol": "TCP",
                                "appProtocol": "http"}]}}


def pod_disruption_budget(b: BackendParams) -> dict[str, Any]:
    """At most one backend pod down for voluntary disruptions (node drains); never blocks a drain,
    even with one replica."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": metadata(b.name, b.namespace, b.pod_labels),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(b.pod_labels)}}}


def backend_resources(b: BackendParams, secret: str, max_variants: int) -> list[dict[str, Any]]:
    """ServiceAccount, Deployment, Service, PodDisruptionBudget, in apply order."""
    return [service_account(b), deployment(b, secret, max_variants), service(b), pod_disruption_budget(b)]


def sidecar_env_container(p: IstioParams, env: list[tuple[str, str]]) -> dict[str, Any]:
    """The ``istio-proxy`` container fragment that gives the sidecar its keys: each
    (environment variable, Secret key) pair as a ``secretKeyRef`` on ``p.secret_name``.
    ``image: auto`` is replaced by the injector with the proxy image."""
    return {"name": PROXY_CONTAINER, "image": "auto",
            "env": [secret_env(name, p.secret_name, key) for name, key in env]}


def sidecar_env_patch(p: IstioParams, env: list[tuple[str, str]]) -> dict[str, Any]:
    """A strategic-merge patch for each Deployment the selector picks (``kubectl patch deployment
    NAME --type strategic --patch-file sidecar-secret-env.yaml``): Istio's injector merges a
    container named ``istio-proxy`` of the pod spec into the sidecar it injects (with native
    sidecars it moves it to initContainers first), and Envoy inherits the container's
    environment, where ``host_env_keys`` lets the Wasm VM read it."""
    return {"spec": {"template": {"spec": {"containers": [sidecar_env_container(p, env)]}}}}


__all__ = ["HEALTH_PATH", "PROXY_CONTAINER", "RESOURCE_LABELS", "backend_resources",
           "deployment", "namespace", "pod_disruption_budget", "redis_argument", "service", "service_account",
           "sidecar_env_container", "sidecar_env_patch"]
