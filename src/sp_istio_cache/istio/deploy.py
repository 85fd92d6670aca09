"""``deploy apply|status|restart|remove``: the original deploy.sh subcommands, as kubectl calls.

Everything works from a rendered directory (``istio-configs/`` by default): namespace, names and
the workload selector are read back from the manifests, which are validated again first. A plan
is a list of ``Step`` (an argv, never a shell line); ``--dry-run`` prints the exact commands and the
manifests they apply instead of running them, and needs neither kubectl nor a cluster.

``apply`` applies the ServiceEntry (+ DestinationRule) and **one** of WasmPlugin / EnvoyFilter,
after checking that the other alternative is not already in the namespace: both on one workload
would insert the filter twice.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .render import KINDS, OWNED_FILES, RESOURCE_LABELS
from .validate import IstioConfigError, check_manifest_file

ACTIONS = ("apply", "status", "restart", "remove")
#: fully qualified resource types, so a cluster with other CRDs of the same short name is not confused
RESOURCE_TYPES = {
    "wasmplugin": "wasmplugins.extensions.istio.io",
    "envoyfilter": "envoyfilters.networking.istio.io",
    "serviceentry": "serviceentries.networking.istio.io",
    "destinationrule": "destinationrules.networking.istio.io",
}


class DeployError(RuntimeError):
    """kubectl is missing, there is no cluster context, a step failed, or the plan is refused."""


@dataclass(frozen=True)
class Step:
    """One kubectl invocation.

    ``manifest``: the file the step applies (printed by --dry-run). ``must_be_empty``: a guard
    whose output must be empty, else ``refusal`` is raised.
    """

    argv: tuple[str, ...]
    purpose: str
    manifest: Path | None = None
    must_be_empty: bool = False
    refusal: str = ""

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class RenderedDir:
    """What a rendered directory holds."""

    directory: Path
    files: dict[str, Path]
    namespace: str
    name: str
    selector: dict[str, str]


def read_rendered(directory: Path) -> RenderedDir:
    """Load and re-validate the rendered manifests in ``directory``.

    Raises:
        DeployError: no rendered file there, or files that disagree on namespace/name.
        IstioConfigError: a manifest fails its schema.
    """
    directory = Path(directory)
    files = {n.removesuffix(".yaml"): directory / n for n in OWNED_FILES if (directory / n).exists()}
    if not any(k in files for k in KINDS):
        raise DeployError(f"no wasmplugin.yaml or envoyfilter.yaml in {directory}: run `sp-istio-cache istio render` first")
    namespaces, names, selector = set(), set(), {}
    for kind, path in files.items():
        doc = check_manifest_file(path)[0]
        namespaces.add(doc["metadata"]["namespace"])
        names.add(doc["metadata"]["name"].removesuffix("-backend"))
        if kind == "wasmplugin":
            selector = doc["spec"]["selector"]["matchLabels"]
        elif kind == "envoyfilter" and not selector:
            selector = doc["spec"]["workloadSelector"]["labels"]
    if len(namespaces) != 1 or len(names) != 1:
        raise DeployError(f"{directory}: manifests disagree on namespace {sorted(namespaces)} or name {sorted(names)}; "
                          "re-render them together")
    return RenderedDir(directory, files, namespaces.pop(), names.pop(), dict(selector))


def choose_kind(rendered: RenderedDir, kind: str | None) -> str:
    """The alternative to apply: ``kind`` when given (its file must exist), else the only one rendered,
    else the WasmPlugin (Istio's own API; render produced it, so the plugin config allows it)."""
    available = [k for k in KINDS if k in rendered.files]
    if kind is not None:
        if kind not in KINDS:
            raise DeployError(f"--kind {kind!r}: choose one of {', '.join(KINDS)} (never both on one workload)")
        if kind not in available:
            raise DeployError(f"--kind {kind}: {rendered.directory / (kind + '.yaml')} was not rendered")
        return kind
    return available[0] if len(available) == 1 else "wasmplugin"


def _selector_arg(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


def plan(action: str, rendered: RenderedDir, *, kind: str | None = None, context: str | None = None,
         kubectl: str = "kubectl", deployment: str | None = None) -> list[Step]:
    """The kubectl steps for ``action`` (one of ``ACTIONS``) on ``rendered``."""
    base = [kubectl] + (["--context", context] if context else []) + ["--namespace", rendered.namespace]
    ns, name = rendered.namespace, rendered.name
    if action == "apply":
        chosen = choose_kind(rendered, kind)
        other = next(k for k in KINDS if k != chosen)
        steps = [Step(tuple(base + ["get", f"{RESOURCE_TYPES[other]}/{name}", "--ignore-not-found", "-o", "name"]),
                      f"refuse if the {other} alternative is already deployed", must_be_empty=True,
                      refusal=f"{other} {ns}/{name} is deployed; applying the {chosen} too would insert the filter "
                              f"twice on the same workloads. Remove it first: `sp-istio-cache deploy remove`")]
        for part in ("serviceentry", "destinationrule", chosen):
            if part in rendered.files:
                path = rendered.files[part]
                steps.append(Step(tuple(base + ["apply", "-f", str(path)]), f"apply {part}", manifest=path))
        return steps
    if action == "status":
        types = ",".join(RESOURCE_TYPES.values())
        label = _selector_arg({"app.kubernetes.io/name": RESOURCE_LABELS["app.kubernetes.io/name"]})
        return [Step(tuple(base + ["get", types, "-l", label, "-o", "wide"]), "the deployed resources"),
                Step(tuple(base + ["get", "pods", "-l", _selector_arg(rendered.selector), "-o", "wide"]),
                     "the selected workloads' pods")]
    if action == "restart":
        target = [f"deployment/{deployment}"] if deployment else ["deployment", "-l", _selector_arg(rendered.selector)]
        return [Step(tuple(base + ["rollout", "restart", *target]),
                     "restart the selected workloads so their sidecars load the filter afresh")]
    if action == "remove":
        targets = [f"{RESOURCE_TYPES['wasmplugin']}/{name}", f"{RESOURCE_TYPES['envoyfilter']}/{name}",
                   f"{RESOURCE_TYPES['serviceentry']}/{name}-backend",
                   f"{RESOURCE_TYPES['destinationrule']}/{name}-backend"]
        return [Step(tuple(base + ["delete", *targets, "--ignore-not-found"]), "remove every sp-istio-cache resource")]
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
                          f"or pass --context" + (f" (kubectl said: {said})" if said else ""))
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
        if step.must_be_empty and res.stdout.strip():
            raise DeployError(step.refusal)
        if res.stdout.strip():
            echo(res.stdout.rstrip())
    return used


__all__ = ["ACTIONS", "DeployError", "IstioConfigError", "RenderedDir", "Step", "check_context", "choose_kind",
           "dry_run_text", "execute", "find_kubectl", "plan", "read_rendered"]
