"""Render the Istio manifests that deploy the filter: WasmPlugin, EnvoyFilter, ServiceEntry and
(for an https backend) DestinationRule, from ``istio-configs/templates/``.

``render(params)`` builds everything in memory and validates it — plugin config against the
filter's schema, every resource against the Istio-field schemas, sha256 and label syntax, and
(unless disabled) one boot of the real local Envoy with the plugin config — and only then does
``write(rendered, out_dir)`` touch the disk. Nothing half-valid is ever written.

WasmPlugin and EnvoyFilter are two *alternatives* for the same workload: rendered side by side so
the operator can choose, never applied together (``deploy apply --kind`` picks one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
import yaml

from .. import pluginconfig
from ..paths import REPO_ROOT
from .validate import IstioConfigError, check_labels, check_manifest, check_sha256

ISTIO_CONFIGS = REPO_ROOT / "istio-configs"
TEMPLATES = ISTIO_CONFIGS / "templates"
#: where the size-limit tuning notebook writes its recommendation
TUNING_OUTPUT = REPO_ROOT / "reports" / "latest" / "recommended_plugin_config.json"
DEFAULT_SELECTOR = {"sp-istio-cache/enabled": "true"}
DEFAULT_BACKEND_URL = "http://sp-cache-backend.sp-system.svc.cluster.local:8080"
DEFAULT_URL = "file:///var/local/lib/wasm/sp_istio_cache.wasm"
KINDS = ("wasmplugin", "envoyfilter")
KIND_CHOICES = ("both", *KINDS)
PHASES = ("UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS")
FAIL_STRATEGIES = ("FAIL_OPEN", "FAIL_CLOSE", "FAIL_RELOAD")
MATCH_MODES = ("CLIENT", "SERVER", "CLIENT_AND_SERVER")
PULL_POLICIES = ("IfNotPresent", "Always")
#: methods the filter can look up without holding request headers for a body
BODILESS_METHODS = {"GET", "HEAD"}
#: the plugin config keys a deployment decides (from --backend-url); everything else is tuning
DEPLOYMENT_KEYS = ("backend_cluster", "backend_authority")
_ENVOY_FAILURE_POLICY = {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSE": "FAIL_CLOSED", "FAIL_RELOAD": "FAIL_RELOAD"}
_CONTEXTS = {"CLIENT": ["SIDECAR_OUTBOUND"], "SERVER": ["SIDECAR_INBOUND"],
             "CLIENT_AND_SERVER": ["SIDECAR_OUTBOUND", "SIDECAR_INBOUND"]}
RESOURCE_LABELS = {"app.kubernetes.io/name": "sp-istio-cache", "app.kubernetes.io/managed-by": "sp-istio-cache"}


@dataclass
class IstioParams:
    """Everything a rendering depends on.

    Attributes:
        plugin_config: the filter configuration, used verbatim except for ``DEPLOYMENT_KEYS``,
            which ``backend_url`` decides (pass ``None`` for ``default_plugin_config()``).
        sha256: of the ``.wasm`` for http/file URLs; of the OCI image (its digest) for oci://.
            None is allowed only for oci:// (the image is then not pinned).
        kind: ``both`` (the two alternatives), ``wasmplugin`` or ``envoyfilter``.
        ports: destination ports the filter applies to (``match.ports``); empty = all.
        service_entry: render the ServiceEntry for the backend host (skip it when the backend is
            already a Kubernetes Service in the mesh).
    """

    sha256: str | None
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
    backend_url: str = DEFAULT_BACKEND_URL
    plugin_config: dict[str, Any] | None = None
    kind: str = "both"
    service_entry: bool = True


@dataclass
class Rendered:
    """The files to write (name -> YAML text), their parsed resources, and warnings for the operator."""

    files: dict[str, str]
    resources: dict[str, dict[str, Any]]
    plugin_config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    boot: Any = None


# -- pieces ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    """The cache backend as the sidecar sees it."""

    scheme: str
    host: str
    port: int

    @property
    def cluster(self) -> str:
        """Istio's name for the sidecar's cluster of this host and port."""
        return istio_cluster_name(self.host, self.port)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def location(self) -> str:
        return "MESH_INTERNAL" if self.host.endswith((".svc", ".svc.cluster.local")) else "MESH_EXTERNAL"


def istio_cluster_name(host: str, port: int) -> str:
    """``outbound|PORT||HOST`` - the cluster Istio builds for a service host and port."""
    return f"outbound|{port}||{host}"


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


def default_plugin_config(tuning_output: Path | None = None) -> tuple[dict[str, Any], str]:
    """The plugin config to deploy when none is given, and where it came from: the tuning
    notebook's recommendation (``TUNING_OUTPUT``) when it exists, else every schema default
    (without the deployment keys, which ``--backend-url`` decides)."""
    tuning_output = TUNING_OUTPUT if tuning_output is None else tuning_output
    if tuning_output.exists():
        return load_plugin_config(tuning_output), str(tuning_output)
    defaults = {k: v for k, v in pluginconfig.defaults().items() if k not in DEPLOYMENT_KEYS}
    return defaults, "schema defaults (filter/config.schema.json)"


def load_plugin_config(path: Path) -> dict[str, Any]:
    """Read a plugin config JSON object (e.g. a tuning run's recommended_plugin_config.json).

    Raises:
        IstioConfigError: unreadable, not JSON, or not an object - naming the file.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IstioConfigError(f"pluginConfig: cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise IstioConfigError(f"pluginConfig: {path} must hold a JSON object, got {type(data).__name__}")
    return data


def deployed_plugin_config(config: dict[str, Any], backend: Backend) -> tuple[dict[str, Any], list[str]]:
    """``config`` with the deployment keys set for ``backend``, key order kept; plus notes when a
    deployment key of the input was replaced (a tuning run names the workbench's local cluster)."""
    out = dict(config)
    notes = []
    wanted = {"backend_cluster": backend.cluster, "backend_authority": backend.host}
    for key, value in wanted.items():
        if key in out and out[key] != value:
            notes.append(f"pluginConfig.{key}: {out[key]!r} replaced by {value!r} (decided by --backend-url)")
        out[key] = value
    return out, notes


def module_code(url: str, sha256: str | None) -> dict[str, Any]:
    """How the EnvoyFilter's ``vm_config.code`` fetches the module for ``url``.

    Raises:
        IstioConfigError: oci:// (Envoy cannot pull OCI images; only the WasmPlugin path can).
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        return {"local": parts.path}
    if parts.scheme in ("http", "https"):
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if sha256 is None:
            raise IstioConfigError("sha256: required for an http(s) module URL (Envoy checks the download against it)")
        return {"uri": url, "cluster": istio_cluster_name(parts.hostname, port), "sha256": sha256}
    raise IstioConfigError(f"url: {url!r}: the EnvoyFilter variant can load file:// and http(s):// modules only; "
                           "Envoy cannot pull oci:// images (use the WasmPlugin variant)")


def _yaml_block(value: Any, indent: int) -> str:
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    pad = " " * indent
    return "\n".join(pad + line for line in text.rstrip("\n").splitlines())


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["yaml_block"] = _yaml_block
    return env


def _check_params(p: IstioParams) -> None:
    if p.kind not in KIND_CHOICES:
        raise IstioConfigError(f"kind: {p.kind!r} is not one of {', '.join(KIND_CHOICES)}")
    for name, value, allowed in (("phase", p.phase, PHASES), ("failStrategy", p.fail_strategy, FAIL_STRATEGIES),
                                 ("match.mode", p.match_mode, MATCH_MODES),
                                 ("imagePullPolicy", p.image_pull_policy, PULL_POLICIES)):
        if value not in allowed:
            raise IstioConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    scheme = urlsplit(p.url).scheme
    if scheme not in ("oci", "http", "https", "file") or "://" not in p.url:
        raise IstioConfigError(f"url: {p.url!r} must start with oci://, http://, https:// or file://")
    if p.sha256 is None:
        if scheme != "oci":
            raise IstioConfigError(f"sha256: required for a {scheme}:// module URL (pass the built .wasm or --sha256)")
    else:
        check_sha256(p.sha256, "sha256")
    check_labels(p.selector, "selector.matchLabels")
    for port in p.ports:
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise IstioConfigError(f"match.ports: {port!r} is not a port number 1-65535")


def _kinds_for(p: IstioParams, config: dict[str, Any], warnings: list[str]) -> list[str]:
    body_methods = sorted(set(config.get("lookup_methods", ["GET", "HEAD"])) - BODILESS_METHODS)
    oci = p.url.startswith("oci://")
    if p.kind == "wasmplugin" and body_methods:
        raise IstioConfigError(
            f"pluginConfig.lookup_methods: {body_methods} need request bodies held before the lookup, which requires "
            "allow_on_headers_stop_iteration; a WasmPlugin cannot set it - render --kind envoyfilter")
    if p.kind == "envoyfilter" and oci:
        module_code(p.url, p.sha256)  # raises with the reason
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


def _check_direction(p: IstioParams, config: dict[str, Any], warnings: list[str]) -> None:
    direction = config.get("traffic_direction", "outbound")
    expected = {"CLIENT": "outbound", "SERVER": "inbound"}.get(p.match_mode)
    if expected and direction != expected:
        raise IstioConfigError(f"pluginConfig.traffic_direction: {direction!r} contradicts match mode "
                               f"{p.match_mode} (expected {expected!r})")
    if p.match_mode == "CLIENT_AND_SERVER":
        warnings.append(f"match mode CLIENT_AND_SERVER: spans are labelled traffic_direction={direction!r} "
                        "for both directions")


# -- the whole rendering -----------------------------------------------------------------------------
def render(p: IstioParams, *, wasm_for_boot: Path | None = None) -> Rendered:
    """Render and validate every manifest for ``p``; write nothing.

    ``wasm_for_boot``: when given, the plugin config must also boot the real local Envoy with that
    module (``validate.boot_in_envoy``); None skips that check.

    Raises:
        IstioConfigError: a parameter or resource Istio would refuse; the message names the field.
        PluginConfigError: the plugin config fails the filter's schema (names the key).
    """
    _check_params(p)
    backend = parse_backend_url(p.backend_url)
    warnings: list[str] = []
    if p.plugin_config is None:
        source_config, source = default_plugin_config()
        warnings.append(f"pluginConfig from {source}")
    else:
        source_config = p.plugin_config
    config, notes = deployed_plugin_config(source_config, backend)
    warnings += notes
    known = pluginconfig.schema()["properties"]
    unknown = [k for k in config if k not in known]
    if unknown:
        raise pluginconfig.PluginConfigError(
            f"pluginConfig.{unknown[0]}: unknown key (not in filter/config.schema.json; known: {', '.join(known)})")
    try:
        pluginconfig.validate(config)
    except pluginconfig.PluginConfigError as exc:
        raise pluginconfig.PluginConfigError(str(exc).replace("plugin config $", "pluginConfig", 1)) from None
    _check_direction(p, config, warnings)
    kinds = _kinds_for(p, config, warnings)
    if p.fail_strategy != "FAIL_OPEN":
        warnings.append(f"failStrategy {p.fail_strategy}: a failing cache module will affect traffic "
                        "(FAIL_OPEN is the safe choice for a cache)")

    env = _env()
    common = dict(name=p.name, namespace=p.namespace, selector=p.selector, resource_labels=RESOURCE_LABELS)
    files: dict[str, str] = {}
    if "wasmplugin" in kinds:
        files["wasmplugin.yaml"] = env.get_template("wasmplugin.yaml.j2").render(
            **common, url=p.url, sha256=p.sha256, image_pull_policy=p.image_pull_policy, phase=p.phase,
            priority=p.priority, fail_strategy=p.fail_strategy, match_mode=p.match_mode, ports=p.ports,
            plugin_config=config)
    if "envoyfilter" in kinds:
        patches = [{"context": ctx, "port": port} for ctx in _CONTEXTS[p.match_mode] for port in (p.ports or [None])]
        files["envoyfilter.yaml"] = env.get_template("envoyfilter.yaml.j2").render(
            **common, patches=patches, code=module_code(p.url, p.sha256),
            plugin_config_json=json.dumps(config, separators=(",", ":")),
            failure_policy=_ENVOY_FAILURE_POLICY[p.fail_strategy])
    backend_vars = dict(backend_host=backend.host, backend_port=backend.port, backend_cluster=backend.cluster,
                        backend_location=backend.location)
    if p.service_entry:
        files["serviceentry.yaml"] = env.get_template("serviceentry.yaml.j2").render(**common, **backend_vars)
    if backend.tls:
        files["destinationrule.yaml"] = env.get_template("destinationrule.yaml.j2").render(**common, **backend_vars)

    resources = {}
    for fname, text in files.items():
        try:
            doc = yaml.safe_load(text)
            resources[fname] = check_manifest(doc)
        except yaml.YAMLError as exc:  # a template bug, not a user error: still refuse to write
            raise IstioConfigError(f"{fname}: rendered YAML does not parse: {exc}") from None
        except IstioConfigError as exc:
            raise IstioConfigError(f"{fname}: {exc}") from None
    _check_roundtrip(resources, config)

    rendered = Rendered(files=files, resources=resources, plugin_config=config, warnings=warnings)
    if wasm_for_boot is not None:
        from .validate import boot_in_envoy

        rendered.boot = boot_in_envoy(config, wasm_for_boot)
        if not rendered.boot.ok:
            raise IstioConfigError(f"pluginConfig: does not load in the real Envoy: {rendered.boot.message}")
    return rendered


def _check_roundtrip(resources: dict[str, dict[str, Any]], config: dict[str, Any]) -> None:
    """The plugin config each resource carries is exactly the validated one."""
    wp = resources.get("wasmplugin.yaml")
    if wp is not None and wp["spec"]["pluginConfig"] != config:
        raise IstioConfigError("wasmplugin.yaml spec.pluginConfig: differs from the validated plugin config")
    ef = resources.get("envoyfilter.yaml")
    if ef is not None:
        for i, patch in enumerate(ef["spec"]["configPatches"]):
            value = patch["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]
            if json.loads(value) != config:
                raise IstioConfigError(f"envoyfilter.yaml spec.configPatches[{i}] configuration: differs from the "
                                       "validated plugin config")


#: files `write` owns in an output directory (removed when a new rendering does not produce them)
OWNED_FILES = ("wasmplugin.yaml", "envoyfilter.yaml", "serviceentry.yaml", "destinationrule.yaml")


def write(rendered: Rendered, out_dir: Path) -> list[Path]:
    """Write the rendered files into ``out_dir``; remove owned files this rendering did not
    produce (a stale alternative left beside a new one could be applied by mistake)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in OWNED_FILES:
        path = out_dir / name
        if name in rendered.files:
            path.write_text(rendered.files[name])
            written.append(path)
        elif path.exists() and "Rendered by `sp-istio-cache istio render`" in path.read_text(errors="replace"):
            path.unlink()
    return written
