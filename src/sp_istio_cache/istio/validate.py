"""Checks run before any manifest is written or applied.

- ``check_manifest``: one rendered resource against its schema: an Istio resource against the
  schema of the Istio fields we use (``schemas/*.schema.json``, written from Istio's API
  reference), a Kubernetes resource against the Kubernetes OpenAPI schema (``kubeschema``);
- ``check_sha256`` / ``check_labels``: the formats Istio and Kubernetes accept, with messages that
  name the field;
- ``inspect_module``: the ``.wasm`` is a core module exporting the proxy-wasm ABI;
- ``boot_in_envoy``: the plugin configuration loads and configures the filter in the real local
  Envoy (the equivalent bootstrap from ``envoyconf``, started once and stopped).

Every refusal is an ``IstioConfigError`` whose message starts with the field it is about.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).parent / "schemas"
#: manifest kind -> schema file
KIND_SCHEMAS = {
    "WasmPlugin": "wasmplugin.schema.json",
    "EnvoyFilter": "envoyfilter.schema.json",
    "ServiceEntry": "serviceentry.schema.json",
    "DestinationRule": "destinationrule.schema.json",
    "AuthorizationPolicy": "authorizationpolicy.schema.json",
}
#: Kubernetes kinds rendered (validated by ``kubeschema`` against the Kubernetes OpenAPI schemas)
KUBE_KINDS = ("Namespace", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget")
SHA256_RE = re.compile(r"^[a-f0-9]{64}$")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: exports Envoy needs from a proxy-wasm 0.2.1 HTTP filter
REQUIRED_EXPORTS = (
    "proxy_abi_version_0_2_1",
    "proxy_on_memory_allocate",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_context_create",
    "proxy_on_request_headers",
    "proxy_on_response_headers",
    "proxy_on_http_call_response",
    "proxy_on_done",
    "proxy_on_delete",
)


class IstioConfigError(ValueError):
    """A parameter or rendered resource Istio would refuse or misapply; the message names the field."""


# -- formats -------------------------------------------------------------------------------------
def check_sha256(value: str, field_name: str = "sha256") -> str:
    """Return ``value`` when it is 64 lower-case hex characters (what Istio's CRD accepts)."""
    if not isinstance(value, str) or not SHA256_RE.match(value):
        shown = value if isinstance(value, str) else type(value).__name__
        length = len(value) if isinstance(value, str) else "?"
        raise IstioConfigError(
            f"{field_name}: {shown!r} is not a SHA-256 digest (need 64 lower-case hex characters, got {length})")
    return value


def check_labels(labels: dict[str, str], field_name: str) -> dict[str, str]:
    """Kubernetes label syntax: key ``[prefix/]name`` (prefix a DNS subdomain <= 253, name <= 63 of
    ``[A-Za-z0-9_.-]`` starting/ending alphanumeric), value empty or like a name.

    Raises:
        IstioConfigError: naming ``field_name[key]`` and what is wrong.
    """
    if not labels:
        raise IstioConfigError(f"{field_name}: at least one label is needed (an empty selector selects every "
                               "workload of the namespace)")
    for key, value in labels.items():
        where = f"{field_name}[{key!r}]"
        if not isinstance(key, str) or not key:
            raise IstioConfigError(f"{where}: empty label key")
        prefix, slash, name = key.rpartition("/")
        if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
            raise IstioConfigError(f"{where}: label key prefix {prefix!r} must be a DNS subdomain "
                                   "(lower-case alphanumerics, '-', '.', at most 253 characters)")
        if len(name) > 63 or not _LABEL_NAME_RE.match(name):
            raise IstioConfigError(f"{where}: label name {name!r} must be at most 63 characters of [A-Za-z0-9_.-], "
                                   "starting and ending with an alphanumeric")
        if not isinstance(value, str):
            raise IstioConfigError(f"{where}: label value must be a string, got {type(value).__name__}")
        if value and (len(value) > 63 or not _LABEL_NAME_RE.match(value)):
            raise IstioConfigError(f"{where}: label value {value!r} must be empty or at most 63 characters of "
                                   "[A-Za-z0-9_.-], starting and ending with an alphanumeric")
    return labels


# -- manifests against the Istio-field schemas -------------------------------------------------
@cache
def _registry() -> Registry:
    resources = []
    for path in SCHEMA_DIR.glob("*.schema.json"):
        doc = json.loads(path.read_text())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


@cache
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / KIND_SCHEMAS[kind]).read_text())
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out or p else p)
    return out.lstrip(".")


def check_manifest(doc: Any) -> dict[str, Any]:
    """Validate one resource against the schema for its ``kind``; return it.

    Raises:
        IstioConfigError: ``<Kind> <field.path>: <complaint>`` for the first error.
    """
    from .kubeschema import KubeSchemaError, check_kube_resource

    if not isinstance(doc, dict):
        raise IstioConfigError(f"manifest: expected a mapping, got {type(doc).__name__}")
    kind = doc.get("kind")
    if kind in KUBE_KINDS:
        try:
            return check_kube_resource(doc)
        except KubeSchemaError as exc:
            raise IstioConfigError(str(exc)) from None
    if kind not in KIND_SCHEMAS:
        raise IstioConfigError(f"kind: {kind!r} is not one of {', '.join((*KIND_SCHEMAS, *KUBE_KINDS))}")
    errors = sorted(_validator(kind).iter_errors(doc),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        best = jsonschema.exceptions.best_match([err])
        raise IstioConfigError(f"{kind} {_path(best.absolute_path) or '(root)'}: {best.message}")
    if kind == "WasmPlugin":
        check_labels(doc["spec"]["selector"]["matchLabels"], "spec.selector.matchLabels")
    elif kind == "EnvoyFilter":
        check_labels(doc["spec"]["workloadSelector"]["labels"], "spec.workloadSelector.labels")
    elif kind == "AuthorizationPolicy":
        check_labels(doc["spec"]["selector"]["matchLabels"], "spec.selector.matchLabels")
    return doc


def check_manifest_file(path: Path) -> list[dict[str, Any]]:
    """Parse a rendered YAML file (one or more documents) and check every resource in it."""
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise IstioConfigError(f"{path}: not valid YAML: {exc}") from None
    if not docs:
        raise IstioConfigError(f"{path}: no resource in the file")
    for doc in docs:
        try:
            check_manifest(doc)
        except IstioConfigError as exc:
            raise IstioConfigError(f"{path}: {exc}") from None
    return docs


# -- the module ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModuleReport:
    """What ``inspect_module`` found in a ``.wasm`` file."""

    path: Path
    size_bytes: int
    sha256: str
    exports: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.missing


def sha256_file(path: Path) -> str:
    """Lower-case hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def inspect_module(path: Path) -> ModuleReport:
    """Read the module's exports with wasmtime (no instantiation) and list the ABI exports it lacks.

    Raises:
        FileNotFoundError: no such file.
        IstioConfigError: the file is not a core WebAssembly module (e.g. a Component Model
            component, which Envoy refuses).
    """
    import wasmtime

    path = Path(path)
    data = path.read_bytes()
    try:
        module = wasmtime.Module(wasmtime.Engine(), data)
    except wasmtime.WasmtimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IstioConfigError(f"{path}: not a core WebAssembly module Envoy can load ({first})") from None
    names = tuple(e.name for e in module.exports)
    return ModuleReport(path=path, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                        exports=names, missing=tuple(n for n in REQUIRED_EXPORTS if n not in names))


# -- the real Envoy ---------------------------------------------------------------------------------
@dataclass
class BootReport:
    """One start of the real Envoy with the plugin configuration."""

    ok: bool
    filter_metrics: list[str] = field(default_factory=list)
    message: str = ""
    config_yaml: str = ""


def equivalent_envoy_config(plugin_config: dict[str, Any], wasm: Path, *, upstream_port: int = 9,
                            backend_port: int = 9, vm_env: dict[str, str] | None = None) -> str:
    """The local Envoy bootstrap equivalent to the sidecar's: the workbench template
    (``envoyconf``, variant ``filter``: same Wasm filter config with FAIL_OPEN and
    allow_on_headers_stop_iteration, inserted before the router) carrying ``plugin_config``
    byte for byte, with the backend cluster named as the plugin config names it (Istio's
    ``outbound|PORT||HOST``) instead of the workbench's own name.

    ``vm_env``: environment variables the VM sees (``vm_config.environment_variables.key_values``):
    in the mesh the same names come from the istio-proxy container (``host_env_keys``); the filter
    reads them the same way (WASI ``environ_get``).

    Raises:
        PluginConfigError: the plugin config fails the filter's schema.
    """
    from .. import envoyconf

    rendered = envoyconf.render(envoyconf.EnvoyConfig(
        variant="filter", upstream_port=upstream_port, backend_port=backend_port, wasm_path=Path(wasm),
        plugin_config=plugin_config))
    cluster = plugin_config.get("backend_cluster", envoyconf.BACKEND_CLUSTER)
    if cluster == envoyconf.BACKEND_CLUSTER and not vm_env:
        return rendered
    doc = yaml.safe_load(rendered)
    for c in doc["static_resources"]["clusters"]:
        if c["name"] == envoyconf.BACKEND_CLUSTER:
            c["name"] = cluster
            c["load_assignment"]["cluster_name"] = cluster
    if vm_env:
        for listener in doc["static_resources"]["listeners"]:
            for f in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
                if f["name"] == "envoy.filters.http.wasm":
                    f["typed_config"]["config"]["vm_config"]["environment_variables"] = {"key_values": dict(vm_env)}
    return yaml.safe_dump(doc, sort_keys=False)


def boot_in_envoy(plugin_config: dict[str, Any], wasm: Path, *, workdir: Path | None = None,
                  timeout_s: float = 30.0, vm_env: dict[str, str] | None = None) -> BootReport:
    """Start the real local Envoy once with ``plugin_config`` (and ``vm_env``, see
    ``equivalent_envoy_config``) and stop it.

    Passes when Envoy becomes ready (a filter that refuses its configuration makes Envoy exit)
    and the filter's root context has defined its ``sp_cache.*`` metrics (it configured).
    The Envoy is always stopped before returning.
    """
    from ..runtime import EnvoyStartError, LocalRuntime

    config = equivalent_envoy_config(plugin_config, wasm, vm_env=vm_env)
    with tempfile.TemporaryDirectory(prefix="sp-istio-cache-validate-") as tmp:
        runtime = LocalRuntime(config, Path(workdir or tmp), concurrency=1)
        try:
            runtime.start()
            runtime.wait_ready(timeout_s=timeout_s)
            metrics = sorted(k.removeprefix("wasmcustom.") for k in runtime.stats()
                             if k.startswith("wasmcustom.sp_cache."))
        except EnvoyStartError as exc:
            return BootReport(ok=False, message=str(exc), config_yaml=config)
        finally:
            runtime.stop()
    if not metrics:
        return BootReport(ok=False, config_yaml=config,
                          message="Envoy started but the filter defined no sp_cache.* metric: it did not configure")
    return BootReport(ok=True, filter_metrics=metrics, config_yaml=config,
                      message=f"Envoy loaded the module and the filter configured ({len(metrics)} sp_cache metrics)")
