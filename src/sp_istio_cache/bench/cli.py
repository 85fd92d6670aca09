"""The ``bench``, ``compare`` and ``profile`` commands of ``sp-istio-cache``.

The ``bench`` options are derived from :class:`~sp_istio_cache.bench.scenario.Matrix`: each field
that declares a ``cli`` flag becomes an option with the field's description and default, and the
values go through the same model as a matrix file (flags override the file's keys). List values
are comma-separated (``--sizes 1024,262144``); a value listed twice is refused before anything
runs.

Exit codes of ``bench``: 0 every repetition passed the failure gate; 1 a repetition failed it
(named) or the run stopped; 2 refused before anything ran (bad option, module identity, profile);
130 interrupted.
"""

from __future__ import annotations

import inspect
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.markup import escape

from ..paths import DIST_WASM, REPO_ROOT
from .scenario import Matrix, RuntimeOptions

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
profile_app = typer.Typer(help="Traffic profiles: import one from real traffic for `bench --profile`.",
                          no_args_is_help=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(code)


def _schema_extra(info: FieldInfo) -> dict[str, Any]:
    """The field's ``json_schema_extra`` (the CLI flag and hints), {} when it has none."""
    return info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}


def _cli_fields() -> list[tuple[str, FieldInfo, str]]:
    """(dotted field name, field, flag) of every Matrix option, in declaration order."""
    out = []
    for name, info in Matrix.model_fields.items():
        if name == "runtime_options":
            for sub, sub_info in RuntimeOptions.model_fields.items():
                out.append((f"runtime_options.{sub}", sub_info, str(_schema_extra(sub_info)["cli"])))
            continue
        extra = _schema_extra(info)
        if "cli" in extra:
            out.append((name, info, str(extra["cli"])))
    return out


def _param_type(info: FieldInfo) -> tuple[type, str]:
    """(the option's Python type, the help's suffix) from the field's default."""
    default = info.get_default(call_default_factory=True)
    extra = _schema_extra(info)
    if extra.get("file"):
        return Path, " A JSON file."
    if isinstance(default, tuple):
        listed = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
        return str, f" Comma-separated (default {listed})."
    if default in ("", None):
        shown = ""
    else:
        shown = f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
    if isinstance(default, bool):
        return bool, shown
    if isinstance(default, int):
        return int, shown
    if isinstance(default, float):
        return float, shown
    if info.annotation in (float | None,):
        return float, shown
    return str, shown


def _matrix_parameters() -> list[inspect.Parameter]:
    params = []
    for dotted, info, flag in _cli_fields():
        typ, suffix = _param_type(info)
        params.append(inspect.Parameter(
            dotted.replace(".", "__"), inspect.Parameter.KEYWORD_ONLY, annotation=Optional[typ],
            default=typer.Option(None, flag, help=f"{info.description}{suffix}", show_default=False)))
    return params


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        _fail(f"cannot read plugin config {path}: {exc}", 2)
    if not isinstance(data, dict):
        _fail(f"plugin config {path} must be a JSON object", 2)
    return data


def flags_to_data(values: dict[str, Any]) -> dict[str, Any]:
    """The matrix keys given on the command line (None = not given)."""
    data: dict[str, Any] = {}
    runtime_options: dict[str, Any] = {}
    for dotted, info, _flag in _cli_fields():
        value = values.get(dotted.replace(".", "__"))
        if value is None:
            continue
        extra = _schema_extra(info)
        if extra.get("file"):
            value = _load_json(value)
        if dotted.startswith("runtime_options."):
            runtime_options[dotted.split(".", 1)[1]] = value
        else:
            data[dotted] = value
    if runtime_options:
        data["runtime_options"] = runtime_options
    return data


def _bench(**values: Any) -> None:
    from .gate import check_run
    from .identity import ModuleIdentityError
    from .profile import ProfileError
    from .runner import run_matrix
    from .scenario import ScenarioError, load_matrix, matrix_from, read_matrix_file
    from .summary import print_summary

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    matrix_file, wasm, out = values.pop("matrix"), values.pop("wasm"), values.pop("out")
    progress = "none" if values.pop("no_progress") else values.pop("progress")
    values.pop("progress", None)
    try:
        base = {}
        if matrix_file is not None:
            load_matrix(matrix_file)  # the file alone first: its errors name the file
            base = read_matrix_file(matrix_file)
        m = matrix_from(flags_to_data(values), "flags", base=base)
    except ScenarioError as exc:
        _fail(str(exc), 2)
    out = out or REPO_ROOT / "reports" / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    try:
        result = run_matrix(m, out, wasm_path=wasm or DIST_WASM, progress=progress, console=err)
    except (ModuleIdentityError, ProfileError, FileNotFoundError) as exc:
        _fail(str(exc), 2)
    except (KeyboardInterrupt, SystemExit):
        _fail(f"interrupted; the repetitions that finished are in {out} (run.json status: interrupted)", 130)
    except Exception as exc:  # noqa: BLE001 - e.g. the filter build failed: one clear line
        _fail(f"bench failed: {type(exc).__name__}: {exc}\n(run.json in {out})")
    print_summary(out, console)
    failures = check_run(out, m.max_error_rate)
    console.print(f"wrote {out}/run.json and cells/ ({result.wall_seconds:.0f} s); "
                  f"{len(result.manifest.findings)} finding(s)", highlight=False)
    if failures:
        _fail(f"{len(failures)} cell repetition(s) failed the gate (--max-error-rate {m.max_error_rate:g}):\n"
              + "\n".join(f"  {f.line()}" for f in failures))


def _bench_signature() -> inspect.Signature:
    head = [
        inspect.Parameter("matrix", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--matrix",
                                               help="Matrix YAML (keys: the options below without '--'; see "
                                                    "bench/matrix-default.yaml); flags override it.")),
    ]
    tail = [
        inspect.Parameter("wasm", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--wasm",
                                               help="Filter module (default filter/dist/sp_istio_cache.wasm, built if "
                                                    "missing); its sha256 must match <module>.sha256.")),
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--out",
                                               help="Run directory (default reports/bench-<UTC time>).")),
        inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                          default=typer.Option("auto", "--progress", help="auto (a bar on a terminal, one line per "
                                                                         "cell otherwise) | bar | lines | none.")),
        inspect.Parameter("no_progress", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--no-progress", help="Same as --progress none.")),
    ]
    return inspect.Signature(head + _matrix_parameters() + tail)


def bench(**values: Any) -> None:
    """Run a benchmark matrix (each cell --repetitions times, interleaved, plus the generator floor)
    and write raw records into OUT: run.json, cells/<cell>/rep-<n>/{cell.json,samples*.json}
    (docs/bench-files.md). Exit 1 names the cells over --max-error-rate."""
    _bench(**values)


# typer reads the options from inspect.signature(), which honours __signature__; typeshed does not
# declare that attribute on functions, hence the ignore
bench.__signature__ = _bench_signature()  # type: ignore[attr-defined]
bench.__annotations__ = {p.name: p.annotation for p in _bench_signature().parameters.values()}


def compare(run_a: Path = typer.Argument(..., help="Reference run directory."),
            run_b: Path = typer.Argument(..., help="Candidate run directory."),
            tolerance: float = typer.Option(0.10, help="Allowed relative worsening, e.g. 0.10 = 10 %.")) -> None:
    """Per-cell ratios B/A of the median p50, p99, throughput and RSS over the repetitions; exit 1
    when a cell regresses past the tolerance, 2 when a run is unreadable."""
    from ..analysis.compare import compare_frames
    from ..analysis.report import print_comparison
    from ..analysis.results import build_frame
    from .records import RecordError
    from .samples import SamplesError
    from .table import ResultsError

    try:
        result = compare_frames(build_frame(run_a), build_frame(run_b), tolerance)
    except (RecordError, ResultsError, SamplesError, ValueError) as exc:
        _fail(str(exc), code=2)
    if result.table.empty:
        _fail(f"{run_a} and {run_b} have no cell in common", code=2)
    print_comparison(result, console)
    if result.regressed:
        raise typer.Exit(1)


@profile_app.command("import")
def profile_import(
    source: Path = typer.Argument(..., help="An Envoy access log, a HAR file, or the backend's SQLite database."),
    kind: str = typer.Option("auto", "--from", help="envoy-log | har | backend | auto (from the file: .har, "
                                                     ".sqlite/.db, else an access log)."),
    out: Path = typer.Option(..., "--out", help="Profile to write: .csv, .yaml or .json."),
    name: Optional[str] = typer.Option(None, help="Profile name (default: the output file's name)."),
) -> None:
    """Build a traffic profile for `bench --profile` from real traffic: requests grouped by
    method and path, weight = count, sizes = medians (docs/bench.md lists the formats read)."""
    from .profile import ProfileError, write_profile
    from .profile_import import import_profile

    try:
        profile = import_profile(source, kind=kind, name=name or out.stem)
    except ProfileError as exc:
        _fail(str(exc), 2)
    write_profile(profile, out)
    total = sum(r.weight for r in profile.rows)
    console.print(f"wrote {out}: {len(profile.rows)} requests kinds from {total:g} requests ({profile.source})",
                  highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``bench``, ``compare`` and ``profile`` to the main command."""
    app.command("bench")(bench)
    app.command("compare")(compare)
    app.add_typer(profile_app, name="profile")
