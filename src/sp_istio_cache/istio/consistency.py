"""Checks across the rendered resources, which no single schema can make: the keys the filter
reads from its environment reach it from a Secret, and the backend's Service, PodDisruptionBudget
and AuthorizationPolicy select the pods its Deployment makes, on the port the filter calls.

Run by ``render`` before anything is written and by ``deploy`` on the files it applies, so a
hand edit that breaks a reference is refused with the reference named.
"""

from __future__ import annotations

import json
from typing import Any

from .. import pluginconfig
from .params import BACKEND_KEY_ENV, SECRET_BACKEND_KEY, SECRET_CONFIG_KEYS
from .validate import IstioConfigError


def plugin_config_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The plugin config a WasmPlugin or EnvoyFilter carries (the first patch's, for an EnvoyFilter)."""
    if doc["kind"] == "WasmPlugin":
        return doc["spec"]["pluginConfig"]
    value = doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]
    return json.loads(value)


def vm_env_keys(doc: dict[str, Any]) -> list[str]:
    """The istio-proxy environment variables a WasmPlugin / EnvoyFilter exposes to the VM."""
    if doc["kind"] == "WasmPlugin":
        return [e["name"] for e in doc["spec"].get("vmConfig", {}).get("env", []) if e.get("valueFrom") == "HOST"]
    vm = doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["vm_config"]
    return list(vm.get("environment_variables", {}).get("host_env_keys", []))


def env_from_secret(env: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """``{name: (secret, key)}`` for the entries of a container ``env`` that come from a Secret."""
    out = {}
    for entry in env:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            out[entry["name"]] = (ref.get("name"), ref.get("key"))
    return out


def secret_env_needed(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(environment variable, Secret key) for each key the filter reads from its environment:
    those whose literal (``backend_key`` / ``signing_key``) is empty."""
    defaults = pluginconfig.defaults()
    return [(config.get(env_key, defaults[env_key]), secret_key)
            for literal, (env_key, secret_key) in SECRET_CONFIG_KEYS.items() if not config.get(literal)]


def check_filter_secrets(filter_doc: dict[str, Any], patch: dict[str, Any] | None, where: str) -> None:
    """Every key the filter reads from its environment is exposed to the VM by name, and the
    sidecar patch sets that variable from the Secret key of the same role.

    Raises:
        IstioConfigError: ``secrets: ...`` naming the variable and the missing link.
    """
    config = plugin_config_of(filter_doc)
    exposed = vm_env_keys(filter_doc)
    patch_env: dict[str, tuple[str, str]] = {}
    if patch is not None:
        for container in patch["spec"]["template"]["spec"]["containers"]:
            patch_env.update(env_from_secret(container.get("env", [])))
    for name, secret_key in secret_env_needed(config):
        if name not in exposed:
            raise IstioConfigError(f"secrets: {where}: the filter reads {name} from its environment, but the "
                                   f"{filter_doc['kind']} does not expose it to the VM "
                                   "(valueFrom HOST / host_env_keys)")
        if patch is None:
            raise IstioConfigError(f"secrets: {where}: the filter reads {name}, and no sidecar-secret-env.yaml "
                                   "gives it to the istio-proxy container from a Secret")
        if name not in patch_env or patch_env[name][1] != secret_key:
            raise IstioConfigError(f"secrets: sidecar-secret-env.yaml: {name} must come from key {secret_key!r} of "
                                   f"a Secret (secretKeyRef), got {patch_env.get(name)}")


def _one(resources: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    found = [d for d in resources if d["kind"] == kind]
    return found[0] if found else None


def check_backend(resources: list[dict[str, Any]]) -> None:
    """The backend's resources agree: selectors equal the pod labels, the AuthorizationPolicy port
    is the container port, the backend key comes from a Secret and no env value is a literal.

    Raises:
        IstioConfigError: naming the resource and field.
    """
    deploy = _one(resources, "Deployment")
    if deploy is None:
        return
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    literal = [e["name"] for e in container.get("env", []) if "value" in e]
    if literal:
        raise IstioConfigError(f"secrets: Deployment {deploy['metadata']['name']}: env {literal} are literal values; "
                               "the backend's environment comes from Secrets only")
    if env_from_secret(container.get("env", [])).get(BACKEND_KEY_ENV, (None, None))[1] != SECRET_BACKEND_KEY:
        raise IstioConfigError(f"secrets: Deployment {deploy['metadata']['name']}: {BACKEND_KEY_ENV} must come "
                               f"from key {SECRET_BACKEND_KEY!r} of a Secret (secretKeyRef)")
    selectors = {"Deployment spec.selector.matchLabels": deploy["spec"]["selector"]["matchLabels"]}
    for kind, path in (("Service", ("spec", "selector")), ("PodDisruptionBudget", ("spec", "selector", "matchLabels")),
                       ("AuthorizationPolicy", ("spec", "selector", "matchLabels"))):
        doc = _one(resources, kind)
        if doc is not None:
            value = doc
            for key in path:
                value = value[key]
            selectors[f"{kind} {'.'.join(path)}"] = value
    for where, selector in selectors.items():
        if selector != labels:
            raise IstioConfigError(f"selector: {where} {selector} does not select the backend pods {labels}")
    ports = {p["containerPort"] for p in container["ports"]}
    policy = _one(resources, "AuthorizationPolicy")
    if policy is not None:
        for rule in policy["spec"]["rules"]:
            for to in rule["to"]:
                for port in to["operation"].get("ports", []):
                    if int(port) not in ports:
                        raise IstioConfigError(f"AuthorizationPolicy spec.rules.to.operation.ports: {port} is not "
                                               f"a port of the backend container {sorted(ports)}")


def check_backend_cluster(filter_doc: dict[str, Any], resources: list[dict[str, Any]]) -> None:
    """The filter's ``backend_cluster`` names the backend Service (``outbound|PORT||NAME.NS.svc...``).

    Raises:
        IstioConfigError: naming pluginConfig.backend_cluster.
    """
    svc = _one(resources, "Service")
    if svc is None:
        return
    cluster = plugin_config_of(filter_doc).get("backend_cluster", "")
    port = svc["spec"]["ports"][0]["port"]
    prefix = f"outbound|{port}||{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc."
    if not cluster.startswith(prefix):
        raise IstioConfigError(f"pluginConfig.backend_cluster: {cluster!r} does not name the backend Service "
                               f"(expected {prefix}<cluster domain>)")


def check_rendered(resources: list[dict[str, Any]], patch: dict[str, Any] | None) -> None:
    """All of the above on one rendering (or one rendered directory).

    Raises:
        IstioConfigError: the first broken reference, named.
    """
    check_backend(resources)
    for doc in resources:
        if doc["kind"] in ("WasmPlugin", "EnvoyFilter"):
            check_filter_secrets(doc, patch, f"{doc['kind']} {doc['metadata']['name']}")
            check_backend_cluster(doc, resources)
