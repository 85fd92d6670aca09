"""Everything a rendering depends on: the filter's side (IstioParams) and the in-mesh cache
backend's (BackendParams). Plain data; ``render.check_params`` refuses bad values by field name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__

DEFAULT_SELECTOR = {"sp-istio-cache/enabled": "true"}
DEFAULT_URL = "file:///var/local/lib/wasm/sp_istio_cache.wasm"
#: the backend image another part of the workbench builds locally (no registry pulls)
DEFAULT_BACKEND_IMAGE = f"sp-istio-cache-backend:{__version__}"
DEFAULT_REDIS_URL = "redis://sp-cache-redis.sp-system.svc.cluster.local:6379/0"
#: Secret holding the keys, in the backend's namespace and in every workload namespace (docs/deploy.md)
DEFAULT_SECRET = "sp-istio-cache-keys"
#: keys of that Secret
SECRET_BACKEND_KEY = "backend-key"
SECRET_SIGNING_KEY = "signing-key"
SECRET_REDIS_URL = "redis-url"
#: plugin config key that would hold a secret literal -> (the key naming its environment variable,
#: the Secret key it is read from); filter/config.schema.json
SECRET_CONFIG_KEYS = {"backend_key": ("backend_key_env", SECRET_BACKEND_KEY),
                      "signing_key": ("signing_key_env", SECRET_SIGNING_KEY)}
#: environment of the backend container: its key, and the Redis URL when it comes from the Secret
BACKEND_KEY_ENV = "SP_CACHE_BACKEND_KEY"
REDIS_URL_ENV = "SP_CACHE_REDIS_URL"
KINDS = ("wasmplugin", "envoyfilter")
KIND_CHOICES = ("both", *KINDS)
PHASES = ("UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS")
#: Istio WasmPlugin.failStrategy (istio/api extensions/v1alpha1/wasm.proto; FAIL_RELOAD since Istio 1.27)
#: -> Envoy's Wasm failure_policy, for the EnvoyFilter variant
FAIL_STRATEGIES = {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSE": "FAIL_CLOSED", "FAIL_RELOAD": "FAIL_RELOAD"}
#: the workbench's spelling (``up --fail-strategy``) of the same three
FAIL_STRATEGY_ALIASES = {"open": "FAIL_OPEN", "closed": "FAIL_CLOSE", "reload": "FAIL_RELOAD"}
MATCH_MODES = ("CLIENT", "SERVER", "CLIENT_AND_SERVER")
PULL_POLICIES = ("IfNotPresent", "Always")


@dataclass
class BackendParams:
    """The cache backend as Kubernetes runs it: Deployment, Service, PodDisruptionBudget.

    Attributes:
        image: the backend image (``sp-istio-cache-backend:<version>``, built locally).
        replicas: pods; they share one Redis/Valkey (``--storage redis``).
        port: the HTTP port of container and Service.
        redis_url: ``redis://`` or ``rediss://`` URL; it must not carry a password (that belongs
            in the Secret: ``redis_url_from_secret``).
        redis_url_from_secret: read the URL from key ``redis-url`` of the Secret instead.
        cpu_request / memory_request / memory_limit / cpu_limit: container resources (Kubernetes
            quantities; ``cpu_limit`` None = no CPU limit, no throttling).
        namespace_labels: labels of the backend's Namespace; the injection label puts the backend
            in the mesh (the AuthorizationPolicy needs its sidecar). ``istio.io/rev=<rev>`` for
            revisioned control planes.
        run_as_user: non-root UID the container runs as.
    """

    namespace: str = "sp-system"
    name: str = "sp-cache-backend"
    image: str = DEFAULT_BACKEND_IMAGE
    image_pull_policy: str = "IfNotPresent"
    replicas: int = 2
    port: int = 8080
    redis_url: str = DEFAULT_REDIS_URL
    redis_url_from_secret: bool = False
    cpu_request: str = "250m"
    memory_request: str = "128Mi"
    memory_limit: str = "256Mi"
    cpu_limit: str | None = None
    namespace_labels: dict[str, str] = field(default_factory=lambda: {"istio-injection": "enabled"})
    run_as_user: int = 10001

    @property
    def pod_labels(self) -> dict[str, str]:
        """The labels selecting the backend's pods (Deployment, Service, PDB, AuthorizationPolicy)."""
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/part-of": "sp-istio-cache"}


@dataclass
class IstioParams:
    """The filter's side of a rendering.

    Attributes:
        module: the local build of the filter (``filter/dist/sp_istio_cache.wasm``); its sha256 is
            checked against its build record and rendered (``module.resolve_digest``).
        sha256: a digest stated with ``--sha256``: required for ``http(s)://`` and ``oci://``
            URLs, must equal the module's for ``file://`` and ``http(s)://``.
        kind: ``both`` (the two alternatives), ``wasmplugin`` or ``envoyfilter``.
        ports: destination ports the filter applies to (``match.ports``); empty = all.
        backend_url: None (default) renders the in-mesh backend of ``backend`` and points the
            filter at its Service; a URL points the filter at an existing backend instead
            (ServiceEntry, DestinationRule for https; no backend manifests, no AuthorizationPolicy).
        service_entry: with ``backend_url``, render the ServiceEntry for its host (skip it when that
            backend is already a Service the mesh knows).
        plugin_config: the chosen plugin config (``recommendation.choose_plugin_config``); the
            deployment keys ``backend_cluster`` / ``backend_authority`` are always replaced.
        client_service_accounts: ``NAMESPACE/SERVICEACCOUNT`` of the workloads the selector picks:
            the AuthorizationPolicy admits exactly their mTLS identities. Empty: every workload of
            ``namespace`` (a warning says so).
        secret_name: the Secret holding ``backend-key`` / ``signing-key`` (never a literal).
        allow_inline_secrets: accept a plugin config carrying ``backend_key`` / ``signing_key``
            literals (then readable by anyone who can read the WasmPlugin; docs/deploy.md).
    """

    module: Path | None
    sha256: str | None = None
    url: str = DEFAULT_URL
    namespace: str = "default"
    name: str = "sp-istio-cache"
    selector: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SELECTOR))
    image_pull_policy: str = "IfNotPresent"
    phase: str = "UNSPECIFIED_PHASE"
    priority: int = 0
    fail_strategy: str = "FAIL_OPEN"
    match_mode: str = "CLIENT"
    ports: list[int] = field(default_factory=list)
    backend_url: str | None = None
    backend: BackendParams = field(default_factory=BackendParams)
    plugin_config: dict[str, Any] = field(default_factory=dict)
    kind: str = "both"
    service_entry: bool = True
    client_service_accounts: list[str] = field(default_factory=list)
    trust_domain: str = "cluster.local"
    cluster_domain: str = "cluster.local"
    secret_name: str = DEFAULT_SECRET
    allow_inline_secrets: bool = False

    @property
    def istio_fail_strategy(self) -> str:
        """``fail_strategy`` in Istio's spelling (``open`` -> ``FAIL_OPEN``, ...)."""
        return FAIL_STRATEGY_ALIASES.get(self.fail_strategy, self.fail_strategy)
