"""``summary.md`` of a report, rendered with Jinja2 from the files the steps wrote (never from a
kernel's memory): build.json, smoke.json, bench/results.parquet, tuning.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from ..analysis.charts import human_bytes

MIB = 1024 * 1024


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _fmt(value: float, spec: str = "{:.2f}") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else spec.format(value)


def headline_tables(frame: pd.DataFrame) -> dict[str, Any]:
    """Rows of the summary's tables from a results table: latency ratios per size × hit ratio,
    HIT vs MISS per size, memory over the baseline per size, flagged cells."""
    rows = frame[(frame["outcome"] == "ALL") & (frame["request_body_bytes"] == 0)]
    ratios = []
    for (size, h), g in rows.groupby(["payload_bytes", "target_hit_ratio"]):
        r = {"size": human_bytes(size), "hit_ratio": f"{h:g}"}
        for variant in ("filter-off", "filter", "envoy-cache"):
            v = g[g["variant"] == variant]
            r[f"{variant}_p50"] = _fmt(v["p50_ratio"].iloc[0]) if len(v) else "–"
            r[f"{variant}_p99"] = _fmt(v["p99_ratio"].iloc[0]) if len(v) else "–"
        ratios.append(r)
    hit_miss = []
    filt = frame[(frame["variant"] == "filter") & (frame["request_body_bytes"] == 0)]
    for size, g in filt.groupby("payload_bytes"):
        def best(outcome: str) -> pd.Series | None:
            o = g[g["outcome"] == outcome]
            return None if o.empty else o.sort_values("requests").iloc[-1]
        hit, miss = best("HIT"), best("MISS")
        base = rows[(rows["variant"] == "baseline") & (rows["payload_bytes"] == size)]["p50_us"]
        hit_miss.append({
            "size": human_bytes(size),
            "hit_p50": _fmt(hit["p50_us"], "{:,.0f}") if hit is not None else "–",
            "hit_p99": _fmt(hit["p99_us"], "{:,.0f}") if hit is not None else "–",
            "miss_p50": _fmt(miss["p50_us"], "{:,.0f}") if miss is not None else "–",
            "miss_p99": _fmt(miss["p99_us"], "{:,.0f}") if miss is not None else "–",
            "ratio": _fmt(hit["p50_us"] / miss["p50_us"]) if hit is not None and miss is not None else "–",
            "base_p50": _fmt(base.median(), "{:,.0f}") if len(base) else "–"})
    memory = []
    for size, g in rows.groupby("payload_bytes"):
        r = {"size": human_bytes(size)}
        base = g[g["variant"] == "baseline"]["rss_max_bytes"]
        r["base"] = _fmt(base.max() / MIB, "{:.1f}") if len(base) else "–"
        for variant in ("filter-off", "filter", "envoy-cache"):
            v = g[g["variant"] == variant]["rss_over_baseline_bytes"]
            r[variant] = _fmt(v.max() / MIB, "{:+.1f}") if len(v) else "–"
        buf = g[g["variant"] == "filter"]["buffered_body_bytes_max"]
        r["buffered"] = human_bytes(buf.max()) if len(buf) and not math.isnan(buf.max()) else "–"
        memory.append(r)
    flags = []
    limited = rows[rows["generator_limited"].astype(bool)]
    if len(limited):
        flags.append(f"{len(limited)} generator-limited cell(s): {', '.join(limited['cell_id'])}")
    mismatch = rows[rows["upstream_mismatch"].astype(bool)]
    if len(mismatch):
        flags.append(f"upstream count mismatch in {', '.join(mismatch['cell_id'])}")
    return {"ratios": ratios, "hit_miss": hit_miss, "memory": memory, "flags": flags}


def _tuning(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if not doc:
        return None
    from ..analysis.tuning import Budget

    b = doc["budget"]
    return {"budget_text": Budget(**b).describe(), "config": json.dumps(doc["plugin_config"], indent=2),
            "response": doc["response"]["reason"], "request": doc["request"]["reason"],
            "copies": f"{b['copies_per_stream']:g}", "concurrency": b["concurrency"]}


def write_summary(out_dir: Path, report: Any, failure: Exception | None) -> Path:
    """Render ``out_dir/summary.md``; a section whose file is missing is left out."""
    out_dir = Path(out_dir)
    context: dict[str, Any] = {
        "name": out_dir.name, "ok": failure is None, "error": str(failure) if failure else "",
        "steps": report.steps, "wall_seconds": report.wall_seconds,
        "params_source": json.loads((out_dir / "report.json").read_text()).get("params_source") or "given",
        "build": _read_json(out_dir / "build.json"), "smoke": _read_json(out_dir / "smoke.json"),
        "tuning": _tuning(_read_json(out_dir / "tuning.json")),
    }
    results = out_dir / "bench" / "results.parquet"
    if results.exists():
        frame = pd.read_parquet(results)
        context.update(headline_tables(frame))
        run = _read_json(out_dir / "bench" / "run.json") or {}
        p = run.get("parameters", {})
        context["matrix_note"] = (
            f"{frame['cell_id'].nunique()} cells: {', '.join(p.get('variants', []))}; "
            f"{p.get('users')} closed-loop users, {p.get('duration_s')} s per cell"
            + (f", fixed rate {p.get('rate')} rps" if p.get("rate") else "")
            + f"; {run.get('environment', {}).get('cpu_cores')} cores ({run.get('environment', {}).get('cpu_model')}).")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=False,
                             undefined=jinja2.ChainableUndefined, trim_blocks=False, keep_trailing_newline=True)
    text = env.get_template("summary.md.j2").render(**context)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    path = out_dir / "summary.md"
    path.write_text(text)
    return path
