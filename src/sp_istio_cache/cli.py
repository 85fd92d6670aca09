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
console = Console()
err = Console(stderr=True)
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
    except BuildError as exc:
        _fail(str(exc))
    console.print(f"built {res.wasm_path}\n  size    {res.size_bytes} bytes\n  sha256  {res.sha256}\n"
                  f"  optimize {res.optimize}, {res.seconds:.1f} s")


def _spec(variant: str, runtime: str, storage: str, plugin_config: Optional[Path], wasm: Optional[Path],
          concurrency: int, log_level: str):
    from .stack import StackSpec

    return StackSpec(variant=variant, runtime=runtime, storage=storage,
                     plugin_config=_load_plugin_config(plugin_config),
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
    from .stack import Stack, read_state, write_state

    if read_state(STATE_FILE):
        _fail(f"a stack is already up (see {STATE_FILE}); run `sp-istio-cache down` first")
    _sigterm_as_exit()
    workdir = STATE_DIR / "run"
    stack = Stack(_spec(variant, runtime, storage, plugin_config, wasm, concurrency, log_level), workdir)
    try:
        stack.start()
    except Exception as exc:  # noqa: BLE001 - report any start failure as one message
        _fail(f"stack did not start: {exc}")
    d = stack.describe()
    for key in ("listener", "admin", "backend", "upstream", "envoy_log"):
        if d[key]:
            console.print(f"{key:9} {d[key]}")
    if not foreground:
        write_state(STATE_FILE, d)
        console.print("stack is up; stop it with `sp-istio-cache down`")
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
    from .stack import read_state

    state = read_state(STATE_FILE)
    if state is None:
        _fail("no stack is up (start one with `sp-istio-cache up`)")
    text = Path(state["envoy_log"]).read_text(errors="replace").splitlines()
    if not all_lines:
        text = [ln for ln in text if "wasm" in ln or "sp_istio_cache" in ln or "sp-istio-cache" in ln]
    for ln in text[-lines:]:
        console.print(ln, highlight=False, markup=False)


@app.command()
def smoke(size: int = typer.Option(65536, help="Response body size in bytes."),
          runtime: str = RuntimeOpt, storage: str = StorageOpt,
          plugin_config: Optional[Path] = ConfigOpt, wasm: Optional[Path] = WasmOpt) -> None:
    """Start a fresh stack, GET /bytes/SIZE twice (MISS, then HIT) and print a one-line verdict."""
    from .smoke import run_smoke
    from .stack import Stack

    _sigterm_as_exit()
    try:
        with Stack(_spec("filter", runtime, storage, plugin_config, wasm, 2, "info")) as stack:
            result = run_smoke(stack, size)
    except Exception as exc:  # noqa: BLE001
        _fail(f"smoke could not run: {exc}")
    console.print(result.verdict(), highlight=False)
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
          runtime: Optional[str] = typer.Option(None, help="Envoy runtime (local)."),
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
        m = base.with_overrides(
            source="flags",
            variants=parse_list(variants, str, "--variants"), payload_bytes=parse_list(sizes, int, "--sizes"),
            request_body_bytes=parse_list(request_body_sizes, int, "--request-body-sizes"),
            hit_ratios=parse_list(hit_ratios, float, "--hit-ratios"), duration_s=duration, users=users,
            rate=rate, hot_keys=hot_keys, processes=processes, envoy_concurrency=concurrency,
            runtime=runtime, storage=storage,
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


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
