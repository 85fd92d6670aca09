"""Render every manifest that deploys the cache: the filter (WasmPlugin or EnvoyFilter), the
cache backend (Namespace, ServiceAccount, Deployment, Service, PodDisruptionBudget), the
AuthorizationPolicy that admits only the filter's workloads, ServiceEntry/DestinationRule for an
external backend, and the patch that gives the sidecars their keys from a Secret.

Every resource is built as data (``mesh``, ``kube``), validated — Istio resources against the
project's Istio schemas, Kubernetes ones against the Kubernetes OpenAPI schemas, references across
them by ``consistency``, the module against its build record, and (optionally) the plugin config
by one boot of the real local Envoy — and only then dumped to YAML by ``write``. Nothing
half-valid is ever written.

WasmPlugin and EnvoyFilter are two *alternatives* for the same workload: rendered side by side so
the operator can choose, never applied together (``deploy apply --kind`` picks one).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .. import pluginconfig
from ..paths import REPO_ROOT
from . import consistency, kube, mesh
from .module import resolve_digest
from .params import (
    FAIL_STRATEGIES,
    FAIL_STRATEGY_ALIASES,
    KIND_CHOICES,
    KINDS,
    MATCH_MODES,
    PHASES,
    PULL_POLICIES,
    SECRET_CONFIG_KEYS,
    IstioParams,
)
from .validate import IstioConfigError, check_labels, check_manifest

ISTIO_CONFIGS = REPO_ROOT / "istio-configs"
#: where the size-limit tuning step writes its recommendation (read by ``recommendation``)
TUNING_OUTPUT = REPO_ROOT / "reports" / "latest" / "recommended_plugin_config.json"
#: methods the filter can look up without holding request headers for a body
BODILESS_METHODS = {"GET", "HEAD"}
#: the plugin config keys a deployment decides (the backend's address); everything else is tuning
DEPLOYMENT_KEYS = ("backend_cluster", "backend_authority")
MARK = "Rendered by `sp-istio-cache istio render`"
#: the files a rendering may produce, in apply order, with the comment heading each
FILES = {
    "namespace.yaml": "The cache backend's namespace, labelled for sidecar injection (the AuthorizationPolicy "
                      "needs the backend's sidecar).",
    "backend.yaml": "The cache backend: ServiceAccount, Deployment (--storage redis, key from the Secret), "
                    "Service, PodDisruptionBudget.",
    "authorizationpolicy.yaml": "Only the filter's workloads (mTLS identities) may call the backend, and only "
                                "with the filter's calls.",
    "serviceentry.yaml": "Makes the external backend host known to the sidecar (the cluster the filter calls).",
    "destinationrule.yaml": "The backend URL is https: the sidecar originates TLS (mode SIMPLE) to it.",
    "wasmplugin.yaml": "ALTERNATIVE to envoyfilter.yaml: apply exactly one of the two to a workload. A WasmPlugin "
                       "cannot set allow_on_headers_stop_iteration, so it serves bodiless lookups only (GET/HEAD).",
    "envoyfilter.yaml": "ALTERNATIVE to wasmplugin.yaml: apply exactly one. It carries "
                        "allow_on_headers_stop_iteration (lookups of requests with a body; Envoy >= 1.35).",
    "sidecar-secret-env.yaml": "NOT a resource: a strategic-merge patch for each Deployment the selector picks, "
                               "giving its istio-proxy container the keys from the Secret:\n"
                               "  kubectl -n NAMESPACE patch deployment NAME --type strategic --patch-file "
                               "sidecar-secret-env.yaml\n(docs/deploy.md, Secrets)",
}
OWNED_FILES = tuple(FILES)
_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass
class Rendered:
    """What ``render`` built: file name -> YAML text, file name -> its resources (the patch file:
    the patch), the plugin config, the module digest, notes for the operator, the Envoy boot."""

    files: dict[str, str]
    resources: dict[str, list[dict[str, Any]]]
    plugin_config: dict[str, Any]
    sha256: str | None
    warnings: list[str] = field(default_factory=list)
    boot: Any = None


def schema_default_config() -> dict[str, Any]:
    """Every schema default except the deployment keys (which the backend's address decides)."""
    return {k: v for k, v in pluginconfig.defaults().items() if k not in DEPLOYMENT_KEYS}


def backend_of(p: IstioParams) -> mesh.Backend:
    """The backend the filter calls: ``backend_url``, else the in-mesh backend's Service."""
    if p.backend_url is not None:
        return mesh.parse_backend_url(p.backend_url)
    b = p.backend
    return mesh.Backend("http", f"{b.name}.{b.namespace}.svc.{p.cluster_domain}", b.port)


def deployed_plugin_config(config: dict[str, Any], backend: mesh.Backend) -> tuple[dict[str, Any], list[str]]:
    """``config`` with the deployment keys set for ``backend``, key order kept; plus notes when a
    deployment key of the input was replaced (a tuning run names the workbench's local cluster)."""
    out = dict(config)
    notes = []
    for key, value in {"backend_cluster": backend.cluster, "backend_authority": backend.host}.items():
        if key in out and out[key] != value:
            notes.append(f"pluginConfig.{key}: {out[key]!r} replaced by {value!r} (the backend's address)")
        out[key] = value
    return out, notes


def _check_name(value: str, field_name: str) -> None:
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL_RE.match(value):
        raise IstioConfigError(f"{field_name}: {value!r} must be a DNS-1123 label (lower-case alphanumerics and "
                               "'-', at most 63 characters)")


def check_params(p: IstioParams) -> None:
    """Refuse parameter values Istio or Kubernetes would refuse or misapply, naming the field."""
    if p.kind not in KIND_CHOICES:
        raise IstioConfigError(f"kind: {p.kind!r} is not one of {', '.join(KIND_CHOICES)}")
    strategies = (*FAIL_STRATEGIES, *FAIL_STRATEGY_ALIASES)
    for name, value, allowed in (("phase", p.phase, PHASES), ("failStrategy", p.fail_strategy, strategies),
                                 ("match.mode", p.match_mode, MATCH_MODES),
                                 ("imagePullPolicy", p.image_pull_policy, PULL_POLICIES),
                                 ("backend.imagePullPolicy", p.backend.image_pull_policy, PULL_POLICIES)):
        if value not in allowed:
            raise IstioConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    scheme = urlsplit(p.url).scheme
    if scheme not in ("oci", "http", "https", "file") or "://" not in p.url:
        raise IstioConfigError(f"url: {p.url!r} must start with oci://, http://, https:// or file://")
    check_labels(p.selector, "selector.matchLabels")
    for port in p.ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise IstioConfigError(f"match.ports: {port!r} is not a port number 1-65535")
    twice = sorted({port for port in p.ports if p.ports.count(port) > 1})
    if twice:
        raise IstioConfigError(f"match.ports: {twice} listed more than once")
    for value, name in ((p.namespace, "namespace"), (p.backend.namespace, "backend.namespace"),
                        (p.backend.name, "backend.name")):
        _check_name(value, name)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", p.secret_name or "") or len(p.secret_name) > 253:
        raise IstioConfigError(f"secretName: {p.secret_name!r} must name a Secret (a DNS-1123 subdomain): the keys "
                               "are always referenced from a Secret, never written into a manifest")
    b = p.backend
    if b.replicas < 1 or not 1 <= b.port <= 65535:
        raise IstioConfigError("backend.replicas / backend.port: replicas >= 1 and a port 1-65535")
    if not b.image or any(c.isspace() for c in b.image):
        raise IstioConfigError(f"backend.image: {b.image!r} is not an image reference")
    for name in ("cpu_request", "memory_request", "memory_limit", "cpu_limit"):
        value = getattr(b, name)
        if value is not None and not _QUANTITY_RE.match(str(value)):
            raise IstioConfigError(f"backend.{name}: {value!r} is not a Kubernetes quantity (e.g. 250m, 128Mi)")
    check_labels(b.namespace_labels, "backend.namespaceLabels")
    if not p.trust_domain or "/" in p.trust_domain:
        raise IstioConfigError(f"trustDomain: {p.trust_domain!r} must be the mesh trust domain, e.g. cluster.local")


def check_plugin_config(p: IstioParams, config: dict[str, Any], warnings: list[str]) -> None:
    """The filter's schema, the direction, and no secret literal unless allowed.

    Raises:
        PluginConfigError: unknown key or schema violation, as ``pluginConfig.<key>: ...``.
        IstioConfigError: a direction contradicting the match mode; an inline secret.
    """
    known = pluginconfig.schema()["properties"]
    unknown = [k for k in config if k not in known]
    if unknown:
        raise pluginconfig.PluginConfigError(
            f"pluginConfig.{unknown[0]}: unknown key (not in filter/config.schema.json; known: {', '.join(known)})")
    try:
        pluginconfig.validate(config)
    except pluginconfig.PluginConfigError as exc:
        raise pluginconfig.PluginConfigError(str(exc).replace("plugin config $", "pluginConfig", 1)) from None
    direction = config.get("traffic_direction", "outbound")
    expected = {"CLIENT": "outbound", "SERVER": "inbound"}.get(p.match_mode)
    if expected and direction != expected:
        raise IstioConfigError(f"pluginConfig.traffic_direction: {direction!r} contradicts match mode "
                               f"{p.match_mode} (expected {expected!r})")
    if p.match_mode == "CLIENT_AND_SERVER":
        warnings.append(f"match mode CLIENT_AND_SERVER: spans are labelled traffic_direction={direction!r} "
                        "for both directions")
    for literal, (env_key, _) in SECRET_CONFIG_KEYS.items():
        if config.get(literal):
            if not p.allow_inline_secrets:
                raise IstioConfigError(
                    f"pluginConfig.{literal}: a literal secret would be readable by anyone who can read the "
                    f"WasmPlugin/EnvoyFilter and by every proxy's config dump; leave it empty so the filter reads "
                    f"${config.get(env_key, pluginconfig.defaults()[env_key])} from the Secret, or pass "
                    "--allow-inline-secrets")
            warnings.append(f"pluginConfig.{literal} is a literal in the rendered manifests (--allow-inline-secrets): "
                            "keep these files out of version control")


def _kinds_for(p: IstioParams, config: dict[str, Any], warnings: list[str]) -> list[str]:
    body_methods = sorted(set(config.get("lookup_methods", ["GET", "HEAD"])) - BODILESS_METHODS)
    oci = p.url.startswith("oci://")
    if p.kind == "wasmplugin" and body_methods:
        raise IstioConfigError(
            f"pluginConfig.lookup_methods: {body_methods} need request bodies held before the lookup, which requires "
            "allow_on_headers_stop_iteration; a WasmPlugin cannot set it - render --kind envoyfilter")
    if p.kind == "envoyfilter" and oci:
        mesh.module_code(p.url, p.sha256)  # raises with the reason
    if p.kind != "both":
        return [p.kind]
    if body_methods and oci:
        raise IstioConfigError(
            f"url: lookup_methods {body_methods} need the EnvoyFilter variant, which cannot pull oci:// images; "
            "publish the module over http(s) or mount it (file://)")
    if body_methods:
        warnings.append(f"pluginConfig.lookup_methods has {body_methods}: only envoyfilter.yaml is rendered "
                        "(a WasmPlugin cannot set allow_on_headers_stop_iteration)")
        return ["envoyfilter"]
    if oci:
        warnings.append("url is oci://: only wasmplugin.yaml is rendered (Envoy itself cannot pull OCI images)")
        return ["wasmplugin"]
    return list(KINDS)


def _operator_notes(p: IstioParams) -> list[str]:
    notes = []
    strategy = p.istio_fail_strategy
    if strategy == "FAIL_RELOAD":
        notes.append("failStrategy FAIL_RELOAD needs Istio >= 1.27; a trap answers 503 for about 1 s on that worker "
                     "until the new VM is up (docs/deploy.md)")
    elif strategy == "FAIL_CLOSE":
        notes.append("failStrategy FAIL_CLOSE: after a VM failure every request of the selected workloads gets a 503 "
                     "until their pods restart (docs/deploy.md)")
    if p.backend_url is None and not p.client_service_accounts:
        notes.append(f"authorizationpolicy.yaml admits every mTLS workload of namespace {p.namespace!r}; pass "
                     "--client-service-account NAMESPACE/SA for the selected workloads only")
    if p.backend_url is None and p.backend.replicas == 1:
        notes.append("backend.replicas 1: a node drain or a crash takes the backend away (the filter then fails "
                     "open: every request goes upstream)")
    return notes


def _build(p: IstioParams, sha256: str | None, config: dict[str, Any], kinds: list[str],
           backend: mesh.Backend) -> dict[str, list[dict[str, Any]]]:
    env = consistency.secret_env_needed(config)
    env_keys = [name for name, _ in env]
    docs: dict[str, list[dict[str, Any]]] = {}
    if p.backend_url is None:
        docs["namespace.yaml"] = [kube.namespace(p.backend)]
        max_variants = config.get("max_variants", pluginconfig.defaults()["max_variants"])
        docs["backend.yaml"] = kube.backend_resources(p.backend, p.secret_name, max_variants)
        docs["authorizationpolicy.yaml"] = [mesh.authorization_policy(p)]
    else:
        if p.service_entry:
            docs["serviceentry.yaml"] = [mesh.service_entry(p, backend)]
        if backend.tls:
            docs["destinationrule.yaml"] = [mesh.destination_rule(p, backend)]
    if "wasmplugin" in kinds:
        docs["wasmplugin.yaml"] = [mesh.wasm_plugin(p, sha256, config, env_keys)]
    if "envoyfilter" in kinds:
        docs["envoyfilter.yaml"] = [mesh.envoy_filter(p, sha256, config, env_keys)]
    if env:
        docs["sidecar-secret-env.yaml"] = [kube.sidecar_env_patch(p, env)]
    return docs


class _Dumper(yaml.SafeDumper):
    """Plain YAML: a dict used twice (the probes' httpGet) is written twice, never as an anchor."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(name: str, docs: list[dict[str, Any]]) -> str:
    """YAML text of one file: the heading comment, then the documents (``---`` between them)."""
    head = "".join(f"# {line}\n" for line in [f"{MARK}. Re-render instead of editing.", *FILES[name].splitlines()])
    body = "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                                  width=1000) for d in docs)
    return head + body


def _validate(docs: dict[str, list[dict[str, Any]]]) -> None:
    from .kubeschema import KubeSchemaError, check_definition

    for name, items in docs.items():
        try:
            if name == "sidecar-secret-env.yaml":
                for container in items[0]["spec"]["template"]["spec"]["containers"]:
                    check_definition(container, "io.k8s.api.core.v1.Container", "istio-proxy container")
            else:
                for doc in items:
                    check_manifest(doc)
        except (IstioConfigError, KubeSchemaError) as exc:
            raise IstioConfigError(f"{name}: {exc}") from None
    patch = docs.get("sidecar-secret-env.yaml", [None])[0]
    consistency.check_rendered([d for n, items in docs.items() if n != "sidecar-secret-env.yaml" for d in items], patch)


def render(p: IstioParams, *, boot: bool = False) -> Rendered:
    """Build, validate and dump every manifest for ``p``; write nothing.

    ``boot``: also start the real local Envoy once with the plugin config and ``p.module``
    (``validate.boot_in_envoy``), giving the VM throwaway keys in the variables it reads.

    Raises:
        IstioConfigError: a parameter or resource Istio or Kubernetes would refuse, a module whose
            digest is not its build record's, a broken reference; the message names the field.
        PluginConfigError: the plugin config fails the filter's schema (names the key).
    """
    check_params(p)
    sha256 = resolve_digest(p.url, p.sha256, p.module)
    backend = backend_of(p)
    config, warnings = deployed_plugin_config(p.plugin_config, backend)
    check_plugin_config(p, config, warnings)
    mesh.client_principals(p)  # refuses a malformed NAMESPACE/SA before anything is built
    kinds = _kinds_for(p, config, warnings)
    docs = _build(p, sha256, config, kinds, backend)
    _validate(docs)
    files = {name: dump(name, items) for name, items in docs.items()}
    for name, text in files.items():
        if [d for d in yaml.safe_load_all(text) if d is not None] != docs[name]:
            raise IstioConfigError(f"{name}: the YAML does not read back as the validated resources")
    rendered = Rendered(files=files, resources=docs, plugin_config=config, sha256=sha256,
                        warnings=warnings + _operator_notes(p))
    if boot:
        from .validate import boot_in_envoy

        if p.module is None:
            raise IstioConfigError("module: the Envoy check needs the local module (--wasm)")
        vm_env = {name: secrets.token_hex(32) for name, _ in consistency.secret_env_needed(config)}
        rendered.boot = boot_in_envoy(config, p.module, vm_env=vm_env)
        if not rendered.boot.ok:
            raise IstioConfigError(f"pluginConfig: does not load in the real Envoy: {rendered.boot.message}")
    return rendered


def write(rendered: Rendered, out_dir: Path) -> list[Path]:
    """Write the rendered files into ``out_dir``; remove files of earlier renderings that this one
    did not produce (a stale alternative left beside a new one could be applied by mistake)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in OWNED_FILES:
        path = out_dir / name
        if name in rendered.files:
            path.write_text(rendered.files[name])
            written.append(path)
        elif path.exists() and MARK in path.read_text(errors="replace"):
            path.unlink()
    return written
