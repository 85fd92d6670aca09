"""``sp-istio-cache`` command line: build the filter, run the stack, check it.

Every command has ``--help``. Errors print one clear line and exit non-zero.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__, procutil
from .conformance.command import conformance as conformance_command
from .paths import DIST_WASM, STATE_DIR

app = typer.Typer(help="SP-Istio Cache workbench: build the Zig proxy-wasm cache filter, run it in a real "
                       "Envoy with its backend and a test upstream, and check it.",
                  no_args_is_help=True, add_completion=False)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
STATE_FILE = STATE_DIR / "stack.json"


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
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
def build(optimize: str = typer.Option(
        "ReleaseSafe", help="Zig optimize mode: ReleaseSafe, ReleaseFast, ReleaseSmall, Debug.")) -> None:
    """Compile filter/ to filter/dist/sp_istio_cache.wasm (+ .sha256) and print path, size, sha256."""
    from .build import BuildError, build_filter

    try:
        res = build_filter(optimize=optimize)
    except (BuildError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"built {res.wasm_path}\n  size    {res.size_bytes} bytes\n  sha256  {res.sha256}\n"
                  f"  optimize {res.optimize}, {res.seconds:.1f} s")


def _spec(variant: str, runtime: str, storage: str, plugin_config: Optional[Path], wasm: Optional[Path],
          concurrency: int, log_level: str, fit_response_bytes: int = 0, fail_strategy: str = "open",
          redis_url: Optional[str] = None, backend_replicas: int = 1, cpu_limit: Optional[float] = None,
          memory_limit: Optional[str] = None):
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
    if fail_strategy not in envoyconf.FAIL_STRATEGIES:
        _fail(f"--fail-strategy {fail_strategy!r}: choose one of {', '.join(envoyconf.FAIL_STRATEGIES)}")
    if backend_replicas < 1 or (backend_replicas > 1 and storage == "memory"):
        _fail(f"--backend-replicas {backend_replicas} needs a shared storage (sqlite or redis) and >= 1")
    if redis_url and storage != "redis":
        _fail(f"--redis-url is for --storage redis, not {storage}")
    runtime_options: dict[str, Any] = {}
    if cpu_limit is not None or memory_limit is not None:
        if runtime != "docker":
            _fail("--cpu-limit and --memory-limit need --runtime docker (a local Envoy process has no quota)")
        if cpu_limit is not None and cpu_limit <= 0:
            _fail(f"--cpu-limit must be > 0 cores, got {cpu_limit}")
        from .runtime.docker import parse_memory

        try:
            parse_memory(memory_limit)
        except ValueError as exc:
            _fail(f"--memory-limit: {exc}")
        runtime_options = {k: v for k, v in (("cpu_limit", cpu_limit), ("memory_limit", memory_limit))
                           if v is not None}
    config = _load_plugin_config(plugin_config)
    if fit_response_bytes:
        config = pluginconfig.fit_body_limits(config, fit_response_bytes)
    try:
        pluginconfig.validate(config)
    except pluginconfig.PluginConfigError as exc:
        _fail(str(exc))
    return StackSpec(variant=variant, runtime=runtime, storage=storage, redis_url=redis_url,
                     backend_replicas=backend_replicas, plugin_config=config,
                     wasm_path=wasm or DIST_WASM, concurrency=concurrency,
                     component_log_level=f"wasm:{log_level}", fail_strategy=fail_strategy,
                     runtime_options=runtime_options)


VariantOpt = typer.Option("filter", help="baseline | filter-off | filter | envoy-cache")
RuntimeOpt = typer.Option("local", help="Envoy runtime: local (a process) | docker (a container on the host "
                                                 "network, image built locally from the wheel's Envoy).")
CpuOpt = typer.Option(None, "--cpu-limit", help="docker: Envoy's CPU limit in cores (CFS quota), e.g. 1 or 0.5; "
                      "default none.")
MemOpt = typer.Option(None, "--memory-limit", help="docker: Envoy's memory limit, bytes or 128Mi / 1Gi; default none.")
StorageOpt = typer.Option("sqlite", help="Backend storage: sqlite | memory | redis.")
RedisOpt = typer.Option(None, "--redis-url", help="Redis/Valkey for --storage redis (default: a throwaway "
                                                  "redis-server on loopback).")
ReplicasOpt = typer.Option(1, "--backend-replicas", help="Backend processes behind Envoy's backend cluster "
                                                         "(sqlite or redis).")
ConfigOpt = typer.Option(None, "--plugin-config", help="JSON file with the filter's plugin configuration.")
WasmOpt = typer.Option(None, help="Filter module (default: filter/dist/sp_istio_cache.wasm, built if missing).")
ConcOpt = typer.Option(2, help="Envoy worker threads (--concurrency).")
LogOpt = typer.Option("info", help="Envoy wasm log level (debug shows every cache decision).")
FailOpt = typer.Option("open", "--fail-strategy", help="What Envoy does when the filter's VM fails: open (the "
                       "request in flight gets a 503, then traffic bypasses the filter until restart) | closed "
                       "(503 for every request until restart) | reload (503 until a new VM is up, about 1 s). "
                       "docs/deploy.md.")


@app.command()
def up(variant: str = VariantOpt, runtime: str = RuntimeOpt, storage: str = StorageOpt,
       redis_url: Optional[str] = RedisOpt, backend_replicas: int = ReplicasOpt,
       plugin_config: Optional[Path] = ConfigOpt, wasm: Optional[Path] = WasmOpt,
       concurrency: int = ConcOpt, log_level: str = LogOpt, fail_strategy: str = FailOpt,
       cpu_limit: Optional[float] = CpuOpt, memory_limit: Optional[str] = MemOpt,
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
    spec = _spec(variant, runtime, storage, plugin_config, wasm, concurrency, log_level, fail_strategy=fail_strategy,
                 redis_url=redis_url, backend_replicas=backend_replicas, cpu_limit=cpu_limit,
                 memory_limit=memory_limit)
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
        procutil.keep_children_on_exit()  # the recorded stack outlives this command; `down` stops it
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
def smoke(size: int = typer.Option(65536, min=0, help="Response body size in bytes (the store limit is raised to fit "
                                                      "it unless --plugin-config sets max_response_body_bytes)."),
          runtime: str = RuntimeOpt, storage: str = StorageOpt, redis_url: Optional[str] = RedisOpt,
          backend_replicas: int = ReplicasOpt,
          plugin_config: Optional[Path] = ConfigOpt, wasm: Optional[Path] = WasmOpt,
          fail_strategy: str = FailOpt, cpu_limit: Optional[float] = CpuOpt,
          memory_limit: Optional[str] = MemOpt) -> None:
    """Start a fresh stack, GET /bytes/SIZE twice (MISS, then HIT) and print a one-line verdict."""
    from .smoke import run_smoke
    from .stack import Stack

    spec = _spec("filter", runtime, storage, plugin_config, wasm, 2, "info", fit_response_bytes=size,
                 fail_strategy=fail_strategy, redis_url=redis_url, backend_replicas=backend_replicas,
                 cpu_limit=cpu_limit, memory_limit=memory_limit)
    _sigterm_as_exit()
    try:
        with Stack(spec) as stack:
            result = run_smoke(stack, size)
    except Exception as exc:  # noqa: BLE001
        _fail(f"smoke could not run: {exc}")
    typer.echo(result.verdict())  # one line, never wrapped
    if not result.ok:
        raise typer.Exit(1)


from .bench.cli import register as _register_bench  # noqa: E402 - bench, compare, profile

_register_bench(app)


@app.command()
def report(params: str = typer.Option("quick", "--params", help="Parameter set: quick | full | ci (notebooks/params/) "
                                                                "or a YAML file."),
           out: Optional[Path] = typer.Option(None, "--out",
                                              help="Reports root (default: the checkout's reports/); the run goes to "
                                                   "OUT/<UTC time>/, OUT/latest points at it."),
           set_: list[str] = typer.Option([], "-p", "--set",
                                          help="Override one parameter: key=value, value parsed as YAML (-p users=5 "
                                               "-p payload_bytes=[1024,4096]); relative paths are from the current "
                                               "directory."),
           only: Optional[str] = typer.Option(None, help="Comma-separated steps to run (e.g. 04_size_limit_tuning "
                                                         "with -p run_dir=...); the report says which did not run."),
           kernel: str = typer.Option("sp-istio-cache",
                                      help="Jupyter kernel name; registered for this venv when missing."),
           progress: str = typer.Option("auto", help="auto (rich on a terminal, a line per step and cell otherwise) | "
                                                     "bar | lines | none."),
           no_progress: bool = typer.Option(False, "--no-progress",
                                            help="No progress display (same as --progress none).")) -> None:
    """Run the notebooks (build → smoke → benchmark → tuning) with papermill into OUT/<UTC time>/:
    executed notebooks, HTML, PNG charts, results, recommended_plugin_config.json with its verdict,
    summary.md. Exit 0 passed, 1 a step failed, 2 bad parameters, 3 recommendation refused,
    4 cells over the failure gate, 130 interrupted."""
    from .report.command import run

    code = run(params, set_, out, only=only, kernel=kernel, progress="none" if no_progress else progress,
               console=console, err=err)
    raise typer.Exit(code)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


# -- Istio: render, validate, deploy (src/sp_istio_cache/istio/commands.py) --------------------------
from .istio.commands import deploy_app, istio_app, validate_module  # noqa: E402 - after the app it extends

app.add_typer(istio_app, name="istio")
app.add_typer(deploy_app, name="deploy")
app.command("validate")(validate_module)
app.command("conformance")(conformance_command)  # issue 12: the cache-tests.fyi suite (docs/conformance.md)

from .backend.cli import backend_image_app  # noqa: E402 - the backend image commands

app.add_typer(backend_image_app, name="backend-image")
