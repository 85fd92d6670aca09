"""What the four report notebooks do, as plain functions (the notebooks only call these).

Each step writes its evidence into the report directory (``out_dir``) as files, so the next step
and ``summary.md`` read files, never the previous kernel's memory:

=====================  =====================================================================
step                   writes
=====================  =====================================================================
01_build_filter        ``build.json``, ``charts/wasm_sections.png``
02_smoke               ``smoke.json``, ``smoke.csv``, ``charts/smoke_latency.png``
03_benchmark_matrix    ``bench/`` (run dir: run.json, results.parquet/csv, cells/),
                       ``results.csv``, ``charts/{latency_vs_size,latency_ratio_vs_size,
                       overhead_vs_size,outcome_latency_cdf}.png``
04_size_limit_tuning   ``recommended_plugin_config.json``, ``tuning.json``, ``tuning.csv``,
                       ``charts/tuning_response.png`` (+ ``tuning_request.png``)
=====================  =====================================================================

Locust never runs in the kernel: :func:`benchmark_step` uses the bench API, which starts Locust
as a subprocess per cell.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis import charts
from ..paths import DIST_WASM, FILTER_DIR

CHARTS = "charts"


class StepError(RuntimeError):
    """A step's own check failed (smoke verdict, empty results); the message says which."""


def _write_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def show(paths: list[Path] | Path) -> None:
    """Display PNG files in the notebook (the same files the report keeps)."""
    from IPython.display import Image, display

    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        display(Image(filename=str(p)))


# -- 01 build ------------------------------------------------------------------------------------
WASM_SECTIONS = {0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
                 7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "datacount", 13: "tag"}


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def wasm_sections(path: Path) -> list[tuple[str, int]]:
    """(section name, bytes) of a core WebAssembly module, in file order; custom sections are
    named ``custom:<name>``.

    Raises:
        StepError: not a core wasm module (e.g. a Component Model component), names the file.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"\0asm" or data[4:8] != b"\x01\0\0\0":
        raise StepError(f"{path}: not a core WebAssembly module (magic/version {data[:8].hex()})")
    pos, out = 8, []
    while pos < len(data):
        sid = data[pos]
        size, body = _leb128(data, pos + 1)
        name = WASM_SECTIONS.get(sid, f"id{sid}")
        if sid == 0:
            nlen, npos = _leb128(data, body)
            name = "custom:" + data[npos:npos + nlen].decode("utf-8", "replace")
        out.append((name, size))
        pos = body + size
    return out


@dataclass
class BuildInfo:
    """The built module: path, size in bytes, sha256, optimize mode, seconds, exports seen."""

    wasm_path: str
    size_bytes: int
    sha256: str
    optimize: str
    seconds: float
    builder: str
    proxy_wasm_exports: list[str]


def _build(optimize: str) -> tuple[Path, str]:
    try:
        from ..build import build_filter  # the project's builder
    except ImportError:
        build_filter = None
    if build_filter is not None:
        res = build_filter(optimize=optimize)
        return Path(getattr(res, "wasm_path", DIST_WASM)), "sp_istio_cache.build"
    DIST_WASM.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "ziglang", "build-exe", str(FILTER_DIR / "src" / "main.zig"),
           "-target", "wasm32-freestanding", "-fno-entry", "-rdynamic", "-O", optimize,
           f"-femit-bin={DIST_WASM}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=DIST_WASM.parent)
    if proc.returncode != 0:
        raise StepError(f"zig build failed ({' '.join(cmd)}):\n{proc.stdout}{proc.stderr}")
    digest = hashlib.sha256(DIST_WASM.read_bytes()).hexdigest()
    DIST_WASM.with_suffix(".wasm.sha256").write_text(f"{digest}  {DIST_WASM.name}\n")
    return DIST_WASM, "zig build-exe"


def _exports(path: Path) -> list[str]:
    """Export names of the module (to show it speaks proxy-wasm ABI 0.2.1)."""
    data = Path(path).read_bytes()
    pos = 8
    while pos < len(data):
        sid = data[pos]
        size, body = _leb128(data, pos + 1)
        if sid == 7:
            count, p = _leb128(data, body)
            names = []
            for _ in range(count):
                nlen, p = _leb128(data, p)
                names.append(data[p:p + nlen].decode())
                p += nlen + 1  # kind byte
                _, p = _leb128(data, p)
            return names
        pos = body + size
    return []


def build_step(out_dir: str | Path, optimize: str = "ReleaseSafe") -> tuple[BuildInfo, list[Path]]:
    """Build the filter, write ``build.json`` and the section-size chart.

    Raises:
        StepError / BuildError: the build failed or the module does not export the proxy-wasm ABI.
    """
    out = Path(out_dir)
    t0 = time.monotonic()
    wasm, builder = _build(optimize)
    seconds = time.monotonic() - t0
    data = wasm.read_bytes()
    exports = _exports(wasm)
    abi = [e for e in exports if e.startswith("proxy_")]
    if "proxy_abi_version_0_2_1" not in exports:
        raise StepError(f"{wasm}: no proxy_abi_version_0_2_1 export; Envoy would refuse it")
    info = BuildInfo(wasm_path=str(wasm), size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                     optimize=optimize, seconds=round(seconds, 2), builder=builder, proxy_wasm_exports=abi)
    sections = wasm_sections(wasm)
    _write_json(out / "build.json", {**asdict(info), "sections": dict(sections)})
    png = charts.bar_chart([n for n, _ in sections], [s / 1024 for _, s in sections],
                           path=out / CHARTS / "wasm_sections.png",
                           title=f"Filter module sections ({len(data) / 1024:,.1f} KiB, {optimize})",
                           xlabel="size (KiB)")
    return info, [png]


# -- 02 smoke ------------------------------------------------------------------------------------
def smoke_step(out_dir: str | Path, sizes: list[int], runtime: str = "local", envoy_path: str = "",
               runtime_options: dict[str, Any] | None = None, repeats: int = 20) -> tuple[pd.DataFrame, list[Path]]:
    """Per size, on one fresh ``filter`` stack: the smoke sequence (MISS → store → HIT, bytes
    identical, upstream served once), then ``repeats`` timed HITs of that key and ``repeats``
    timed MISSes of fresh keys. Writes ``smoke.json``, ``smoke.csv`` and a timing chart.

    Raises:
        EnvoyStartError (or any start failure): Envoy did not start.
        StepError: a smoke verdict failed (the message carries every verdict).
    """
    from ..bench.keys import request_path
    from ..httpclient import request
    from ..smoke import run_smoke
    from ..stack import Stack, StackSpec

    out = Path(out_dir)
    spec = StackSpec(variant="filter", runtime=runtime, envoy_path=Path(envoy_path) if envoy_path else None,
                     runtime_options=dict(runtime_options or {}))
    rows, verdicts = [], []
    with Stack(spec, out / "smoke-stack") as stack:
        for size in sizes:
            result = run_smoke(stack, int(size))
            verdicts.append(result.verdict())
            size_ok = result.ok
            timings: dict[str, list[float]] = {"HIT": [], "MISS": []}
            for i in range(repeats):
                for outcome, path in (("HIT", result.path),
                                      ("MISS", request_path(int(size), f"smoke-{i}", seed="smoke"))):
                    t0 = time.perf_counter()
                    reply = request(stack.listener_url + path)
                    timings[outcome].append((time.perf_counter() - t0) * 1e6)
                    if reply.cache != outcome:
                        verdicts.append(f"timed {outcome} request {path} answered {reply.cache}")
                        size_ok = False
            for outcome, values in timings.items():
                rows.append({"payload_bytes": int(size), "outcome": outcome, "requests": len(values),
                             "median_us": statistics.median(values), "max_us": max(values)})
            rows[-2]["smoke_ok"] = rows[-1]["smoke_ok"] = size_ok
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "smoke.csv", index=False)
    ok = bool(frame["smoke_ok"].all())
    _write_json(out / "smoke.json", {"ok": ok, "runtime": runtime, "verdicts": verdicts,
                                     "timings": frame.to_dict("records")})
    if not ok:
        raise StepError("smoke failed:\n" + "\n".join(verdicts))
    frame["size"] = frame["payload_bytes"].map(charts.human_bytes)
    png = charts.grouped_bar_chart(frame, x="size", groups="outcome", value="median_us",
                                   path=out / CHARTS / "smoke_latency.png", log=True,
                                   title=f"Smoke: one client, median of {repeats} requests ({runtime} Envoy)",
                                   ylabel="latency (µs, log scale)")
    return frame.drop(columns="size"), [png]


# -- 03 benchmark --------------------------------------------------------------------------------
def benchmark_step(out_dir: str | Path, *, variants: list[str], payload_bytes: list[int],
                   hit_ratios: list[float], request_body_bytes: list[int] | None = None, users: int = 10,
                   duration_s: float = 3.0, rate: float = 0.0, envoy_concurrency: int = 2,
                   runtime: str = "local", runtime_options: dict[str, Any] | None = None, envoy_path: str = "",
                   matrix_file: str = "") -> tuple[pd.DataFrame, list[Path]]:
    """Run the matrix into ``out_dir/bench`` (the bench API: a fresh stack per cell, Locust in
    its own process) and draw the four benchmark charts from its files. ``runtime_options``
    (docker: ``cpu_limit``, ``memory_limit``) and ``envoy_path`` reach every cell's stack; empty
    values keep those of ``matrix_file``.

    Raises:
        CellError: a cell failed (Envoy did not start, Locust failed); names the cell.
        ScenarioError: a bad matrix value, naming the key.
    """
    from ..bench.runner import run_matrix
    from ..bench.scenario import Matrix, load_matrix

    out = Path(out_dir)
    base = load_matrix(Path(matrix_file)) if matrix_file else Matrix()
    matrix = base.with_overrides(
        source="report parameters", variants=tuple(variants), payload_bytes=tuple(payload_bytes),
        hit_ratios=tuple(hit_ratios), request_body_bytes=tuple(request_body_bytes or [0]), users=users,
        duration_s=duration_s, rate=rate, envoy_concurrency=envoy_concurrency, runtime=runtime,
        runtime_options=dict(runtime_options) if runtime_options else None, envoy_path=envoy_path or None)
    try:
        result = run_matrix(matrix, out / "bench", progress=False)
    finally:
        prune_cache_databases(out / "bench")
    if result.frame is None or result.frame.empty:
        raise StepError(f"{out / 'bench'}: the benchmark produced no results")
    result.frame.to_csv(out / "results.csv", index=False)
    pngs = charts.write_benchmark_charts(result.frame, out / "bench", out / CHARTS)
    return result.frame, pngs


def prune_cache_databases(run_dir: Path) -> int:
    """Delete the backends' SQLite files under ``run_dir/cells/*/stack/`` (hundreds of MB of
    cached bodies, not evidence: entry counts and bytes are already in each cell.json); return
    the bytes freed."""
    freed = 0
    for db in Path(run_dir).glob("cells/*/stack/cache.sqlite3*"):
        freed += db.stat().st_size
        db.unlink()
    return freed


def cell_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The compact per-cell view shown in the notebook (ALL rows, µs, ratios, flags)."""
    cols = ["variant", "payload_bytes", "target_hit_ratio", "achieved_hit_ratio", "requests", "rps",
            "p50_us", "p99_us", "p50_ratio", "p99_ratio", "rss_over_baseline_bytes", "generator_limited"]
    return frame[frame["outcome"] == "ALL"][cols].reset_index(drop=True)


# -- 04 tuning -----------------------------------------------------------------------------------
def tuning_step(out_dir: str | Path, run_dir: str | Path = "", *, memory_budget_bytes: int,
                concurrency: int, p99_added_budget_us: float | None = None, p99_ratio_budget: float | None = None,
                copies_per_stream: float = 2.0, sidecar_cpu: float | None = None,
                base_plugin_config: dict[str, Any] | None = None) -> tuple[Any, list[Path]]:
    """Recommend the body-size limits for the stated budgets from a run's files and write
    ``recommended_plugin_config.json`` (schema-validated), ``tuning.json``, ``tuning.csv`` and
    the tuning chart(s). ``run_dir`` defaults to ``out_dir/bench``.

    Raises:
        GeneratorLimitedError: the recommendation would rest on generator-limited cells.
        NoSizeMeetsBudgetError: even the smallest measured size misses a budget.
        ResultsError: the run has no results.
    """
    from ..analysis.results import load_results
    from ..analysis.tuning import Budget, recommend

    out = Path(out_dir)
    run = Path(run_dir) if run_dir else out / "bench"
    frame = load_results(run)
    budget = Budget(memory_bytes=int(memory_budget_bytes), concurrency=int(concurrency),
                    p99_added_us=p99_added_budget_us, p99_ratio=p99_ratio_budget,
                    copies_per_stream=float(copies_per_stream), cpu_cores=sidecar_cpu)
    rec = recommend(frame, budget, base_plugin_config)
    _write_json(out / "recommended_plugin_config.json", rec.plugin_config)
    _write_json(out / "tuning.json", {"run_dir": str(run), **rec.as_dict()})
    tables = []
    pngs = []
    for choice, name in ((rec.response, "tuning_response.png"), (rec.request, "tuning_request.png")):
        if not choice.measured:
            continue
        tables.append(choice.table.assign(key=choice.key))
        pngs.append(charts.tuning_chart(choice.table, limit=choice.limit, memory_budget_bytes=budget.memory_bytes,
                                        p99_added_budget_us=budget.p99_added_us, p99_ratio_budget=budget.p99_ratio,
                                        concurrency=budget.concurrency, path=out / CHARTS / name,
                                        title=choice.key))
    pd.concat(tables).to_csv(out / "tuning.csv", index=False)
    return rec, pngs
