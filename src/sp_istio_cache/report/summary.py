"""``summary.md`` of a report, rendered with Jinja2 from the files the steps wrote (never from a
kernel's memory): ``report.json`` state, ``build.json``, ``runtime.json``, ``smoke.json``, the
run directory, ``gate.json`` and ``tuning.json``.

It opens with the title, the verdict and the recommendation, then what the figures say, in
units: medians over the repetitions with their interval, a difference called only when the
interval of a ratio excludes 1, nothing claimed at or below the generator floor.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from ..analysis.charts import human_bytes, human_us
from ..analysis.results import RunData, load_run
from .status import Report

MIB = 1024 * 1024


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def ratio_text(med: float, low: float, high: float) -> str:
    """``1.52× [1.41–1.63]``, or ``no difference (0.97–1.04)`` when the interval holds 1."""
    if _nan(med):
        return "–"
    if not _nan(low) and not _nan(high) and low <= 1.0 <= high:
        return f"no difference ({low:.2f}–{high:.2f})"
    return f"{med:.2f}× [{low:.2f}–{high:.2f}]"


def us_text(med: float, low: float, high: float) -> str:
    """``1.2 ms [1.1 ms–1.3 ms]``."""
    return "–" if _nan(med) else f"{human_us(med)} [{human_us(low)}–{human_us(high)}]"


def _get(frame: pd.DataFrame, **where: Any) -> pd.Series | None:
    rows = frame
    for col, value in where.items():
        rows = rows[rows[col] == value]
    return None if rows.empty else rows.iloc[0]


def latency_table(run: RunData) -> list[dict[str, str]]:
    """Rows: payload × hit ratio; p50 and p99 of filter-off, filter, envoy-cache as ratios to the
    baseline (per repetition), and whether the filter cell is at the generator floor."""
    c = run.cells[(run.cells["outcome"] == "ALL") & (run.cells["traffic"] == "synthetic")
                  & (run.cells["request_body_bytes"].fillna(0) == 0) & (run.cells["variant"] != "floor")]
    out = []
    for (size, h, delay), g in c.groupby(["payload_bytes", "target_hit_ratio", "upstream_delay_ms"]):
        row = {"size": human_bytes(size), "hit_ratio": f"{h:g}", "delay": f"{delay:g} ms"}
        base = _get(g, variant="baseline")
        row["baseline_p50"] = us_text(*(base[f"p50_us_{k}"] for k in ("median", "ci_low", "ci_high"))) \
            if base is not None else "–"
        for variant in ("filter-off", "filter", "envoy-cache"):
            v = _get(g, variant=variant)
            for q in ("p50", "p99"):
                row[f"{variant}_{q}"] = ratio_text(*(v[f"{q}_ratio_{k}"] for k in ("median", "ci_low", "ci_high"))) \
                    if v is not None else "–"
            if v is not None and not _nan(v["floor_p50_us_median"]) and v["p50_us_median"] <= v["floor_p50_us_median"]:
                row[f"{variant}_p50"] += " (at the floor)"
        out.append(row)
    return out


def floor_table(run: RunData) -> list[dict[str, Any]]:
    """The generator floor per payload: Locust against an Envoy that answers by itself."""
    f = run.cells[(run.cells["outcome"] == "ALL") & (run.cells["variant"] == "floor")]
    return [{"size": human_bytes(r["payload_bytes"]) if not _nan(r["payload_bytes"]) else "profile",
             "p50": us_text(r["p50_us_median"], r["p50_us_ci_low"], r["p50_us_ci_high"]),
             "p99": us_text(r["p99_us_median"], r["p99_us_ci_low"], r["p99_us_ci_high"]),
             "rps": f"{r['rps_median']:,.0f}", "reps": int(r["repetitions"])} for _, r in f.iterrows()]


def memory_table(run: RunData) -> list[dict[str, str]]:
    """Envoy memory per payload: the baseline's, and each variant's excess (worst hit ratio)."""
    c = run.cells[(run.cells["outcome"] == "ALL") & (run.cells["traffic"] == "synthetic")
                  & (run.cells["request_body_bytes"].fillna(0) == 0)]
    out = []
    for size, g in c.groupby("payload_bytes"):
        base = g[g["variant"] == "baseline"]["rss_mean_bytes_median"]
        row = {"size": human_bytes(size), "base": f"{base.max() / MIB:,.1f} MiB" if len(base) else "–"}
        for variant in ("filter-off", "filter", "envoy-cache"):
            v = g[g["variant"] == variant]
            if v.empty or v["rss_over_baseline_bytes_median"].isna().all():
                row[variant] = "–"
                continue
            worst = v.loc[v["rss_over_baseline_bytes_median"].idxmax()]
            row[variant] = (f"{worst['rss_over_baseline_bytes_median'] / MIB:+,.1f} MiB "
                            f"[{worst['rss_over_baseline_bytes_ci_low'] / MIB:+,.1f}–"
                            f"{worst['rss_over_baseline_bytes_ci_high'] / MIB:+,.1f}]")
        out.append(row)
    return out


def filter_metrics_lines(run: RunData) -> list[str]:
    """The filter's own timings (medians over the filter cells' repetitions) and its counters
    that say something went wrong (``store_dropped``, ``lookup_timeout``, ...), summed."""
    m = run.metrics[run.metrics["variant"] == "filter"]
    lines = []
    hist = m[m["kind"] == "histogram"]
    for name, g in hist.groupby("name"):
        q = g.groupby("quantile")["value"].median()
        lines.append(f"`{name}`: p50 {human_us(q.get('p50'))}, p99 {human_us(q.get('p99'))} "
                     f"(median over {g['cell_id'].nunique()} cells × repetitions)")
    counters = m[m["kind"] == "counter"].groupby("name")["value"].sum()
    for name in ("sp_cache.store_dropped", "sp_cache.lookup_timeout", "sp_cache.lookup_error",
                 "sp_cache.store_failed", "sp_cache.entry_rejected"):
        if name in counters.index:
            lines.append(f"`{name}`: {counters[name]:,.0f} over every filter repetition")
    return lines


def gap_explanation(run: RunData) -> str:
    """One paragraph on why the filter differs from the baseline, with this run's numbers."""
    c = run.cells[(run.cells["outcome"] == "ALL") & (run.cells["traffic"] == "synthetic")
                  & (run.cells["request_body_bytes"].fillna(0) == 0)]
    filt = c[c["variant"] == "filter"]
    if filt.empty:
        return ""
    size = filt["payload_bytes"].min()
    at = c[c["payload_bytes"] == size]
    where = human_bytes(size)
    parts = []
    off = at[at["variant"] == "filter-off"]
    if len(off):
        r = off.iloc[0]
        parts.append(f"At {where}, loading the Wasm filter with the cache off costs "
                     f"{ratio_text(r['p50_ratio_median'], r['p50_ratio_ci_low'], r['p50_ratio_ci_high'])} "
                     "the baseline's p50 (the VM's callbacks on every request).")
    lookup = run.metrics[(run.metrics["name"] == "sp_cache.lookup_duration_us") & (run.metrics["quantile"] == "p50")]
    lookup_text = ""
    if len(lookup):
        lookup_text = f" (the filter measured its lookups at p50 {human_us(lookup['value'].median())})"
    for _, r in at[at["variant"] == "filter"].sort_values("target_hit_ratio").iterrows():
        ratio = ratio_text(r["p50_ratio_median"], r["p50_ratio_ci_low"], r["p50_ratio_ci_high"])
        at_floor = not _nan(r["floor_p50_us_median"]) and r["p50_us_median"] <= r["floor_p50_us_median"]
        if r["target_hit_ratio"] < 0.5:
            parts.append(f"At {where} and hit ratio {r['target_hit_ratio']:g} (mostly misses), the filter's p50 is "
                         f"{ratio} the "
                         f"baseline's: a miss waits for one round trip to the cache backend{lookup_text} before going "
                         "upstream, then copies the response to store it.")
        else:
            parts.append(f"At {where} and hit ratio {r['target_hit_ratio']:g} (mostly hits), it is {ratio}: a hit is "
                         "answered by "
                         "the filter (from its in-proxy L1 or the backend) without the upstream"
                         + ("; the cell is at the generator floor, so Locust cannot see how much faster: read the "
                            "filter's histograms." if at_floor else "."))
    parts.append("Ratios are taken within each repetition against the baseline measured in the same round, so "
                 "machine drift cancels; an interval holding 1 is reported as no difference.")
    return " ".join(parts)


def _run_for(out_dir: Path, tuning: dict[str, Any] | None) -> RunData | None:
    candidates = [out_dir / "bench"] + ([Path(tuning["run_dir"])] if tuning and tuning.get("run_dir") else [])
    for path in candidates:
        if (path / "run.json").is_file():
            try:
                return load_run(path)
            except Exception:  # noqa: BLE001 - a broken run is reported by its step, not here
                return None
    return None


def context(out_dir: Path, report: Report) -> dict[str, Any]:
    """Everything the template shows, from the report directory's files."""
    out_dir = Path(out_dir)
    tuning = _read_json(out_dir / "tuning.json")
    runtime = _read_json(out_dir / "runtime.json")
    ctx: dict[str, Any] = {
        "name": out_dir.name, "report": report, "steps": report.steps, "headline": report.headline,
        "build": _read_json(out_dir / "build.json"), "smoke": _read_json(out_dir / "smoke.json"),
        "runtime": runtime, "tuning": tuning, "gate": report.gate,
        "config": json.dumps(tuning["plugin_config"], indent=2) if tuning else "",
    }
    run = _run_for(out_dir, tuning)
    if run is not None:
        p = run.manifest.parameters
        ctx.update(latency=latency_table(run), floor=floor_table(run), memory=memory_table(run),
                   filter_metrics=filter_metrics_lines(run), gap=gap_explanation(run),
                   findings=run.manifest.findings, run_status=run.manifest.status, run_dir=str(run.run_dir),
                   matrix_note=(f"{run.cells['cell_id'].nunique()} cells × {p.get('repetitions')} repetitions "
                                f"(interleaved), {p.get('users')} users, {p.get('duration_s')} s each"
                                + (f", fixed rate {p.get('rate')} req/s" if p.get("rate") else ", closed loop")
                                + f"; {run.manifest.environment.cpu_cores} cores "
                                  f"({run.manifest.environment.cpu_model})"),
                   cell_runtime=sorted(set(run.rows["runtime"])))
    return ctx


def write_summary(out_dir: Path, report: Report) -> Path:
    """Render ``out_dir/summary.md``; a section whose file is missing is left out."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=False,
                             undefined=jinja2.ChainableUndefined, keep_trailing_newline=True)
    text = env.get_template("summary.md.j2").render(**context(out_dir, report))
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    path = Path(out_dir) / "summary.md"
    path.write_text(text)
    return path
