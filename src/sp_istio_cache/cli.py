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
RuntimeOpt = typer.Option("local", help="Envoy runtime.")
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
    """Stop the stack started by `up` (every process it recorded)."""
    from .stack import stop_detached

    stopped = stop_detached(STATE_FILE)
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


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
