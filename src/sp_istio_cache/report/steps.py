"""What the first two report notebooks do, as plain functions (the notebooks only call these),
and helpers every step shares. The benchmark and tuning steps are in
:mod:`sp_istio_cache.report.bench_step` and :mod:`sp_istio_cache.report.tuning_step`.

Each step writes its evidence into the report directory (``out_dir``) as files, so the next step
and ``summary.md`` read files, never a kernel's memory:

=====================  =====================================================================
step                   writes
=====================  =====================================================================
01_build_filter        ``build.json``, ``charts/wasm_sections.png``
02_smoke               ``runtime.json``, ``smoke.json``, ``smoke.csv``, ``charts/smoke_latency.png``
03_benchmark_matrix    ``bench/`` (the run: run.json, cells/, results.parquet, cells.csv),
                       ``gate.json``, ``charts/*.png`` (benchmark charts)
04_size_limit_tuning   ``recommended_plugin_config.json`` (with its verdict), ``tuning.json``,
                       ``tuning.csv``, ``charts/tuning_*.png``
=====================  =====================================================================
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis import charts

CHARTS = "charts"


class StepError(RuntimeError):
    """A step's own check failed (smoke verdict, nothing measured); the message says which."""


def write_json(path: Path, doc: Any) -> Path:
    """Write ``doc`` as indented JSON (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def show(paths: list[Path] | Path) -> None:
    """Display PNG files in the notebook (the same files the report keeps)."""
    from IPython.display import Image, display

    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        display(Image(filename=str(p)))


def show_table(frame: pd.DataFrame, formats: dict[str, str] | None = None, caption: str = "") -> Any:
    """A table for the notebook: numbers formatted per column (``formats``: column → format
    string such as ``"{:,.0f} µs"``), no index."""
    shown = frame.copy()
    for col, fmt in (formats or {}).items():
        if col in shown:
            shown[col] = [("–" if pd.isna(v) else fmt.format(v))
                          for v in shown[col]]
    styler = shown.style.hide(axis="index")
    return styler.set_caption(caption) if caption else styler


# -- 01 build ------------------------------------------------------------------------------------
WASM_SECTIONS = {0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
                 7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "datacount", 13: "tag"}


def _uleb128(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def wasm_sections(path: Path) -> list[tuple[str, int]]:
    """(section name, bytes) of a core WebAssembly module in file order (WebAssembly core spec
    §5.5.2: id byte, u32 LEB128 size); custom sections are named ``custom:<name>``.

    Raises:
        StepError: not a core wasm module (e.g. a Component Model component), names the file.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"\0asm" or data[4:8] != b"\x01\0\0\0":
        raise StepError(f"{path}: not a core WebAssembly module (magic/version {data[:8].hex()})")
    pos, out = 8, []
    while pos < len(data):
        sid = data[pos]
        size, body = _uleb128(data, pos + 1)
        name = WASM_SECTIONS.get(sid, f"id{sid}")
        if sid == 0:
            nlen, npos = _uleb128(data, body)
            name = "custom:" + data[npos:npos + nlen].decode("utf-8", "replace")
        out.append((name, size))
        pos = body + size
    return out


def module_exports(path: Path) -> list[str]:
    """Export names of the module, read by wasmtime (no instantiation)."""
    import wasmtime

    module = wasmtime.Module.from_file(wasmtime.Engine(), str(path))
    return [e.name for e in module.exports]


@dataclass
class BuildInfo:
    """The built module: path, size in bytes, sha256 (checked against the build record),
    optimize mode, build seconds, the proxy-wasm exports seen."""

    wasm_path: str
    size_bytes: int
    sha256: str
    optimize: str
    seconds: float
    proxy_wasm_exports: list[str]


def build_step(out_dir: str | Path, optimize: str = "ReleaseSafe") -> tuple[BuildInfo, list[Path]]:
    """Build the filter with :func:`sp_istio_cache.build.build_filter` (the one build path),
    check the module against its build record and the proxy-wasm ABI, write ``build.json`` and
    the section-size chart.

    Raises:
        BuildError: zig failed; IstioConfigError: the module is not what the build recorded;
        StepError: no ``proxy_abi_version_0_2_1`` export (Envoy would refuse it).
    """
    from ..build import build_filter
    from .identity import verify_module

    out = Path(out_dir)
    t0 = time.monotonic()
    result = build_filter(optimize=optimize)
    seconds = time.monotonic() - t0
    wasm = Path(result.wasm_path)
    digest = verify_module(wasm)
    exports = module_exports(wasm)
    if "proxy_abi_version_0_2_1" not in exports:
        raise StepError(f"{wasm}: no proxy_abi_version_0_2_1 export; Envoy would refuse it")
    info = BuildInfo(wasm_path=str(wasm), size_bytes=wasm.stat().st_size, sha256=digest, optimize=optimize,
                     seconds=round(seconds, 2), proxy_wasm_exports=[e for e in exports if e.startswith("proxy_")])
    sections = wasm_sections(wasm)
    write_json(out / "build.json", {**asdict(info), "sections": dict(sections)})
    png = charts.bar_chart([n for n, _ in sections], [s / 1024 for _, s in sections],
                           path=out / CHARTS / "wasm_sections.png",
                           title=f"Filter module sections ({info.size_bytes / 1024:,.1f} KiB, {optimize})",
                           xlabel="size (KiB)")
    return info, [png]


# -- 02 smoke ------------------------------------------------------------------------------------
#: the freshness the smoke's responses carry (the filter stores only what asks to be stored, RFC 9111)
SMOKE_FRESHNESS = "max-age=300"


def smoke_step(out_dir: str | Path, sizes: list[int], *, runtime: str = "auto", sidecar_cpu_limit: float = 1.0,
               sidecar_memory_limit: int | str = "128Mi", envoy_path: str = "",
               repeats: int = 20) -> tuple[pd.DataFrame, list[Path]]:
    """Per size, on one fresh ``filter`` stack (in Docker with the sidecar limits when an engine
    answers, :mod:`~sp_istio_cache.report.runtime_choice`): the smoke sequence (MISS → store →
    HIT, bytes identical, upstream served once), then ``repeats`` timed HITs of one stored key
    and ``repeats`` timed MISSes of fresh keys. Writes ``smoke.json``, ``smoke.csv`` and a chart.

    Raises:
        EnvoyStartError (or any start failure): Envoy did not start.
        StepError: a smoke verdict failed (the message carries every verdict).
    """
    from ..bench.keys import request_path
    from ..httpclient import request
    from ..smoke import run_smoke
    from ..stack import Stack, StackSpec
    from .runtime_choice import runtime_for

    out = Path(out_dir)
    choice = runtime_for(out, runtime, sidecar_cpu_limit, sidecar_memory_limit)
    spec = StackSpec(variant="filter", runtime=choice.name, envoy_path=Path(envoy_path) if envoy_path else None,
                     runtime_options=dict(choice.options))
    rows, verdicts = [], []
    with Stack(spec, out / "smoke-stack") as stack:
        for size in sizes:
            result = run_smoke(stack, int(size))
            verdicts.append(result.verdict())
            size_ok = result.ok
            hot = request_path(int(size), "smoke-hot", seed="smoke", cache_control=SMOKE_FRESHNESS)
            stores = stack.backend_stats()["stores"]
            request(stack.listener_url + hot)  # stored, then timed as hits
            stack.wait_for_stores(stores + 1)
            timings: dict[str, list[float]] = {"HIT": [], "MISS": []}
            for i in range(repeats):
                cold = request_path(int(size), f"smoke-cold-{i}", seed="smoke", cache_control=SMOKE_FRESHNESS)
                for outcome, path in (("HIT", hot), ("MISS", cold)):
                    t0 = time.perf_counter()
                    reply = request(stack.listener_url + path)
                    timings[outcome].append((time.perf_counter() - t0) * 1e6)
                    if reply.cache != outcome:
                        verdicts.append(f"timed {outcome} request {path} answered {reply.cache}")
                        size_ok = False
            for outcome, values in timings.items():
                rows.append({"payload_bytes": int(size), "outcome": outcome, "requests": len(values),
                             "median_us": statistics.median(values), "max_us": max(values), "smoke_ok": size_ok})
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "smoke.csv", index=False)
    ok = bool(frame["smoke_ok"].all())
    write_json(out / "smoke.json", {"ok": ok, "runtime": choice.name, "limits_enforced": choice.enforced,
                                    "runtime_note": choice.note, "verdicts": verdicts,
                                    "timings": frame.to_dict("records")})
    if not ok:
        raise StepError("smoke failed:\n" + "\n".join(verdicts))
    frame["size"] = frame["payload_bytes"].map(charts.human_bytes)
    png = charts.grouped_bar_chart(frame, x="size", groups="outcome", value="median_us", high="max_us",
                                   path=out / CHARTS / "smoke_latency.png", log=True,
                                   title=f"Smoke: one client, median (bar) and slowest (whisker) of {repeats} "
                                         f"requests ({choice.name} Envoy)",
                                   ylabel="latency per request (log scale)")
    return frame.drop(columns="size"), [png]
