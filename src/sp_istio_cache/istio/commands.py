"""The ``istio render``, ``validate`` and ``deploy ...`` commands (registered on the main CLI).

Every refusal prints one line naming the field and exits 1; nothing is written or applied then.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..paths import DIST_WASM

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

istio_app = typer.Typer(help="Render the deployment: the filter (WasmPlugin or EnvoyFilter), the cache backend "
                             "(Deployment, Service, PodDisruptionBudget), its AuthorizationPolicy, and the sidecar "
                             "patch giving the filter its keys from a Secret.", no_args_is_help=True)
deploy_app = typer.Typer(help="Apply, inspect, restart or remove the rendered manifests with kubectl "
                              "(--dry-run prints the exact commands and manifests).", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _module(wasm: Optional[Path]) -> Path:
    """``wasm``, or the default build (built when missing or stale)."""
    if wasm is not None:
        if not wasm.exists():
            _fail(f"filter module not found: {wasm}")
        return wasm
    try:
        from ..stack import ensure_wasm

        return ensure_wasm(DIST_WASM)
    except Exception as exc:  # noqa: BLE001 - a failed build is one clear line
        _fail(f"cannot build the filter: {exc}")


def _parse_selector(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            _fail(f"--selector {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


@istio_app.command("render")
def istio_render(
    out: Path = typer.Option(None, "--out", help="Output directory (default istio-configs/)."),
    namespace: str = typer.Option("default",
                                  help="Namespace of the filter's workloads (and of the filter's resources)."),
    name: str = typer.Option("sp-istio-cache", help="Name of the filter's resources."),
    selector: list[str] = typer.Option(["sp-istio-cache/enabled=true"], "--selector",
                                       help="Workload label KEY=VALUE; repeat for several (all must match)."),
    url: str = typer.Option("file:///var/local/lib/wasm/sp_istio_cache.wasm",
                            help="Module URL in the mesh: oci://, http(s):// or file://."),
    sha256: Optional[str] = typer.Option(None, help="The module digest, stated: required for oci:// (the image "
                                                    "digest) and http(s):// (what you published); must equal "
                                                    "--wasm's."),
    wasm: Optional[Path] = typer.Option(None, help="The built module (default filter/dist/sp_istio_cache.wasm, built "
                                                   "when missing); checked against its build record (.sha256)."),
    image_pull_policy: str = typer.Option("IfNotPresent", help="IfNotPresent | Always."),
    phase: str = typer.Option("UNSPECIFIED_PHASE",
                              help="UNSPECIFIED_PHASE (just before the router) | AUTHN | AUTHZ | STATS."),
    priority: int = typer.Option(0, help="Order among WasmPlugins of the same phase (higher first)."),
    fail_strategy: str = typer.Option("open", help="open (FAIL_OPEN, default) | closed (FAIL_CLOSE) | reload "
                                                   "(FAIL_RELOAD, Istio >= 1.27); docs/deploy.md."),
    match_mode: str = typer.Option("CLIENT", help="CLIENT (outbound) | SERVER (inbound) | CLIENT_AND_SERVER."),
    port: list[int] = typer.Option([], "--port",
                                   help="Only traffic to this destination port; repeatable, no duplicates."),
    backend_url: Optional[str] = typer.Option(None, help="An existing backend (http(s)://HOST[:PORT]) instead of "
                                                         "rendering the in-mesh one; https adds a DestinationRule."),
    plugin_config: Optional[Path] = typer.Option(None, "--plugin-config", help="Filter configuration JSON (default: "
                                                 "reports/latest/recommended_plugin_config.json when it is trusted)."),
    schema_defaults: bool = typer.Option(False, "--schema-defaults", help="Render the filter's schema defaults when "
                                         "there is no trusted recommendation (else that is refused)."),
    kind: str = typer.Option("both", help="both (the two alternatives) | wasmplugin | envoyfilter."),
    service_entry: bool = typer.Option(True, help="With --backend-url: render the ServiceEntry for its host."),
    envoy_check: bool = typer.Option(True, help="Boot the real local Envoy once with the pluginConfig before writing."),
    client_service_account: list[str] = typer.Option([], "--client-service-account", help="NAMESPACE/SA the selected "
                                                     "workloads run as; the AuthorizationPolicy admits only these."),
    trust_domain: str = typer.Option("cluster.local", help="Mesh trust domain (AuthorizationPolicy principals)."),
    secret_name: str = typer.Option("sp-istio-cache-keys", help="Secret with backend-key and signing-key (in the "
                                                                "backend's and the workloads' namespaces)."),
    allow_inline_secrets: bool = typer.Option(False, "--allow-inline-secrets", help="Accept backend_key/signing_key "
                                              "literals in the plugin config (readable from the WasmPlugin)."),
    backend_namespace: str = typer.Option("sp-system", help="Namespace of the in-mesh backend."),
    backend_image: str = typer.Option(None, "--backend-image", help="Backend image (default "
                                      "sp-istio-cache-backend:<version>, built locally)."),
    backend_replicas: int = typer.Option(2, help="Backend pods (they share one Redis/Valkey)."),
    redis_url: str = typer.Option("redis://sp-cache-redis.sp-system.svc.cluster.local:6379/0",
                                  help="Redis/Valkey URL of the backend's storage (no password: see "
                                       "--redis-url-from-secret)."),
    redis_url_from_secret: bool = typer.Option(False, "--redis-url-from-secret", help="Read the Redis URL from key "
                                               "redis-url of the Secret."),
    backend_cpu: str = typer.Option("250m", help="Backend CPU request."),
    backend_memory: str = typer.Option("128Mi", help="Backend memory request."),
    backend_memory_limit: str = typer.Option("256Mi", help="Backend memory limit."),
) -> None:
    """Render and validate the deployment; nothing is written unless every check passes."""
    from .. import pluginconfig
    from . import render as r
    from .params import BackendParams, IstioParams
    from .recommendation import choose_plugin_config
    from .validate import IstioConfigError

    module = None if url.startswith("oci://") and not envoy_check else _module(wasm)
    backend = BackendParams(namespace=backend_namespace, replicas=backend_replicas, redis_url=redis_url,
                            redis_url_from_secret=redis_url_from_secret, cpu_request=backend_cpu,
                            memory_request=backend_memory, memory_limit=backend_memory_limit)
    if backend_image:
        backend.image = backend_image
    try:
        config, notes = choose_plugin_config(r.TUNING_OUTPUT, explicit=plugin_config, schema_defaults=schema_defaults,
                                             defaults=r.schema_default_config())
        params = IstioParams(module=module, sha256=sha256, url=url, namespace=namespace, name=name,
                             selector=_parse_selector(selector), image_pull_policy=image_pull_policy, phase=phase,
                             priority=priority, fail_strategy=fail_strategy, match_mode=match_mode, ports=port,
                             backend_url=backend_url, backend=backend, plugin_config=config, kind=kind,
                             service_entry=service_entry, client_service_accounts=client_service_account,
                             trust_domain=trust_domain, secret_name=secret_name,
                             allow_inline_secrets=allow_inline_secrets)
        rendered = r.render(params, boot=envoy_check)
    except (IstioConfigError, pluginconfig.PluginConfigError) as exc:
        _fail(str(exc))
    for note in notes + rendered.warnings:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    if rendered.boot is not None:
        console.print(f"envoy check: {rendered.boot.message}", highlight=False)
    for path in r.write(rendered, out or r.ISTIO_CONFIGS):
        console.print(f"wrote {path}", highlight=False)


def validate_module(
    wasm: Optional[Path] = typer.Argument(None, help="The module (default filter/dist/sp_istio_cache.wasm)."),
    plugin_config: Optional[Path] = typer.Option(
        None, "--plugin-config", help="Filter configuration JSON to load it with (default: schema defaults)."),
) -> None:
    """Check a module before any deploy: proxy-wasm ABI exports, sha256 against its build record,
    and that it loads and configures in the real Envoy with the given pluginConfig."""
    import json
    import secrets

    from .. import pluginconfig
    from .consistency import secret_env_needed
    from .module import verify_module
    from .validate import IstioConfigError, boot_in_envoy, inspect_module

    module = _module(wasm)
    try:
        report = inspect_module(module)
        console.print(f"module  {report.path}\nsize    {report.size_bytes} bytes\nsha256  {report.sha256}",
                      highlight=False)
        abi = [n for n in report.exports if n.startswith("proxy_")]
        console.print(f"exports {len(abi)} proxy-wasm functions: {', '.join(abi)}", highlight=False)
        if report.missing:
            _fail(f"{module}: missing proxy-wasm exports: {', '.join(report.missing)}")
        verify_module(module)
        console.print("record  the sha256 matches the build record", highlight=False)
        config = json.loads(plugin_config.read_text()) if plugin_config else {}
        pluginconfig.validate(config)
    except (IstioConfigError, pluginconfig.PluginConfigError, OSError, ValueError) as exc:
        _fail(str(exc))
    vm_env = {env: secrets.token_hex(32) for env, _ in secret_env_needed(config)}
    boot = boot_in_envoy(config, module, vm_env=vm_env)
    if not boot.ok:
        _fail(f"the real Envoy refused it: {boot.message}")
    console.print(f"envoy   {boot.message}\nok: ready to deploy", highlight=False)


def _deploy(action: str, directory: Optional[Path], kind: Optional[str], context: Optional[str], kubectl: str,
            dry_run: bool, deployment: Optional[str] = None, workloads: Optional[list[str]] = None,
            wasm: Optional[Path] = None) -> None:
    from . import deploy as d
    from .render import ISTIO_CONFIGS
    from .validate import IstioConfigError

    try:
        rendered = d.read_rendered(directory or ISTIO_CONFIGS)
        if action == "apply":
            digest = d.check_module(rendered, d.choose_kind(rendered, kind), wasm or DIST_WASM)
            err.print(f"module sha256 {digest} (checked)", highlight=False)
        steps = d.plan(action, rendered, kind=kind, context=context, kubectl=kubectl, deployment=deployment,
                       workloads=workloads)
        if dry_run:
            sys.stdout.write(d.dry_run_text(steps))
            return
        d.execute(steps, kubectl=kubectl, context=context,
                  echo=lambda s: console.print(s, highlight=False, markup=False))
    except (d.DeployError, IstioConfigError) as exc:
        _fail(str(exc))


DirOpt = typer.Option(None, "--dir", help="Rendered manifests (default istio-configs/).")
KindOpt = typer.Option(None, "--kind", help="wasmplugin | envoyfilter (default: the one rendered; "
                                            "wasmplugin when both are). Never both on one workload.")
ContextOpt = typer.Option(None, "--context", help="kubectl context (default: the current one).")
KubectlOpt = typer.Option("kubectl", "--kubectl", help="kubectl executable.")
DryRunOpt = typer.Option(False, "--dry-run", help="Print the exact commands (and manifests) instead of running them.")


@deploy_app.command("apply")
def deploy_apply(directory: Optional[Path] = DirOpt, kind: Optional[str] = KindOpt, context: Optional[str] = ContextOpt,
                 kubectl: str = KubectlOpt, dry_run: bool = DryRunOpt,
                 workload: list[str] = typer.Option([], "--workload", help="A Deployment the selector picks: patch its "
                                                    "istio-proxy container with the keys (repeatable)."),
                 wasm: Optional[Path] = typer.Option(None, help="The module the manifests name (default "
                                                     "filter/dist/sp_istio_cache.wasm); re-checked.")) -> None:
    """Apply in order: Namespace, Secret checks, backend, AuthorizationPolicy, ServiceEntry/DestinationRule,
    one of WasmPlugin / EnvoyFilter (refused when the other is deployed), the sidecar patches."""
    _deploy("apply", directory, kind, context, kubectl, dry_run, workloads=workload, wasm=wasm)


@deploy_app.command("status")
def deploy_status(directory: Optional[Path] = DirOpt, context: Optional[str] = ContextOpt,
                  kubectl: str = KubectlOpt, dry_run: bool = DryRunOpt) -> None:
    """Show the deployed sp-istio-cache resources and the selected workloads' pods."""
    _deploy("status", directory, None, context, kubectl, dry_run)


@deploy_app.command("restart")
def deploy_restart(directory: Optional[Path] = DirOpt, context: Optional[str] = ContextOpt,
                   kubectl: str = KubectlOpt, dry_run: bool = DryRunOpt,
                   deployment: Optional[str] = typer.Option(
                       None, help="Restart this Deployment (default: every Deployment labelled like the selector).",
                   )) -> None:
    """Rollout-restart the selected workloads so their sidecars load the filter afresh."""
    _deploy("restart", directory, None, context, kubectl, dry_run, deployment)


@deploy_app.command("remove")
def deploy_remove(directory: Optional[Path] = DirOpt, context: Optional[str] = ContextOpt,
                  kubectl: str = KubectlOpt, dry_run: bool = DryRunOpt) -> None:
    """Delete every rendered sp-istio-cache resource (both filter alternatives); Namespace and Secrets stay."""
    _deploy("remove", directory, None, context, kubectl, dry_run)
