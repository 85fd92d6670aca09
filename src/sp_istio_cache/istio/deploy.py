"""``deploy apply|status|restart|remove``: the rendered manifests, applied with kubectl in order.

Everything works from a rendered directory (``istio-configs/`` by default), read back and
validated again (schemas, cross-references, and for ``apply`` the module against its build
record). A plan is a list of ``Step`` (an argv, never a shell line); ``--dry-run`` prints the
exact commands and the manifests they apply instead of running them, and needs neither kubectl
nor a cluster.

``apply`` order: guard (the other filter alternative is not deployed) -> Namespace -> guards (the
referenced Secrets exist) -> backend ServiceAccount/Deployment/Service/PodDisruptionBudget ->
AuthorizationPolicy -> ServiceEntry/DestinationRule -> **one** of WasmPlugin / EnvoyFilter (both
on one workload would insert the filter twice) -> the sidecar patch of each ``--workload``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .consistency import check_rendered, env_from_secret
from .kube import PROXY_CONTAINER
from .mesh import MODULE_SHA256_ANNOTATION, RESOURCE_LABELS
from .module import verify_module
from .params import KINDS
from .render import OWNED_FILES
from .validate import IstioConfigError, check_manifest

ACTIONS = ("apply", "status", "restart", "remove")
PATCH_FILE = "sidecar-secret-env.yaml"
#: fully qualified resource types, so a cluster with other CRDs of the same short name is not confused
RESOURCE_TYPES = {
    "WasmPlugin": "wasmplugins.extensions.istio.io",
    "EnvoyFilter": "envoyfilters.networking.istio.io",
    "ServiceEntry": "serviceentries.networking.istio.io",
    "DestinationRule": "destinationrules.networking.istio.io",
    "AuthorizationPolicy": "authorizationpolicies.security.istio.io",
    "Deployment": "deployments.apps",
    "Service": "services",
    "PodDisruptionBudget": "poddisruptionbudgets.policy",
    "ServiceAccount": "serviceaccounts",
}
_KIND_OF = {"wasmplugin": "WasmPlugin", "envoyfilter": "EnvoyFilter"}
_MANAGED = "app.kubernetes.io/managed-by=" + RESOURCE_LABELS["app.kubernetes.io/managed-by"]


class DeployError(RuntimeError):
    """kubectl is missing, there is no cluster context, a step failed, or the plan is refused."""


@dataclass(frozen=True)
class Step:
    """One kubectl invocation.

    ``manifest``: the file the step applies (printed by --dry-run). ``guard``: ``absent`` (the
    output must be empty) or ``present`` (it must not be), else ``refusal`` is raised.
    """

    argv: tuple[str, ...]
    purpose: str
    manifest: Path | None = None
    guard: str | None = None
    refusal: str = ""

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass
class RenderedDir:
    """A rendered directory: its files, their resources, and what the plan needs from them."""

    directory: Path
    files: dict[str, Path]
    docs: dict[str, list[dict[str, Any]]]
    patch: dict[str, Any] | None = None
    secrets: list[tuple[str, str]] = field(default_factory=list)

    def all_docs(self) -> list[dict[str, Any]]:
        return [d for items in self.docs.values() for d in items]

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((d for d in self.all_docs() if d["kind"] == kind), None)

    @property
    def filter_doc(self) -> dict[str, Any]:
        """The WasmPlugin (else the EnvoyFilter) that loads the filter.

        Raises:
            DeployError: the directory holds neither.
        """
        doc = self.first("WasmPlugin") or self.first("EnvoyFilter")
        if doc is None:
            raise DeployError(f"{self.directory}: no WasmPlugin or EnvoyFilter among the rendered files")
        return doc

    @property
    def namespace(self) -> str:
        return self.filter_doc["metadata"]["namespace"]

    @property
    def selector(self) -> dict[str, str]:
        spec = self.filter_doc["spec"]
        return spec["selector"]["matchLabels"] if "selector" in spec else spec["workloadSelector"]["labels"]


def _load(path: Path) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise IstioConfigError(f"{path}: not valid YAML: {exc}") from None


def read_rendered(directory: Path) -> RenderedDir:
    """Load the rendered files in ``directory`` and check them again (schemas and references).

    Raises:
        DeployError: no filter resource there.
        IstioConfigError: a resource fails its schema or a reference is broken (names the file).
    """
    directory = Path(directory)
    files = {n: directory / n for n in OWNED_FILES if (directory / n).exists()}
    if not any(f"{k}.yaml" in files for k in KINDS):
        raise DeployError(f"no wasmplugin.yaml or envoyfilter.yaml in {directory}: "
                          "run `sp-istio-cache istio render` first")
    rendered = RenderedDir(directory, files, {})
    for name, path in files.items():
        docs = _load(path)
        if name == PATCH_FILE:
            rendered.patch = docs[0] if docs else None
            continue
        for doc in docs:
            try:
                check_manifest(doc)
            except IstioConfigError as exc:
                raise IstioConfigError(f"{path}: {exc}") from None
        rendered.docs[name] = docs
    try:
        check_rendered(rendered.all_docs(), rendered.patch)
    except IstioConfigError as exc:
        raise IstioConfigError(f"{directory}: {exc}") from None
    rendered.secrets = _secret_refs(rendered)
    return rendered


def _secret_refs(rendered: RenderedDir) -> list[tuple[str, str]]:
    """(namespace, Secret) pairs the manifests reference: the backend's, the sidecars'."""
    refs = []
    deploy = rendered.first("Deployment")
    if deploy is not None:
        for container in deploy["spec"]["template"]["spec"]["containers"]:
            secrets = env_from_secret(container.get("env", [])).values()
            refs += [(deploy["metadata"]["namespace"], s) for s, _ in secrets]
    if rendered.patch is not None:
        for container in rendered.patch["spec"]["template"]["spec"]["containers"]:
            refs += [(rendered.namespace, s) for s, _ in env_from_secret(container.get("env", [])).values()]
    return sorted(set(refs))


def choose_kind(rendered: RenderedDir, kind: str | None) -> str:
    """The alternative to apply: ``kind`` when given (its file must exist), else the only one rendered,
    else the WasmPlugin (Istio's own API; render produced it, so the plugin config allows it)."""
    available = [k for k in KINDS if f"{k}.yaml" in rendered.files]
    if kind is not None:
        if kind not in KINDS:
            raise DeployError(f"--kind {kind!r}: choose one of {', '.join(KINDS)} (never both on one workload)")
        if kind not in available:
            raise DeployError(f"--kind {kind}: {rendered.directory / (kind + '.yaml')} was not rendered")
        return kind
    return available[0] if len(available) == 1 else "wasmplugin"


def check_module(rendered: RenderedDir, kind: str, wasm: Path) -> str | None:
    """Re-check the module the chosen manifest names: for file:// and http(s):// URLs, ``wasm``
    must match its build record and the digest rendered into the manifest. Returns that digest.

    Raises:
        IstioConfigError: naming the module or the manifest.
    """
    (doc,) = rendered.docs[f"{kind}.yaml"]
    stated = doc["metadata"].get("annotations", {}).get(MODULE_SHA256_ANNOTATION)
    if kind == "wasmplugin":
        spec_sha, url = doc["spec"].get("sha256"), doc["spec"]["url"]
        if stated and spec_sha and stated != spec_sha:
            raise IstioConfigError(f"{kind}.yaml: spec.sha256 {spec_sha} differs from annotation {stated}")
        stated = stated or spec_sha
        if urlsplit(url).scheme == "oci":
            if not stated:
                raise IstioConfigError(f"{kind}.yaml: an oci:// module without spec.sha256 is not pinned; "
                                       "re-render with --sha256")
            return stated
    if not stated:
        raise IstioConfigError(f"{kind}.yaml: no {MODULE_SHA256_ANNOTATION} annotation; re-render it")
    actual = verify_module(wasm)
    if actual != stated:
        raise IstioConfigError(f"{kind}.yaml: renders module sha256 {stated}, but {wasm} (and its build record) is "
                               f"{actual}: re-render with the module you deploy")
    return actual


def _selector_arg(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


def _apply_steps(rendered: RenderedDir, base: list[str], kind: str, workloads: list[str]) -> list[Step]:
    ns = rendered.namespace
    name = rendered.filter_doc["metadata"]["name"]
    chosen, other = _KIND_OF[kind], _KIND_OF[next(k for k in KINDS if k != kind)]
    steps = [Step(tuple(base + ["--namespace", ns, "get", f"{RESOURCE_TYPES[other]}/{name}", "--ignore-not-found",
                                "-o", "name"]),
                  f"refuse if the {other} alternative is already deployed", guard="absent",
                  refusal=f"{other} {ns}/{name} is deployed; applying the {chosen} too would insert the filter "
                          f"twice on the same workloads. Remove it first: `sp-istio-cache deploy remove`")]

    def apply(fname: str) -> None:
        if fname in rendered.files:
            steps.append(Step(tuple(base + ["apply", "-f", str(rendered.files[fname])]),
                              f"apply {fname}", manifest=rendered.files[fname]))

    apply("namespace.yaml")
    for secret_ns, secret in rendered.secrets:
        steps.append(Step(tuple(base + ["--namespace", secret_ns, "get", "secret", secret, "--ignore-not-found",
                                        "-o", "name"]),
                          f"the Secret {secret_ns}/{secret} the manifests reference exists", guard="present",
                          refusal=f"Secret {secret_ns}/{secret} does not exist: create it before applying "
                                  "(docs/deploy.md, Secrets); the manifests only reference it"))
    for fname in ("backend.yaml", "authorizationpolicy.yaml", "serviceentry.yaml", "destinationrule.yaml",
                  f"{kind}.yaml"):
        apply(fname)
    for workload in workloads:
        if rendered.patch is None:
            raise DeployError(f"--workload {workload}: nothing to patch ({PATCH_FILE} was not rendered)")
        path = rendered.directory / PATCH_FILE
        steps.append(Step(tuple(base + ["--namespace", ns, "patch", "deployment", workload, "--type", "strategic",
                                        "--patch-file", str(path)]),
                          f"give deployment {workload}'s {PROXY_CONTAINER} container the keys from the Secret",
                          manifest=path))
    return steps


def plan(action: str, rendered: RenderedDir, *, kind: str | None = None, context: str | None = None,
         kubectl: str = "kubectl", deployment: str | None = None, workloads: list[str] | None = None) -> list[Step]:
    """The kubectl steps for ``action`` (one of ``ACTIONS``) on ``rendered``."""
    base = [kubectl] + (["--context", context] if context else [])
    ns = rendered.namespace
    by_ns: dict[str, list[str]] = {}
    for doc in rendered.all_docs():
        if doc["kind"] in RESOURCE_TYPES:
            by_ns.setdefault(doc["metadata"]["namespace"], []).append(
                f"{RESOURCE_TYPES[doc['kind']]}/{doc['metadata']['name']}")
    if action == "apply":
        return _apply_steps(rendered, base, choose_kind(rendered, kind), list(workloads or []))
    if action == "status":
        types = ",".join(sorted({t for k, t in RESOURCE_TYPES.items() if k != "ServiceAccount"}))
        steps = [Step(tuple(base + ["--namespace", n, "get", types, "-l", _MANAGED, "-o", "wide"]),
                      f"the sp-istio-cache resources in {n}") for n in sorted(by_ns)]
        return steps + [Step(tuple(base + ["--namespace", ns, "get", "pods", "-l", _selector_arg(rendered.selector),
                                           "-o", "wide"]), "the selected workloads' pods")]
    if action == "restart":
        target = [f"deployment/{deployment}"] if deployment else ["deployment", "-l", _selector_arg(rendered.selector)]
        return [Step(tuple(base + ["--namespace", ns, "rollout", "restart", *target]),
                     "restart the selected workloads so their sidecars load the filter afresh")]
    if action == "remove":
        name = rendered.filter_doc["metadata"]["name"]
        targets = by_ns.setdefault(ns, [])
        for kind_name in ("WasmPlugin", "EnvoyFilter"):  # both alternatives, whichever was applied
            if f"{RESOURCE_TYPES[kind_name]}/{name}" not in targets:
                targets.append(f"{RESOURCE_TYPES[kind_name]}/{name}")
        return [Step(tuple(base + ["--namespace", n, "delete", *sorted(t), "--ignore-not-found"]),
                     f"remove the sp-istio-cache resources in {n} (Namespace and Secrets are kept)")
                for n, t in sorted(by_ns.items())]
    raise DeployError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")


def dry_run_text(steps: list[Step]) -> str:
    """The exact commands, each followed by the manifest it applies."""
    out = []
    for step in steps:
        out.append(f"# {step.purpose}\n{step.command}")
        if step.manifest is not None:
            out.append(f"# --- {step.manifest} ---\n{step.manifest.read_text().rstrip()}\n# --- end ---")
    return "\n".join(out) + "\n"


def find_kubectl(kubectl: str = "kubectl") -> str:
    """Full path of ``kubectl`` (a name on PATH or a path).

    Raises:
        DeployError: not found.
    """
    found = shutil.which(kubectl)
    if not found:
        raise DeployError(f"kubectl not found ({kubectl!r} is not an executable on PATH): install kubectl, or pass "
                          "--kubectl PATH; `--dry-run` prints the commands without it")
    return found


def check_context(kubectl: str, context: str | None,
                  runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """The cluster context the steps will use.

    Raises:
        DeployError: no current context (and none given), or the given one does not exist.
    """
    if context:
        res = runner([kubectl, "config", "get-contexts", context, "-o", "name"], capture_output=True, text=True)
        if res.returncode != 0 or not res.stdout.strip():
            raise DeployError(f"kubectl context {context!r} does not exist (see `kubectl config get-contexts`)")
        return context
    res = runner([kubectl, "config", "current-context"], capture_output=True, text=True)
    current = res.stdout.strip()
    if res.returncode != 0 or not current:
        said = (res.stderr or res.stdout).strip()
        raise DeployError("no current kubectl context: point kubectl at a cluster (`kubectl config use-context NAME`) "
                          "or pass --context" + (f" (kubectl said: {said})" if said else ""))
    return current


def execute(steps: list[Step], *, kubectl: str = "kubectl", context: str | None = None,
            echo: Callable[[str], Any] = print,
            runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """Run the steps in order (no shell); stop at the first failure. Returns the context used.

    Raises:
        DeployError: kubectl missing, no context, a refused guard, or a failed command (with its stderr).
    """
    path = find_kubectl(kubectl)
    used = check_context(path, context, runner)
    echo(f"# kubectl context: {used}")
    for step in steps:
        argv = [path, *step.argv[1:]]
        echo(f"$ {step.command}")
        res = runner(argv, capture_output=True, text=True, env=os.environ.copy())
        if res.returncode != 0:
            raise DeployError(f"`{step.command}` failed ({step.purpose}), exit {res.returncode}: "
                              f"{(res.stderr or res.stdout).strip()}")
        found = bool(res.stdout.strip())
        if (step.guard == "absent" and found) or (step.guard == "present" and not found):
            raise DeployError(step.refusal)
        if found:
            echo(res.stdout.rstrip())
    return used


__all__ = ["ACTIONS", "DeployError", "IstioConfigError", "RenderedDir", "Step", "check_context", "check_module",
           "choose_kind", "dry_run_text", "execute", "find_kubectl", "plan", "read_rendered"]
